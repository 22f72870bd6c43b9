package replication

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
)

// pinPrefix holds one key per pinned replica: record -> its block list.
var pinPrefix = datastore.NewKey("/replication/pins")

// Pinset is what this node keeps as replicas: the records it pins (each
// with its block list, persisted in the node's local datastore) and the
// records in flight (being fetched, self-healed or stored before the ledger
// announces them; not persisted).
//
// The manager changes it; gc (node/gc) reads it: Holdings for the mark,
// Exclusive around each removal, so that a fetch that starts while gc runs
// holds its record before it looks at the store (and then finds a removed
// block gone and fetches it), never the reverse. The daemon opens the
// Pinset before anything else writes, so gc's start-up sweep sees the pins
// before the manager runs.
type Pinset struct {
	ds datastore.Datastore

	mu       sync.Mutex
	pins     map[cid.Cid]cid.Cid // record -> block list
	inflight map[cid.Cid]int     // record -> holds
}

// OpenPinset loads the pins persisted in ds (the node's local datastore).
// An entry that does not decode is skipped: the manager then releases that
// replica, as one this node does not pin. Only a storage error fails.
func OpenPinset(ctx context.Context, ds datastore.Datastore) (*Pinset, error) {
	s := &Pinset{ds: ds, pins: map[cid.Cid]cid.Cid{}, inflight: map[cid.Cid]int{}}
	res, err := ds.Query(ctx, query.Query{Prefix: pinPrefix.String()})
	if err != nil {
		return nil, fmt.Errorf("list replica pins: %w", err)
	}
	defer res.Close()
	for e := range res.Next() {
		if e.Error != nil {
			return nil, fmt.Errorf("list replica pins: %w", e.Error)
		}
		rec, err1 := cid.Decode(strings.TrimPrefix(e.Key, pinPrefix.String()+"/"))
		bl, err2 := cid.Cast(e.Value)
		if err1 != nil || err2 != nil {
			continue
		}
		s.pins[rec] = bl
	}
	return s, nil
}

// Pin records, durably, that this node holds rec (whose block list is bl).
func (s *Pinset) Pin(ctx context.Context, rec, bl cid.Cid) error {
	if err := s.ds.Put(ctx, pinPrefix.ChildString(rec.String()), bl.Bytes()); err != nil {
		return err
	}
	if err := s.ds.Sync(ctx, pinPrefix); err != nil {
		return err
	}
	s.mu.Lock()
	s.pins[rec] = bl
	s.mu.Unlock()
	return nil
}

// Unpin forgets that this node holds rec (gc removes its blocks later).
func (s *Pinset) Unpin(ctx context.Context, rec cid.Cid) error {
	s.mu.Lock()
	delete(s.pins, rec)
	s.mu.Unlock()
	return s.ds.Delete(ctx, pinPrefix.ChildString(rec.String()))
}

// Pinned reports whether this node pins rec.
func (s *Pinset) Pinned(rec cid.Cid) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pins[rec]
	return ok
}

// Len is the number of pinned records.
func (s *Pinset) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pins)
}

// Records lists the pinned records.
func (s *Pinset) Records() []cid.Cid {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]cid.Cid, 0, len(s.pins))
	for rec := range s.pins {
		out = append(out, rec)
	}
	return out
}

// Hold marks rec as in flight until the returned function is called (any
// number of times): gc keeps its blocks meanwhile. Holds nest.
func (s *Pinset) Hold(rec cid.Cid) (release func()) {
	s.mu.Lock()
	s.inflight[rec]++
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.inflight[rec]--; s.inflight[rec] <= 0 {
				delete(s.inflight, rec)
			}
			s.mu.Unlock()
		})
	}
}

// Holdings returns, as one view, the pinned records (record -> block list)
// and the records in flight. The caller owns the copies.
func (s *Pinset) Holdings() (pins map[cid.Cid]cid.Cid, inflight []cid.Cid) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pins = make(map[cid.Cid]cid.Cid, len(s.pins))
	for rec, bl := range s.pins {
		pins[rec] = bl
	}
	for rec := range s.inflight {
		inflight = append(inflight, rec)
	}
	return pins, inflight
}

// Exclusive runs fn while no record becomes pinned or in flight. held
// reports whether a record is pinned or in flight; inflight lists those in
// flight. fn runs under the Pinset's lock: it must not call the Pinset, and
// should be quick (a fetch about to start waits for it).
func (s *Pinset) Exclusive(fn func(held func(rec cid.Cid) bool, inflight []cid.Cid)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inflight := make([]cid.Cid, 0, len(s.inflight))
	for rec := range s.inflight {
		inflight = append(inflight, rec)
	}
	fn(s.heldLocked, inflight)
}

func (s *Pinset) heldLocked(rec cid.Cid) bool {
	_, pinned := s.pins[rec]
	return pinned || s.inflight[rec] > 0
}
