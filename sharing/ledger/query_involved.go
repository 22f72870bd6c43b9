package ledger

import (
	"context"
	"errors"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Queries by involvement: the records a member owns, holds or may read,
// from the /i/own, /i/hold and /i/gto indexes (layout.go). Their cost is
// the member's own records, never every record on the ledger: what `ls`,
// health, gc and the replication manager walk (issue #16).

// scanIDs lists the record IDs under an involvement index prefix.
func (st State) scanIDs(ctx context.Context, prefix string) ([]cid.Cid, error) {
	var out []cid.Cid
	var derr error
	err := st.s.Scan(ctx, prefix, true, func(k string, _ []byte) bool {
		c, err := cid.Decode(lastSeg(k))
		if err != nil {
			derr = corrupt(k, err)
			return false
		}
		out = append(out, c)
		return true
	})
	return out, errors.Join(err, derr)
}

// OwnedIDs returns the IDs of the records p owns (every version), sorted by
// ID string.
func (st State) OwnedIDs(ctx context.Context, p peer.ID) ([]cid.Cid, error) {
	return st.scanIDs(ctx, pIdx+"own/"+p.String()+"/")
}

// HeldIDs returns the IDs of the records whose latest receipt by p is
// "held", sorted by ID string.
func (st State) HeldIDs(ctx context.Context, p peer.ID) ([]cid.Cid, error) {
	return st.scanIDs(ctx, pIdx+"hold/"+p.String()+"/")
}

// GrantedIDs returns the IDs of the records p has, or had, a grant on
// (revoked and expired grants included), sorted by ID string.
func (st State) GrantedIDs(ctx context.Context, p peer.ID) ([]cid.Cid, error) {
	return st.scanIDs(ctx, pIdx+"gto/"+p.String()+"/")
}

// OwnedRecords returns the records p owns (every version), sorted by ID
// string.
func (st State) OwnedRecords(ctx context.Context, p peer.ID) ([]RecordInfo, error) {
	ids, err := st.OwnedIDs(ctx, p)
	if err != nil {
		return nil, err
	}
	return st.recordsOf(ctx, ids)
}

// recordsOf reads the records ids name; an index entry without its record
// is corruption.
func (st State) recordsOf(ctx context.Context, ids []cid.Cid) ([]RecordInfo, error) {
	out := make([]RecordInfo, 0, len(ids))
	for _, id := range ids {
		r, ok, err := st.Record(ctx, id)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, corrupt("involvement index of record "+id.String(), errors.New("the record is not announced"))
		}
		out = append(out, r)
	}
	return out, nil
}

// OwnedRecords returns the records p owns (State.OwnedRecords). Unlike
// the older query methods it reports a storage failure: callers such as gc
// must not take "could not read" for "owns nothing".
func (l *Ledger) OwnedRecords(ctx context.Context, p peer.ID) ([]RecordInfo, error) {
	return l.State().OwnedRecords(ctx, p)
}

// HeldIDs returns the records p holds (State.HeldIDs).
func (l *Ledger) HeldIDs(ctx context.Context, p peer.ID) ([]cid.Cid, error) {
	return l.State().HeldIDs(ctx, p)
}

// GrantedIDs returns the records p has or had a grant on (State.GrantedIDs).
func (l *Ledger) GrantedIDs(ctx context.Context, p peer.ID) ([]cid.Cid, error) {
	return l.State().GrantedIDs(ctx, p)
}
