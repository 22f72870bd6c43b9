package blockstore

import (
	"context"
	"fmt"
	"strings"

	badgerdb "github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	badger "github.com/ipfs/go-ds-badger4"
)

// Block marks: for every block under /blocks/<key>, an empty row
// /blockmarks/<key>, written and deleted in the same badger transaction as
// the block itself, so that at every instant (a killed daemon included)
// there is a mark exactly where there is a block.
//
// What for: whether the store holds a block is, in badger, a lookup in
// tables where small blocks are stored inline with their keys. To say
// which of 100,000 records this node holds, `ls` read (and faulted in:
// the trimmer pages the tables out) hundreds of MiB of blocks; the marks
// are a few MiB of keys alone, in a key range of their own (HasAll).
const (
	blockPrefix = "/blocks/"     // bstore.BlockPrefix, as a key prefix
	markPrefix  = "/blockmarks/" // not under /blocks: a snapshot lists blocks alone
	// marksDoneKey says that every block has its mark: set once a store
	// written before the marks existed has been marked (markAll).
	marksDoneKey = "/.blockmarks-complete"
)

// markOf is the mark of the block stored under key.
func markOf(key []byte) []byte {
	if !strings.HasPrefix(string(key), blockPrefix) {
		return nil
	}
	return append([]byte(markPrefix), key[len(blockPrefix):]...)
}

// The badger transaction limits a batch keeps well inside (badger's own
// are 15% of a memtable, 2.4 MB here, and that over the size of a skiplist
// node in entries), so that a block and its mark never straddle two
// transactions.
const (
	batchBytes   = 1 << 20
	batchEntries = 2000
)

// entrySize is an upper bound of what badger counts for an entry in a
// transaction: key and value, or key and value pointer for a value stored
// in the value log (at least the value threshold, 64 KiB).
func entrySize(key, value []byte) int {
	v := len(value)
	if v >= 64<<10 {
		v = 16
	}
	return len(key) + v + 32
}

// markingDS is the datastore the blockstore writes through: the node's
// badger datastore, but each block written or deleted with its mark.
// Reads go straight to the datastore.
type markingDS struct {
	ds *badger.Datastore
	// wake, if set, is told of every block written (non-blocking): the
	// trimmer polls often only while something is being written.
	wake chan struct{}
}

var _ datastore.Batching = markingDS{}

func (m markingDS) Get(ctx context.Context, k datastore.Key) ([]byte, error) {
	return m.ds.Get(ctx, k)
}

func (m markingDS) Has(ctx context.Context, k datastore.Key) (bool, error) {
	return m.ds.Has(ctx, k)
}

func (m markingDS) GetSize(ctx context.Context, k datastore.Key) (int, error) {
	return m.ds.GetSize(ctx, k)
}

func (m markingDS) Query(ctx context.Context, q dsq.Query) (dsq.Results, error) {
	return m.ds.Query(ctx, q)
}

func (m markingDS) Sync(ctx context.Context, prefix datastore.Key) error {
	return m.ds.Sync(ctx, prefix)
}

// Close does nothing: the Store closes the datastore.
func (m markingDS) Close() error { return nil }

func (m markingDS) Put(ctx context.Context, k datastore.Key, v []byte) error {
	b := m.batch(ctx)
	if err := b.Put(ctx, k, v); err != nil {
		return err
	}
	return b.Commit(ctx)
}

func (m markingDS) Delete(ctx context.Context, k datastore.Key) error {
	b := m.batch(ctx)
	if err := b.Delete(ctx, k); err != nil {
		return err
	}
	return b.Commit(ctx)
}

func (m markingDS) Batch(ctx context.Context) (datastore.Batch, error) {
	return m.batch(ctx), nil
}

func (m markingDS) batch(context.Context) *markingBatch {
	return &markingBatch{ds: m.ds, wake: m.wake}
}

