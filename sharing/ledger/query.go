package ledger

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/replication"
)

// State reads a ledger's committed state: the materialized view of every
// applied entry (/s/), the indexes (/i/) and the entries. Every method
// reports a storage failure, or a stored value that does not decode, as an
// error: never as "not found" or an empty list. It is safe for concurrent
// use and sees each committed batch whole or not at all.
type State struct{ s Store }

// NewState reads the ledger state kept in s.
func NewState(s Store) State { return State{s} }

func (st State) get(ctx context.Context, k string, v any) (bool, error) {
	b, ok, err := st.s.Get(ctx, k)
	if err != nil || !ok {
		return false, err
	}
	if err := decMode.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("ledger: stored %s does not decode: %w", k, err)
	}
	return true, nil
}

// each decodes every value under prefix into a fresh V and passes it with
// its key to fn.
func each[V any](ctx context.Context, st State, prefix string, fn func(k string, v *V) error) error {
	var ferr error
	err := st.s.Scan(ctx, prefix, false, func(k string, b []byte) bool {
		v := new(V)
		if err := decMode.Unmarshal(b, v); err != nil {
			ferr = fmt.Errorf("ledger: stored %s does not decode: %w", k, err)
			return false
		}
		ferr = fn(k, v)
		return ferr == nil
	})
	return errors.Join(err, ferr)
}

func corrupt(what string, err error) error {
	return fmt.Errorf("ledger: stored %s is corrupt: %w", what, err)
}

// Member returns p's membership, if p is a current member.
func (st State) Member(ctx context.Context, p peer.ID) (Member, bool, error) {
	var mi memberIdx
	ok, err := st.get(ctx, pState+"m/"+p.String(), &mi)
	if err != nil || !ok {
		return Member{}, false, err
	}
	c, err := cid.Cast(mi.Entry)
	if err != nil {
		return Member{}, false, corrupt("member "+p.String(), err)
	}
	return Member{Peer: p, Org: mi.Org, Roles: mi.Roles, Entry: c}, true, nil
}

