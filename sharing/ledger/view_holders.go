package ledger

import (
	"slices"
	"sort"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/replication"
)

// The parts of a View that say who holds or may read a record. Each has a
// fast path (cur: the entry's parents are the current heads, so its causal
// past is everything applied and the materialized state answers) and a walk
// over the indexes that keeps only entries in the causal past.

// GrantAt is a grant as one view sees it.
type GrantAt struct {
	Grant
	// Current is false when a revoke in the view cancels the grant.
	Current bool
}

// Members implements View: the members in the view, sorted by peer ID.
func (v *causalView) Members() []Member {
	if v.cur {
		return slices.Clone(v.curMembers())
	}
	rows, err := v.t.list(v.ctx, pIdx+"m/")
	if err != nil {
		v.fail(err)
		return nil
	}
	var peers []peer.ID
	seen := map[string]bool{}
	for _, r := range rows {
		// /i/m/<peer>/<entry>
		rest := r.Key[len(pIdx)+2:]
		i := 0
		for i < len(rest) && rest[i] != '/' {
			i++
		}
		if seen[rest[:i]] {
			continue
		}
		seen[rest[:i]] = true
		p, err := peer.Decode(rest[:i])
		if err != nil {
			v.fail(err)
			return nil
		}
		peers = append(peers, p)
	}
	var out []Member
	for _, p := range peers {
		if m, ok := v.memberState(p); ok {
			out = append(out, Member{Peer: p, Org: m.Org, Roles: m.Roles, Entry: m.entry})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

// curMembers lists /s/m/, decoded once per change of membership.
func (v *causalView) curMembers() []Member {
	sc := v.d.sc
	if sc.memberList != nil {
		return *sc.memberList
	}
	rows, err := v.t.list(v.ctx, pState+"m/")
	if err != nil {
		v.fail(err)
		return nil
	}
	out := make([]Member, 0, len(rows))
	for _, r := range rows {
		p, err := peer.Decode(lastSeg(r.Key))
		if err != nil {
			v.fail(err)
			return nil
		}
		var m memberIdx
		if err := decMode.Unmarshal(r.Value, &m); err != nil {
			v.fail(err)
			return nil
		}
		c, err := cid.Cast(m.Entry)
		if err != nil {
			v.fail(err)
			return nil
		}
		out = append(out, Member{Peer: p, Org: m.Org, Roles: m.Roles, Entry: c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	sc.memberList = &out
	return out
}

// GrantsOf implements View: every grant of the record in the view, to any
// grantee, oldest first; Current tells which no revoke in the view cancels.
func (v *causalView) GrantsOf(rec cid.Cid) []GrantAt {
	rows, err := v.t.list(v.ctx, pIdx+"g/"+rec.String()+"/")
	if err != nil {
		v.fail(err)
		return nil
	}
	var current map[string]bool
	var revokes []kv
	cur := v.curRec(rec)
	if cur {
		cur, err := v.t.list(v.ctx, pState+"g/"+rec.String()+"/")
		if err != nil {
			v.fail(err)
			return nil
		}
		current = make(map[string]bool, len(cur))
		for _, r := range cur {
			current[r.Key[len(pState):]] = true
		}
	} else if revokes, err = v.t.list(v.ctx, pIdx+"rv/"+rec.String()+"/"); err != nil {
		v.fail(err)
		return nil
	}
	var out []GrantAt
	for _, r := range rows {
		var st grantStored
		if err := decMode.Unmarshal(r.Value, &st); err != nil {
			v.fail(err)
			return nil
		}
		g, err := st.public()
		if err != nil {
			v.fail(err)
			return nil
		}
		if cur {
			out = append(out, GrantAt{Grant: g, Current: current[r.Key[len(pIdx):]]})
			continue
		}
		if !v.InPast(g.Entry) {
			continue
		}
		ok := true
		prefix := pIdx + "rv/" + rec.String() + "/" + g.Grantee.String() + "/"
		for _, rv := range revokes {
			if len(rv.Key) <= len(prefix) || rv.Key[:len(prefix)] != prefix {
				continue
			}
			rc, err := cid.Decode(lastSeg(rv.Key))
			if err != nil {
				v.fail(err)
				return nil
			}
			if !v.InPast(rc) {
				continue
			}
			anc, err := v.d.isAncestor(v.ctx, rc, g.Entry)
			v.fail(err)
			if !anc {
				ok = false
				break
			}
		}
		out = append(out, GrantAt{Grant: g, Current: ok})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].Entry.KeyString() < out[j].Entry.KeyString()
	})
	return out
}

// Receipts implements View: each holder's latest receipt for the record in
// the view.
func (v *causalView) Receipts(rec cid.Cid) []Receipt {
	if v.curRec(rec) {
		rows, err := v.t.list(v.ctx, pState+"rc/"+rec.String()+"/")
		if err != nil {
			v.fail(err)
			return nil
		}
		out := make([]Receipt, 0, len(rows))
		for _, r := range rows {
			rc, err := decodeReceipt(rec, r.Value)
			if err != nil {
				v.fail(err)
				return nil
			}
			out = append(out, rc)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Holder < out[j].Holder })
		return out
	}
	rows, err := v.t.list(v.ctx, pIdx+"rc/"+rec.String()+"/")
	if err != nil {
		v.fail(err)
		return nil
	}
	type latest struct {
		rc    Receipt
		clock HLC
	}
	best := map[peer.ID]latest{}
	for _, r := range rows {
		var s receiptStored
		if err := decMode.Unmarshal(r.Value, &s); err != nil {
			v.fail(err)
			return nil
		}
		rc, err := decodeReceipt(rec, r.Value)
		if err != nil {
			v.fail(err)
			return nil
		}
		if !v.InPast(rc.Entry) {
			continue
		}
		clock := HLC{s.Wall, s.Counter}
		if b, ok := best[rc.Holder]; !ok || before(b.clock, b.rc.Entry, clock, rc.Entry) {
			best[rc.Holder] = latest{rc, clock}
		}
	}
	out := make([]Receipt, 0, len(best))
	for _, b := range best {
		out = append(out, b.rc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Holder < out[j].Holder })
	return out
}

// Named implements View: the holders the record's owner named in the view.
func (v *causalView) Named(rec cid.Cid) []peer.ID {
	if v.curRec(rec) {
		rows, err := v.t.list(v.ctx, pState+"as/"+rec.String()+"/")
		if err != nil {
			v.fail(err)
			return nil
		}
		out := make([]peer.ID, 0, len(rows))
		for _, r := range rows {
			p, err := peer.Decode(lastSeg(r.Key))
			if err != nil {
				v.fail(err)
				return nil
			}
			out = append(out, p)
		}
		return out
	}
	rows, err := v.t.list(v.ctx, pIdx+"as/"+rec.String()+"/")
	if err != nil {
		v.fail(err)
		return nil
	}
	set := map[peer.ID]bool{}
	for _, r := range rows {
		c, err := cid.Decode(lastSeg(r.Key))
		if err != nil {
			v.fail(err)
			return nil
		}
		if !v.InPast(c) {
			continue
		}
		var w assignWire
		if err := decMode.Unmarshal(r.Value, &w); err != nil {
			v.fail(err)
			return nil
		}
		for _, b := range w.Holders {
			p, err := peer.IDFromBytes(b)
			if err != nil {
				v.fail(err)
				return nil
			}
			set[p] = true
		}
	}
	out := make([]peer.ID, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func decodeReceipt(rec cid.Cid, b []byte) (Receipt, error) {
	var s receiptStored
	if err := decMode.Unmarshal(b, &s); err != nil {
		return Receipt{}, err
	}
	h, err := peer.IDFromBytes(s.Holder)
	if err != nil {
		return Receipt{}, err
	}
	ec, err := cid.Cast(s.Entry)
	if err != nil {
		return Receipt{}, err
	}
	return Receipt{Record: rec, Holder: h, Status: s.Receipt.Status, Reason: s.Receipt.Reason, Entry: ec, Time: msTime(int64(s.Wall))}, nil
}

// HoldAuthority is who may hold rec as v sees it (replication.Authority).
func HoldAuthority(v View, rec RecordInfo) replication.Authority {
	a := replication.Authority{Record: rec.ID, Owner: rec.Owner, Wanted: int(rec.Replicas), Named: v.Named(rec.ID)}
	for _, m := range v.Members() {
		a.Members = append(a.Members, replication.Member{Peer: m.Peer, Org: m.Org})
	}
	for _, r := range v.Receipts(rec.ID) {
		a.Receipts = append(a.Receipts, replication.Receipt{Holder: r.Holder, Status: r.Status, Reason: r.Reason})
	}
	seen := map[peer.ID]bool{}
	for _, g := range v.GrantsOf(rec.ID) {
		if !seen[g.Grantee] {
			seen[g.Grantee] = true
			a.Granted = append(a.Granted, g.Grantee)
		}
	}
	return a
}