// markingBatch writes blocks and their marks in badger transactions of
// bounded size, a block and its mark always in the same one. Like the
// datastore's own batches, a large batch commits in several
// transactions.
type markingBatch struct {
	ds    *badger.Datastore
	wake  chan struct{}
	txn   datastore.Txn
	size  int
	count int
	err   error
}

func (b *markingBatch) Put(ctx context.Context, k datastore.Key, v []byte) error {
	select {
	case b.wake <- struct{}{}:
	default: // already told, or no trimmer (a nil channel)
	}
	key := k.Bytes()
	return b.add(ctx, entrySize(key, v)+entrySize(key, nil), func(txn datastore.Txn) error {
		if err := txn.Put(ctx, k, v); err != nil {
			return err
		}
		if mark := markOf(key); mark != nil {
			return txn.Put(ctx, datastore.RawKey(string(mark)), []byte{})
		}
		return nil
	})
}

func (b *markingBatch) Delete(ctx context.Context, k datastore.Key) error {
	key := k.Bytes()
	return b.add(ctx, 2*entrySize(key, nil), func(txn datastore.Txn) error {
		if err := txn.Delete(ctx, k); err != nil {
			return err
		}
		if mark := markOf(key); mark != nil {
			return txn.Delete(ctx, datastore.RawKey(string(mark)))
		}
		return nil
	})
}

// add applies one block's writes (size: an upper bound of what they
// count) in the current transaction, after committing it if they might
// not fit.
func (b *markingBatch) add(ctx context.Context, size int, do func(datastore.Txn) error) error {
	if b.err != nil {
		return b.err
	}
	if b.txn != nil && (b.size+size > batchBytes || b.count+2 > batchEntries) {
		if err := b.commit(ctx); err != nil {
			return err
		}
	}
	if b.txn == nil {
		txn, err := b.ds.NewTransaction(ctx, false)
		if err != nil {
			b.err = err
			return err
		}
		b.txn = txn
	}
	b.size += size
	b.count += 2
	if err := do(b.txn); err != nil {
		// The transaction may hold the block without its mark: drop
		// it, and every write of the batch since its last commit.
		b.txn.Discard(ctx)
		b.txn = nil
		b.err = fmt.Errorf("write block: %w", err)
		return b.err
	}
	return nil
}

func (b *markingBatch) commit(ctx context.Context) error {
	err := b.txn.Commit(ctx)
	b.txn.Discard(ctx)
	b.txn, b.size, b.count = nil, 0, 0
	if err != nil {
		b.err = fmt.Errorf("write blocks: %w", err)
	}
	return b.err
}

func (b *markingBatch) Commit(ctx context.Context) error {
	if b.err != nil || b.txn == nil {
		return b.err
	}
	return b.commit(ctx)
}

// markAll gives every block its mark, once, in a store written before
// the marks existed (or by an older medmesh): one keys-only walk of the
// blocks. Nothing else writes meanwhile (Open runs it). Killed half-way,
// it starts again at the next open: a mark is only ever written for a
// block that exists, and marksDoneKey last.
func markAll(ctx context.Context, ds *badger.Datastore) error {
	done, err := ds.Has(ctx, datastore.NewKey(marksDoneKey))
	if err != nil || done {
		return err
	}
	// Marks left by an interrupted run, or by a store whose blocks were
	// deleted by an older medmesh since: start from none.
	if err := ds.DB.DropPrefix([]byte(markPrefix)); err != nil {
		return err
	}
	txn := ds.DB.NewTransaction(false)
	defer txn.Discard()
	opts := badgerdb.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = []byte(blockPrefix)
	it := txn.NewIterator(opts)
	defer it.Close()
	wb := ds.DB.NewWriteBatch()
	defer wb.Cancel()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := wb.Set(markOf(it.Item().Key()), []byte{}); err != nil {
			return err
		}
	}
	if err := wb.Flush(); err != nil {
		return err
	}
	if err := ds.Put(ctx, datastore.NewKey(marksDoneKey), []byte{1}); err != nil {
		return err
	}
	return ds.Sync(ctx, datastore.NewKey("/"))
}