// Members returns the current members sorted by peer ID.
func (st State) Members(ctx context.Context) ([]Member, error) {
	var out []Member
	err := each(ctx, st, pState+"m/", func(k string, mi *memberIdx) error {
		p, err := peer.Decode(lastSeg(k))
		if err != nil {
			return corrupt(k, err)
		}
		c, err := cid.Cast(mi.Entry)
		if err != nil {
			return corrupt(k, err)
		}
		out = append(out, Member{Peer: p, Org: mi.Org, Roles: mi.Roles, Entry: c})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out, err
}

// KEMKey returns p's current key-wrapping public key.
func (st State) KEMKey(ctx context.Context, p peer.ID) ([]byte, bool, error) {
	var k keyIdx
	ok, err := st.get(ctx, pState+"k/"+p.String(), &k)
	if err != nil || !ok {
		return nil, false, err
	}
	return k.Pub, true, nil
}

// Keys returns every key p announced, oldest first.
func (st State) Keys(ctx context.Context, p peer.ID) ([]KeyInfo, error) {
	var out []KeyInfo
	err := each(ctx, st, pIdx+"k/"+p.String()+"/", func(key string, k *keyIdx) error {
		c, err := cid.Cast(k.Entry)
		if err != nil {
			return corrupt(key, err)
		}
		out = append(out, KeyInfo{Peer: p, Public: k.Pub, ID: sha256.Sum256(k.Pub), Entry: c, Time: msTime(int64(k.Wall))})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, err
}

// Record returns an announced record.
func (st State) Record(ctx context.Context, id cid.Cid) (RecordInfo, bool, error) {
	var r recordWire
	ok, err := st.get(ctx, pState+"r/"+id.String(), &r)
	if err != nil || !ok {
		return RecordInfo{}, false, err
	}
	info, err := r.public()
	if err != nil {
		return RecordInfo{}, false, corrupt("record "+id.String(), err)
	}
	return info, true, nil
}

// Records returns every announced record, sorted by ID string.
func (st State) Records(ctx context.Context) ([]RecordInfo, error) {
	var out []RecordInfo
	err := each(ctx, st, pState+"r/", func(k string, w *recordWire) error {
		info, err := w.public()
		if err != nil {
			return corrupt(k, err)
		}
		out = append(out, info)
		return nil
	})
	return out, err
}

// Versions returns the version chain containing id (all earlier versions and
// every later one), ordered by version then ID; nil if id is not a record.
func (st State) Versions(ctx context.Context, id cid.Cid) ([]RecordInfo, error) {
	root, ok, err := st.Record(ctx, id)
	if err != nil || !ok {
		return nil, err
	}
	seen := map[cid.Cid]bool{root.ID: true}
	for root.Prev.Defined() && !seen[root.Prev] {
		p, ok, err := st.Record(ctx, root.Prev)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		seen[p.ID] = true
		root = p
	}
	out := []RecordInfo{root}
	for i := 0; i < len(out); i++ {
		// Walking forward from the root visits each version once; the
		// backward walk's seen set must not skip the intermediate
		// versions between the root and id.
		var next []cid.Cid
		err := st.s.Scan(ctx, pIdx+"v/"+out[i].ID.String()+"/", true, func(k string, _ []byte) bool {
			c, err := cid.Decode(lastSeg(k))
			if err == nil {
				next = append(next, c)
			}
			return true
		})
		if err != nil {
			return nil, err
		}
		for _, c := range next {
			info, ok, err := st.Record(ctx, c)
			if err != nil {
				return nil, err
			}
			if ok && info.Prev == out[i].ID && !containsRecord(out, c) {
				out = append(out, info)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Version != out[j].Version {
			return out[i].Version < out[j].Version
		}
		return out[i].ID.String() < out[j].ID.String()
	})
	return out, nil
}

func containsRecord(rs []RecordInfo, c cid.Cid) bool {
	for _, r := range rs {
		if r.ID == c {
			return true
		}
	}
	return false
}

// Grants returns the record's current grants to current members: grants not
// cancelled by a revoke. Expired grants are included; callers compare
// Expires with their clock and a skew margin (Grant.LiveAt).
func (st State) Grants(ctx context.Context, record cid.Cid) ([]Grant, error) {
	var out []Grant
	err := each(ctx, st, pState+"g/"+record.String()+"/", func(k string, g *grantStored) error {
		pg, err := g.public()
		if err != nil {
			return corrupt(k, err)
		}
		out = append(out, pg)
		return nil
	})
	if err != nil {
		return nil, err
	}
	live := out[:0]
	for _, g := range out {
		_, member, err := st.Member(ctx, g.Grantee)
		if err != nil {
			return nil, err
		}
		if member {
			live = append(live, g)
		}
	}
	return live, nil
}

// GrantHistory returns every grant of the record ever applied, revoked or
// not, oldest first: what an audit needs to name the grant a read was made
// under, and who may never hold the record.
func (st State) GrantHistory(ctx context.Context, record cid.Cid) ([]Grant, error) {
	var out []Grant
	err := each(ctx, st, pIdx+"g/"+record.String()+"/", func(k string, g *grantStored) error {
		pg, err := g.public()
		if err != nil {
			return corrupt(k, err)
		}
		out = append(out, pg)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, err
}

// Access returns the record's read claims, oldest first.
func (st State) Access(ctx context.Context, record cid.Cid) ([]AccessEvent, error) {
	var out []AccessEvent
	err := each(ctx, st, pState+"a/"+record.String()+"/", func(k string, a *accessStored) error {
		reader, err1 := peer.IDFromBytes(a.Reader)
		ec, err2 := cid.Cast(a.Entry)
		if err := errors.Join(err1, err2); err != nil {
			return corrupt(k, err)
		}
		out = append(out, a.Access.event(record, reader, ec))
		return nil
	})
	return out, err
}

// Served returns the attestations of the record's reads by the nodes that
// served them, oldest first.
func (st State) Served(ctx context.Context, record cid.Cid) ([]Served, error) {
	var out []Served
	err := each(ctx, st, pState+"sv/"+record.String()+"/", func(k string, s *servedStored) error {
		reader, err1 := peer.IDFromBytes(s.Served.Reader)
		server, err2 := peer.IDFromBytes(s.Server)
		gc, err3 := cid.Cast(s.Served.Grant)
		ec, err4 := cid.Cast(s.Entry)
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			return corrupt(k, err)
		}
		out = append(out, Served{Record: record, Reader: reader, Server: server, Grant: gc, Reads: s.Served.Reads, Blocks: s.Served.Blocks,
			First: msTime(s.Served.First), Last: msTime(s.Served.Last), Entry: ec})
		return nil
	})
	return out, err
}

// Named returns the holders the record's owner named (replica.assign).
func (st State) Named(ctx context.Context, record cid.Cid) ([]peer.ID, error) {
	var out []peer.ID
	var perr error
	err := st.s.Scan(ctx, pState+"as/"+record.String()+"/", true, func(k string, _ []byte) bool {
		p, err := peer.Decode(lastSeg(k))
		if err != nil {
			perr = corrupt(k, err)
			return false
		}
		out = append(out, p)
		return true
	})
	return out, errors.Join(err, perr)
}

// Receipts returns each holder's latest receipt for the record.
func (st State) Receipts(ctx context.Context, record cid.Cid) ([]Receipt, error) {
	var out []Receipt
	err := each(ctx, st, pState+"rc/"+record.String()+"/", func(k string, s *receiptStored) error {
		h, err1 := peer.IDFromBytes(s.Holder)
		ec, err2 := cid.Cast(s.Entry)
		if err := errors.Join(err1, err2); err != nil {
			return corrupt(k, err)
		}
		out = append(out, Receipt{Record: record, Holder: h, Status: s.Receipt.Status, Reason: s.Receipt.Reason, Entry: ec, Time: msTime(int64(s.Wall))})
		return nil
	})
	return out, err
}

// HoldAuthority says who may hold the record now (replication.Authority),
// from the current state: the same rule the ledger applies to receipts.
func (st State) HoldAuthority(ctx context.Context, rec RecordInfo) (replication.Authority, error) {
	a := replication.Authority{Record: rec.ID, Owner: rec.Owner, Wanted: int(rec.Replicas)}
	named, err := st.Named(ctx, rec.ID)
	if err != nil {
		return a, err
	}
	a.Named = named
	ms, err := st.Members(ctx)
	if err != nil {
		return a, err
	}
	for _, m := range ms {
		a.Members = append(a.Members, replication.Member{Peer: m.Peer, Org: m.Org})
	}
	rcs, err := st.Receipts(ctx, rec.ID)
	if err != nil {
		return a, err
	}
	for _, r := range rcs {
		a.Receipts = append(a.Receipts, replication.Receipt{Holder: r.Holder, Status: r.Status, Reason: r.Reason})
	}
	gs, err := st.GrantHistory(ctx, rec.ID)
	if err != nil {
		return a, err
	}
	seen := map[peer.ID]bool{}
	for _, g := range gs {
		if !seen[g.Grantee] {
			seen[g.Grantee] = true
			a.Granted = append(a.Granted, g.Grantee)
		}
	}
	return a, nil
}

// Digest returns SHA-256 over the materialized view: for every state key in
// order, len(key) key len(value) value. Two nodes with the same valid
// entries have the same digest.
func (st State) Digest(ctx context.Context) ([]byte, error) {
	h := newStateHasher()
	err := st.s.Scan(ctx, pState, false, func(k string, v []byte) bool {
		h.add(k, v)
		return true
	})
	if err != nil {
		return nil, err
	}
	return h.sum(), nil
}

// Entry returns an applied entry by CID.
func (st State) Entry(ctx context.Context, c cid.Cid) (*Entry, error) {
	b, err := st.s.GetEntry(ctx, c)
	if err != nil {
		return nil, err
	}
	return DecodeEntry(b)
}

// Log returns up to limit applied entries of type typ ("" for all), newest
// first in (clock, CID) order.
func (st State) Log(ctx context.Context, typ string, limit int) ([]*Entry, error) {
	prefix := pLog
	if typ != "" {
		prefix = pType + typ + "/"
	}
	var cs []cid.Cid
	var derr error
	err := st.s.Scan(ctx, prefix, true, func(k string, _ []byte) bool {
		c, err := cid.Decode(lastSeg(k))
		if err != nil {
			derr = corrupt(k, err)
			return false
		}
		cs = append(cs, c)
		return limit <= 0 || len(cs) < limit
	})
	if err := errors.Join(err, derr); err != nil {
		return nil, err
	}
	out := make([]*Entry, 0, len(cs))
	for _, c := range cs {
		e, err := st.Entry(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("ledger: entry %s: %w", c, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// EachEntry calls fn with the CID of every applied entry, in no particular
// order, and stops at fn's first error. Each applied entry is stored
// (Store.PutEntries) before it is recorded as applied, so a collector of
// unreferenced blocks keeps these; an entry stored just before a batch that
// then failed is not listed, and such a collector also keeps any block that
// DecodeEntry accepts.
func (st State) EachEntry(ctx context.Context, fn func(cid.Cid) error) error {
	var ferr error
	err := st.s.Scan(ctx, pMeta, true, func(k string, _ []byte) bool {
		c, err := cid.Decode(lastSeg(k))
		if err != nil {
			ferr = fmt.Errorf("ledger: entry key %q: %w", k, err)
			return false
		}
		ferr = fn(c)
		return ferr == nil
	})
	if err != nil {
		return fmt.Errorf("ledger: list entries: %w", err)
	}
	return ferr
}

// Ext lists the rows that extension type typ's Apply wrote under prefix
// ("" or ending in "/"), in key order: its state as of every applied entry.
func (st State) Ext(ctx context.Context, typ, prefix string) ([]ExtRow, error) {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("ledger: extension state prefix %q must end in /", prefix)
	}
	var rows []kv
	err := st.s.Scan(ctx, extPrefix(typ)+prefix, false, func(k string, v []byte) bool {
		rows = append(rows, kv{k, v})
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: read %s state: %w", typ, err)
	}
	return extRows(typ, rows), nil
}
