package ledger

import (
	"context"
	"sort"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/keywrap"
)

// causalView implements View for an entry whose causal past is every applied
// entry except those in excluded. With excluded empty it is the current state.
type causalView struct {
	ctx      context.Context
	d        *dag
	t        *txn
	excluded map[cid.Cid]bool
	// cur marks a view of everything applied (the entry's parents are the
	// current heads): it reads the materialized state (state.go).
	cur bool
	// scoped views (of an entry in a scoped network) see only entries of
	// the scopes in scope's closure; owner is the scope's owner (empty for
	// the global scope). The applier's view, of everything applied, is not
	// scoped.
	scoped bool
	scope  string
	owner  peer.ID
	err    error
}

// curRec reports whether the materialized state of record id is the view's
// (the fast path): the view is cur and, in a scoped network, the record is
// owned on the view's scope and no announcement of its ID on another scope
// is applied here (/i/rx/, "contested"). Otherwise the record's reads walk
// its index rows, keeping those InPast.
func (v *causalView) curRec(id cid.Cid) bool {
	if !v.cur {
		return false
	}
	if !v.scoped {
		return true
	}
	if v.owner == "" {
		return false // no record lives on the global scope
	}
	info, ok := v.curRecordShared(id)
	if !ok {
		return v.err == nil // announced nowhere here: nothing to walk
	}
	if info.Owner != v.owner {
		return false
	}
	_, contested, err := v.t.get(v.ctx, contestedKey(id))
	v.fail(err)
	return !contested && err == nil
}

func (v *causalView) fail(err error) {
	if v.err == nil && err != nil {
		v.err = err
	}
}

// InPast implements View.
func (v *causalView) InPast(c cid.Cid) bool {
	if v.excluded[c] {
		return false
	}
	n, err := v.d.get(v.ctx, c)
	v.fail(err)
	return n != nil && (!v.scoped || inClosure(v.scope, n.scope))
}

// memberState evaluates the membership rule for p over the view:
// p is a member iff some member.add of p (or the genesis admin) has every
// member.remove of p in the view in its causal past. Among such surviving
// adds the latest in (clock, CID) order gives org and roles; when it sets no
// org, p's own member.org statement does (org.go).
func (v *causalView) memberState(p peer.ID) (*memberIdx, bool) {
	rows, err := v.t.list(v.ctx, pIdx+"m/"+p.String()+"/")
	if err != nil {
		v.fail(err)
		return nil, false
	}
	var adds, removes []*memberIdx
	for _, r := range rows {
		var m memberIdx
		if err := decMode.Unmarshal(r.Value, &m); err != nil {
			v.fail(err)
			return nil, false
		}
		c, err := cid.Cast(m.Entry)
		if err != nil {
			v.fail(err)
			return nil, false
		}
		m.entry = c
		if !v.InPast(c) {
			continue
		}
		if m.Add {
			adds = append(adds, &m)
		} else {
			removes = append(removes, &m)
		}
	}
	var best *memberIdx
	for _, a := range adds {
		ok := true
		for _, r := range removes {
			anc, err := v.d.isAncestor(v.ctx, r.entry, a.entry)
			v.fail(err)
			if !anc {
				ok = false
				break
			}
		}
		if ok && (best == nil || before(HLC{best.Wall, best.Counter}, best.entry, HLC{a.Wall, a.Counter}, a.entry)) {
			best = a
		}
	}
	if best != nil && best.Org == "" { // org.go: the member's own statement
		best.Org = v.declaredOrg(p)
	}
	return best, best != nil
}

// IsMember implements View.
func (v *causalView) IsMember(p peer.ID) bool {
	if v.cur {
		_, ok := v.curMember(p)
		return ok
	}
	_, ok := v.memberState(p)
	return ok
}

