package gc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
)

// addMarkerPrefix holds one key per add in progress (in Config.Local); its
// value is the record's ID once the add knows it.
var addMarkerPrefix = datastore.NewKey("/adds")

// Add is one add in progress: the block store the add writes through
// (a record.BlockPutter that remembers every block, so a failed add can
// take them back and a sweep running meanwhile keeps them), and its marker
// (the package doc tells the protocol). Start one with Service.BeginAdd.
type Add struct {
	s      *Service
	marker datastore.Key

	mu sync.Mutex
	// put lists every block the add stores, each registered before it is
	// written, so that a concurrent gc never takes it for garbage.
	put    []cid.Cid
	record cid.Cid // the record's ID, once known

	// writing is held shared by each Put while it stores its block, and
	// exclusively by End: a rollback starts once every write in flight is
	// done, and a Put after End stores nothing (a chunk written after the
	// rollback's deletes would stay, orphaned, until the next gc).
	writing sync.RWMutex
	ended   bool // under writing
}

// errAddEnded is what a Put after End returns.
var errAddEnded = errors.New("gc: the add has ended; nothing more is stored through it")

// BeginAdd makes an add's blocks known before its first block is written:
// to a sweep running now (in memory) and to the next start (the marker).
func (s *Service) BeginAdd(ctx context.Context) (*Add, error) {
	var id [16]byte
	rand.Read(id[:])
	a := &Add{s: s, marker: addMarkerPrefix.ChildString(hex.EncodeToString(id[:]))}
	s.mu.Lock()
	s.adds[a] = struct{}{}
	s.mu.Unlock()
	// No sync: badger applies writes in order, so a block that survives a
	// crash has this marker before it in the same log.
	if err := s.local.Put(ctx, a.marker, nil); err != nil {
		s.mu.Lock()
		delete(s.adds, a)
		s.mu.Unlock()
		return nil, fmt.Errorf("record the add in progress: %w", err)
	}
	return a, nil
}

// PutCopies reports that the store copies a block's bytes before Put
// returns and keeps no reference to them (the node's badger blockstore
// copies values into its value log or memtable arena), so the
// record.Builder may reuse its buffers.
func (a *Add) PutCopies() bool { return true }

// Put registers b with the add, then stores it.
func (a *Add) Put(ctx context.Context, b blocks.Block) error {
	a.writing.RLock()
	defer a.writing.RUnlock()
	if a.ended {
		return errAddEnded
	}
	a.mu.Lock()
	a.put = append(a.put, b.Cid())
	a.mu.Unlock()
	return a.s.store.Blocks.Put(ctx, b)
}

// PutMany stores bs, one by one.
func (a *Add) PutMany(ctx context.Context, bs []blocks.Block) error {
	for _, b := range bs {
		if err := a.Put(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// Named records the record the add is storing, once known and before its
// key or block index entries are stored, so that the clean-up of an
// interrupted add removes those too.
func (a *Add) Named(ctx context.Context, rec cid.Cid) error {
	a.mu.Lock()
	a.record = rec
	a.mu.Unlock()
	if err := a.s.local.Put(ctx, a.marker, rec.Bytes()); err != nil {
		return fmt.Errorf("record the add in progress: %w", err)
	}
	return nil
}

// End ends the add: committed (the record is on the ledger), or not, and
// then its blocks, and what it stored about its record, are rolled back. A
// rollback that could not remove everything leaves the marker, so the next
// start or gc removes what is left.
func (a *Add) End(committed bool) {
	a.writing.Lock()
	a.ended = true
	a.writing.Unlock() // no Put is storing now, and none will
	clean := committed || a.rollback()
	if clean {
		if err := a.s.local.Delete(context.Background(), a.marker); err != nil {
			a.s.log.Warn("remove add marker; the next gc removes it", "err", err)
		}
	}
	a.s.mu.Lock()
	delete(a.s.adds, a)
	a.s.mu.Unlock()
}

// rollback deletes the blocks of a failed add, and what it stored about
// its record; it reports whether all of that is gone.
func (a *Add) rollback() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	ctx := context.Background()
	clean := true
	for _, c := range a.put {
		if err := a.s.store.Blocks.DeleteBlock(ctx, c); err != nil {
			a.s.log.Warn("rollback: delete block", "cid", c, "err", err)
			clean = false
		}
	}
	a.put = nil
	if err := a.s.forget(ctx, a.record); err != nil {
		a.s.log.Warn("rollback: forget record", "record", a.record, "err", err)
		clean = false
	}
	return clean
}

// forget has the records service drop what an unfinished add stored about
// rec, unless rec reached the ledger (then it is this node's record).
func (s *Service) forget(ctx context.Context, rec cid.Cid) error {
	if !rec.Defined() {
		return nil
	}
	if _, ok := s.ledger.Record(rec); ok {
		return nil
	}
	return s.records.Forget(ctx, rec)
}

// marker is an add marker found in the datastore.
type marker struct {
	key    datastore.Key
	record cid.Cid // cid.Undef if the add did not get that far
}

func (s *Service) markers(ctx context.Context) ([]marker, error) {
	res, err := s.local.Query(ctx, query.Query{Prefix: addMarkerPrefix.String()})
	if err != nil {
		return nil, fmt.Errorf("list add markers: %w", err)
	}
	defer res.Close()
	var out []marker
	for r := range res.Next() {
		if r.Error != nil {
			return nil, fmt.Errorf("list add markers: %w", r.Error)
		}
		m := marker{key: datastore.NewKey(r.Key)}
		if len(r.Value) > 0 {
			if c, err := cid.Cast(r.Value); err == nil {
				m.record = c
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// Markers counts the add markers in the datastore: adds running, and adds
// interrupted that no sweep has cleaned up yet.
func (s *Service) Markers(ctx context.Context) (int, error) {
	ms, err := s.markers(ctx)
	return len(ms), err
}
