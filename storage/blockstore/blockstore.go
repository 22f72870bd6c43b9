// Package blockstore opens a node's badger-backed datastore and the
// content-addressed blockstore on top of it.
//
// One badger database per node holds everything: blocks under /blocks (boxo's
// default prefix) and, under other namespaces, the ledger's materialized view,
// the encrypted DICOM index and bookkeeping. Sharing one database keeps a
// node's state in a single directory with a single write-ahead log, so a
// killed daemon recovers it as a whole.
package blockstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4/options"
	bstore "github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/go-datastore"
	badger "github.com/ipfs/go-ds-badger4"
)

// Store is a node's datastore together with the blockstore that lives in it.
type Store struct {
	// DS is the whole badger datastore. Callers that keep their own state in
	// it must use a namespace of their own (datastore/namespace.Wrap).
	DS *badger.Datastore
	// Blocks verifies every block it returns against its CID: a block that
	// was corrupted on disk is reported as ErrHashMismatch, never returned.
	Blocks bstore.Blockstore

	stopTrim chan struct{} // see trim_linux.go
	wake     chan struct{} // a block was written
	trimDone chan struct{}
	trimmed  atomic.Int64
	// trimPolls counts the trimmer's looks at the resident pages.
	trimPolls atomic.Int64

	closeOnce sync.Once
	closeErr  error
	// closing is held by readers of the badger database itself (HasAll)
	// and taken by Close: a badger iterator must not outlive the tables
	// it reads.
	closing sync.RWMutex
	closed  bool
}

// ErrHashMismatch is returned when a stored block does not hash to its CID.
var ErrHashMismatch = bstore.ErrHashMismatch

// Open opens (creating if needed) the badger datastore in dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create datastore directory: %w", err)
	}
	opts := badger.DefaultOptions
	// Blocks are ciphertext: compressing them is wasted work.
	opts.Options = opts.Options.WithCompression(options.None).
		// Values above 64 KiB (every data chunk) go to the value log, so the
		// LSM tree stays small and compactions cheap.
		WithValueThreshold(64 << 10).
		// Keep the memory footprint modest: a node runs beside other work.
		WithNumMemtables(2).
		// 16 MiB memtables: the arena of a 64 MiB one was 83 MiB of an
		// idle daemon's 88 MiB heap, and the GC lets the heap grow to twice
		// that while badger churns its write buffers (peak heap adding
		// 1 GiB: 200 MiB, 80 MiB with 16). Ledger apply is unchanged.
		WithMemTableSize(16 << 20).
		// 256 MiB value-log files instead of 1 GiB: a full file is synced
		// and truncated inside badger's write path, and adds of 1 GiB ran
		// at 444-530 MB/s with 1 GiB files, 608-692 with 256 MiB (128 MiB:
		// 571-749). Smaller files also make value-log GC cheaper; a node
		// keeps 4 files (and mappings) open per GiB stored.
		WithValueLogFileSize(256 << 20).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(16 << 20).
		WithLogger(nil)
	ds, err := badger.NewDatastore(dir, &opts)
	if err != nil {
		return nil, fmt.Errorf("open datastore %s: %w (is another medmesh daemon using this repo?)", dir, err)
	}
	// WriteThrough: boxo's Put first asks Has, to skip storing a block it
	// already holds. On badger that read waits until the previous commit
	// is marked done by badger's watermark goroutine, a scheduling hop per
	// block: storing 1 MiB blocks one after another ran at 331 MiB/s with
	// the check and 1,434 MiB/s without (2 cores, other goroutines busy).
	// medmesh rarely stores a block it has: chunks are sealed under fresh
	// keys, and fetches ask only for blocks not held. A repeat costs a
	// value-log entry that badger's value-log GC reclaims.
	// Every block is written and deleted with its mark (marks.go).
	if err := markAll(context.Background(), ds); err != nil {
		ds.Close()
		return nil, fmt.Errorf("mark the blocks of datastore %s: %w", dir, err)
	}
	wake := make(chan struct{}, 1)
	bs := &bstore.ValidatingBlockstore{Blockstore: bstore.NewBlockstore(markingDS{ds: ds, wake: wake}, bstore.WriteThrough(true))}
	s := &Store{DS: ds, Blocks: bs, wake: wake}
	s.startTrimmer(dir)
	return s, nil
}

// Close flushes and closes the datastore. Calling it again returns the
// first call's result.
func (s *Store) Close() error {
	if s == nil || s.DS == nil {
		return nil
	}
	s.closeOnce.Do(func() {
		if s.stopTrim != nil {
			close(s.stopTrim)
			<-s.trimDone
		}
		s.closing.Lock()
		s.closed = true
		s.closing.Unlock()
		err := s.DS.Sync(context.Background(), datastore.NewKey("/"))
		s.closeErr = errors.Join(err, s.DS.Close())
	})
	return s.closeErr
}