// HasRole implements View.
func (v *causalView) HasRole(p peer.ID, role string) bool {
	var m *memberIdx
	var ok bool
	if v.cur {
		m, ok = v.curMember(p)
	} else {
		m, ok = v.memberState(p)
	}
	if !ok {
		return false
	}
	for _, r := range m.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// keyState picks p's current key in the view: the key.announce by p latest
// in (clock, CID) order. Since clocks grow along causal links, a rotation
// that saw the previous key always supersedes it.
func (v *causalView) keyState(p peer.ID) (*keyIdx, bool) {
	rows, err := v.t.list(v.ctx, pIdx+"k/"+p.String()+"/")
	if err != nil {
		v.fail(err)
		return nil, false
	}
	var best *keyIdx
	for _, r := range rows {
		var k keyIdx
		if err := decMode.Unmarshal(r.Value, &k); err != nil {
			v.fail(err)
			return nil, false
		}
		c, err := cid.Cast(k.Entry)
		if err != nil {
			v.fail(err)
			return nil, false
		}
		k.entry = c
		if !v.InPast(c) {
			continue
		}
		if best == nil || before(HLC{best.Wall, best.Counter}, best.entry, HLC{k.Wall, k.Counter}, c) {
			kk := k
			best = &kk
		}
	}
	return best, best != nil
}

// KEMKey implements View.
func (v *causalView) KEMKey(p peer.ID) ([]byte, keywrap.KeyID, bool) {
	if v.cur {
		return v.curKEMKey(p)
	}
	k, ok := v.keyState(p)
	if !ok {
		return nil, keywrap.KeyID{}, false
	}
	return k.Pub, keywrap.IDOf(k.Pub), true
}

// recordState picks the owning announcement of a record in the view: when
// several authors announced the same record ID concurrently, the earliest in
// (clock, CID) order owns it.
func (v *causalView) recordState(id cid.Cid) (*recordIdx, bool) {
	rows, err := v.t.list(v.ctx, pIdx+"r/"+id.String()+"/")
	if err != nil {
		v.fail(err)
		return nil, false
	}
	var best *recordIdx
	for _, r := range rows {
		var ri recordIdx
		if err := decMode.Unmarshal(r.Value, &ri); err != nil {
			v.fail(err)
			return nil, false
		}
		c, err := cid.Cast(ri.Info.Entry)
		if err != nil {
			v.fail(err)
			return nil, false
		}
		ri.entry = c
		if !v.InPast(c) {
			continue
		}
		if best == nil || before(HLC{ri.Wall, ri.Counter}, c, HLC{best.Wall, best.Counter}, best.entry) {
			rr := ri
			best = &rr
		}
	}
	return best, best != nil
}

// Record implements View.
func (v *causalView) Record(id cid.Cid) (RecordInfo, bool) {
	if v.curRec(id) {
		return v.curRecordInfo(id)
	}
	r, ok := v.recordState(id)
	if !ok {
		return RecordInfo{}, false
	}
	info, err := r.Info.public()
	v.fail(err)
	return info, err == nil
}

// sortedCids sorts CIDs by their bytes.
func sortedCids(cs []cid.Cid) []cid.Cid {
	sort.Slice(cs, func(i, j int) bool { return cs[i].KeyString() < cs[j].KeyString() })
	return cs
}

// curGrant is grantInView on the fast path: two point reads (the grant's
// index entry, and whether it is current) instead of listing the record's
// grants. Read claims, one per read, take this path.
func (v *causalView) curGrant(rec cid.Cid, grantee peer.ID, g cid.Cid) (GrantAt, bool) {
	pair := rec.String() + "/" + grantee.String() + "/" + g.String()
	b, ok, err := v.t.get(v.ctx, pIdx+"g/"+pair)
	if err != nil || !ok {
		v.fail(err)
		return GrantAt{}, false
	}
	var st grantStored
	if err := decMode.Unmarshal(b, &st); err != nil {
		v.fail(err)
		return GrantAt{}, false
	}
	_, cur, err := v.t.get(v.ctx, pState+"g/"+pair)
	if err != nil {
		v.fail(err)
		return GrantAt{}, false
	}
	// Only what the rules read: no envelope parsing.
	ga := GrantAt{Current: cur, Grant: Grant{Record: rec, Grantee: grantee, Entry: g, Purpose: st.Grant.Purpose,
		Expires: msTime(st.Grant.Expires), Time: msTime(int64(st.Wall))}}
	return ga, true
}

// Ext implements View.
func (v *causalView) Ext(typ, prefix string) []ExtRow {
	rows, err := v.t.list(v.ctx, extPrefix(typ)+prefix)
	v.fail(err)
	return extRows(typ, rows)
}

func extPrefix(typ string) string { return pState + "x/" + typ + "/" }

func extRows(typ string, rows []kv) []ExtRow {
	out := make([]ExtRow, len(rows))
	n := len(extPrefix(typ))
	for i, r := range rows {
		out[i] = ExtRow{Key: r.Key[n:], Value: r.Value}
	}
	return out
}
