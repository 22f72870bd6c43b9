package ledger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4/options"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/go-cid"
	badger "github.com/ipfs/go-ds-badger4"
)

// A replay (a scope checkpoint's draft, Verify's rebuild, a scope's
// digest) builds the state of what it replays in a core of its own. On a
// MemStore that state is all in memory: the entries, their metadata, the
// indexes and the view, about 15 KB of heap an entry while it is built
// (BenchmarkScopeDraft: 296 MiB for 20,000), and a node drafting a
// checkpoint of a 100,000-record owner's scope peaked at 1.5-1.9 GB. With
// Options.ScratchDir the replay's core is on disk instead: a badger
// database of its own in a fresh directory under it, with small write
// buffers and caches, deleted when the replay is done (and, left over by
// a killed daemon, when the ledger opens).

// scratchBlock is where a draft keeps its state blocks in its scratch
// store, apart from the core's rows.
const scratchBlock = "/x/b/"

// scratch opens an empty store for a replay's core and returns it with
// the function that releases it (closes and deletes it): a badger
// database under Options.ScratchDir, or without one a MemStore.
func (l *Ledger) scratch() (Store, func(), error) {
	if l.o.ScratchDir == "" {
		return NewMemStore(), func() {}, nil
	}
	return openScratch(l.o.ScratchDir)
}

// scratchCore is a new core on a scratch store (scratch).
func (l *Ledger) scratchCore(ctx context.Context) (*Core, Store, func(), error) {
	s, release, err := l.scratch()
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := NewCore(ctx, CoreConfig{Store: s, Genesis: l.o.Genesis, Types: l.o.Types})
	if err != nil {
		release()
		return nil, nil, nil, err
	}
	return c, s, release, nil
}

// openScratch opens a badger database in a new directory under parent.
func openScratch(parent string) (Store, func(), error) {
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, nil, fmt.Errorf("ledger: scratch directory: %w", err)
	}
	dir, err := os.MkdirTemp(parent, "replay-")
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: scratch directory: %w", err)
	}
	opts := badger.DefaultOptions
	opts.Options = opts.Options.
		WithCompression(options.None).
		WithValueThreshold(128).
		WithNumMemtables(2).
		WithMemTableSize(8 << 20).
		WithValueLogFileSize(64 << 20).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(8 << 20).
		WithNumCompactors(2).
		// Nothing reads a scratch database after a crash.
		WithSyncWrites(false).
		WithDetectConflicts(false).
		WithLogger(nil)
	ds, err := badger.NewDatastore(dir, &opts)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("ledger: open scratch database in %s: %w", dir, err)
	}
	release := func() {
		ds.Close()
		os.RemoveAll(dir)
	}
	return NewDatastoreStore(ds, blockstore.NewBlockstore(ds)), release, nil
}

// clearScratch deletes what replays of an earlier run left under dir (a
// daemon killed mid-draft): nothing else uses it while the repo is open.
func clearScratch(dir string) error {
	if dir == "" {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ledger: scratch directory: %w", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("ledger: clear scratch directory: %w", err)
		}
	}
	return nil
}

// scopeDraft is a scope checkpoint drafted from a replay, its state blocks
// kept in the replay's scratch store until stored (storeScopeCheckpoint
// reads them one at a time), not in memory.
type scopeDraft struct {
	ck      *Checkpoint
	store   Store
	release func()
}

// block returns the state block c of the draft.
func (d *scopeDraft) block(ctx context.Context, c cid.Cid) ([]byte, error) {
	v, ok, err := d.store.Get(ctx, scratchBlock+c.String())
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("ledger: state block %s is not the draft's", c)
	}
	return v, nil
}

// close releases the draft's scratch store.
func (d *scopeDraft) close() {
	if d != nil && d.release != nil {
		d.release()
		d.release = nil
	}
}

// exportDraft cuts fresh's state of scope into blocks, written to its
// store under scratchBlock in batches of at most 32 MiB.
func exportDraft(ctx context.Context, fresh *Core, s Store, scope string) (*Checkpoint, error) {
	b, err := s.Batch(ctx)
	if err != nil {
		return nil, err
	}
	n := 0
	d, err := fresh.exportCheckpoint(ctx, scope, func(c cid.Cid, blk []byte) error {
		if err := b.Put(scratchBlock+c.String(), blk); err != nil {
			return err
		}
		if n++; n%32 == 0 {
			if err := b.Commit(ctx); err != nil {
				return err
			}
			if b, err = s.Batch(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := b.Commit(ctx); err != nil {
		return nil, err
	}
	return d.ck, nil
}
