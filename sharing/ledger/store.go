package ledger

import (
	"context"
	"errors"

	"github.com/ipfs/go-cid"
)

// Store is where a ledger keeps its entries and its state: the entries as
// raw blocks under their CIDs, and the metadata, indexes and materialized
// view as keys of the layout in layout.go. It is the core's only seam to
// storage (raft's Storage, tka's Chonk): MemStore keeps everything in
// memory, for tests and for Verify's replay; DatastoreStore keeps it in a
// node's badger datastore and blockstore.
//
// A Store must be safe for concurrent use: queries read it while the core
// writes. Every method reports a storage failure as an error, never as an
// absent key or an empty listing.
type Store interface {
	// Get returns the value stored under key; ok is false if there is none.
	Get(ctx context.Context, key string) (value []byte, ok bool, err error)
	// Scan calls fn with every key under prefix (which ends in "/") and its
	// value (nil when keysOnly), in ascending key order, until fn returns
	// false. A batch committed during a scan may or may not be seen.
	Scan(ctx context.Context, prefix string, keysOnly bool, fn func(key string, value []byte) bool) error
	// Batch starts an atomic write: all of it is committed or none.
	Batch(ctx context.Context) (Batch, error)
	// PutEntries stores entries' bytes. The core calls it before committing
	// the batch that records them as applied, so every applied entry can be
	// read back (an entry stored by a batch that then failed is harmless).
	PutEntries(ctx context.Context, es []*Entry) error
	// GetEntry returns an entry's bytes as PutEntries stored them.
	GetEntry(ctx context.Context, c cid.Cid) ([]byte, error)
}

// Batch is an atomic write to a Store.
type Batch interface {
	Put(key string, value []byte) error
	Delete(key string) error
	// Commit writes the batch. A batch is committed once.
	Commit(ctx context.Context) error
}

// kv is one key/value pair from a listing.
type kv struct {
	Key   string
	Value []byte
}

// logCIDs lists every entry in the log, in the log's key order.
func logCIDs(ctx context.Context, s Store) ([]cid.Cid, error) {
	var all []cid.Cid
	var derr error
	err := s.Scan(ctx, pLog, true, func(k string, _ []byte) bool {
		c, err := cid.Decode(lastSeg(k))
		if err != nil {
			derr = corrupt(k, err)
			return false
		}
		all = append(all, c)
		return true
	})
	if err := errors.Join(err, derr); err != nil {
		return nil, err
	}
	return all, nil
}
