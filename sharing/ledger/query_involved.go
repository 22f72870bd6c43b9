package ledger

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"time"

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

// RecordIDs returns the ID of every announced record, sorted by ID string:
// keys only, so a walk over every record (a replication manager's start)
// holds IDs in memory, not every announcement with its envelopes.
func (st State) RecordIDs(ctx context.Context) ([]cid.Cid, error) {
	return st.scanIDs(ctx, pState+"r/")
}

// RecordIDs returns the ID of every announced record (State.RecordIDs).
func (l *Ledger) RecordIDs(ctx context.Context) ([]cid.Cid, error) {
	return l.State().RecordIDs(ctx)
}

// OwnedIDs returns the IDs of the records p owns (every version), sorted by
// ID string.
func (st State) OwnedIDs(ctx context.Context, p peer.ID) ([]cid.Cid, error) {
	return st.scanIDs(ctx, pIdx+"own/"+p.String()+"/")
}

// OwnedIDs returns the IDs of the records p owns (State.OwnedIDs).
func (l *Ledger) OwnedIDs(ctx context.Context, p peer.ID) ([]cid.Cid, error) {
	return l.State().OwnedIDs(ctx, p)
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

// Listing is what `medmesh ls` shows of a record: its announcement's
// public fields and where its blocks are.
type Listing struct {
	ID        cid.Cid
	Owner     peer.ID
	Class     string
	Size      uint64
	Replicas  uint32
	Version   uint64
	Prev      cid.Cid // cid.Undef for a first version
	Announced time.Time
	// Holders are the owner and the peers whose latest receipt is "held",
	// sorted (Ledger.Holders).
	Holders []peer.ID
}

// OwnedListing returns the listing of every record owner owns (every
// version), sorted by ID string: two prefix scans of owner's indexes
// (/i/own/<owner>/ with each record's row, /i/oh/<owner>/ with its
// holders), so its cost is owner's records and their holders, not a read
// of each record.
func (st State) OwnedListing(ctx context.Context, owner peer.ID) ([]Listing, error) {
	holders := map[string][]peer.ID{} // record ID string -> holders but the owner
	peers := map[string]peer.ID{}     // decoded once per distinct holder
	prefix := pIdx + "oh/" + owner.String() + "/"
	var derr error
	err := st.s.Scan(ctx, prefix, true, func(k string, _ []byte) bool {
		rest := k[len(prefix):]
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			derr = corrupt(k, errors.New("no holder"))
			return false
		}
		hs := rest[i+1:]
		h, ok := peers[hs]
		if !ok {
			var err error
			if h, err = peer.Decode(hs); err != nil {
				derr = corrupt(k, err)
				return false
			}
			peers[hs] = h
		}
		holders[rest[:i]] = append(holders[rest[:i]], h)
		return true
	})
	if err := errors.Join(err, derr); err != nil {
		return nil, err
	}
	var out []Listing
	var missing []int // rows indexed before they carried their listing
	prefix = pIdx + "own/" + owner.String() + "/"
	err = st.s.Scan(ctx, prefix, false, func(k string, v []byte) bool {
		ids := k[len(prefix):]
		id, err := cid.Decode(ids)
		if err != nil {
			derr = corrupt(k, err)
			return false
		}
		l := Listing{ID: id, Owner: owner, Holders: holders[ids]}
		if len(v) == 0 {
			missing = append(missing, len(out))
		} else {
			var row ownedRow
			if err := decMode.Unmarshal(v, &row); err != nil {
				derr = corrupt(k, err)
				return false
			}
			l.Class, l.Size, l.Replicas, l.Version = row.Class, row.Size, row.Replicas, row.Version
			l.Announced = msTime(int64(row.Wall))
			if len(row.Prev) > 0 {
				if l.Prev, err = cid.Cast(row.Prev); err != nil {
					derr = corrupt(k, err)
					return false
				}
			}
		}
		out = append(out, l)
		return true
	})
	if err := errors.Join(err, derr); err != nil {
		return nil, err
	}
	for _, i := range missing {
		r, ok, err := st.Record(ctx, out[i].ID)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, corrupt("owner index of record "+out[i].ID.String(), errors.New("the record is not announced"))
		}
		out[i].Class, out[i].Size, out[i].Replicas, out[i].Version = r.Class, r.Size, r.Replicas, r.Version
		out[i].Prev, out[i].Announced = r.Prev, r.Announced
	}
	for i := range out {
		hs := append(out[i].Holders, owner)
		sort.Slice(hs, func(a, b int) bool { return hs[a] < hs[b] })
		out[i].Holders = slices.Compact(hs)
	}
	return out, nil
}

// OwnedListing returns what `ls` shows of the records p owns
// (State.OwnedListing).
func (l *Ledger) OwnedListing(ctx context.Context, p peer.ID) ([]Listing, error) {
	return l.State().OwnedListing(ctx, p)
}
