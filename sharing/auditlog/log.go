package auditlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"golang.org/x/mod/sumdb/tlog"
)

// Hash is a tree or leaf hash (SHA-256).
type Hash = tlog.Hash

// LeafHash is RFC 6962's leaf hash, SHA-256(0x00 || data).
func LeafHash(data []byte) Hash { return tlog.RecordHash(data) }

// EmptyRoot is the root of the empty tree, SHA-256 of nothing.
var emptyRoot = Hash{0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
	0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55}

// Leaf is one entry appended to the log: its data (the ledger entry's
// bytes), the entry's CID and the record it is about.
type Leaf struct {
	Data   []byte
	Entry  cid.Cid
	Record cid.Cid
}

// Log is an append-only Merkle log stored in a datastore. Appends are
// serialised; proofs may run beside them (they read only hashes of
// complete subtrees, which never change).
type Log struct {
	ds datastore.Batching
	mu sync.Mutex // serialises appends
	// importMu serialises segment imports (ImportSegment), which may cut
	// the log back.
	importMu sync.Mutex
	smu      sync.RWMutex
	size     int64
}

// Keys in the log's datastore.
var (
	keySize = datastore.NewKey("/size")
)

func hashKey(i int64) datastore.Key { return datastore.NewKey(fmt.Sprintf("/h/%016x", i)) }
func leafKey(n int64) datastore.Key { return datastore.NewKey(fmt.Sprintf("/l/%016x", n)) }
func entryKey(c cid.Cid) datastore.Key {
	return datastore.NewKey("/e/" + c.String())
}
func recordKey(rec cid.Cid, n int64) datastore.Key {
	return datastore.NewKey(fmt.Sprintf("/r/%s/%016x", rec, n))
}
func headKey(size int64) datastore.Key { return datastore.NewKey(fmt.Sprintf("/sth/%016x", size)) }

// Open opens the log kept in ds (a namespace of the node's datastore).
func Open(ctx context.Context, ds datastore.Batching) (*Log, error) {
	l := &Log{ds: ds}
	b, err := ds.Get(ctx, keySize)
	switch {
	case errors.Is(err, datastore.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("audit log: read its size: %w", err)
	case len(b) != 8:
		return nil, fmt.Errorf("audit log: its size is stored as %d bytes, not 8: the datastore is damaged", len(b))
	default:
		l.size = int64(binary.BigEndian.Uint64(b))
	}
	return l, nil
}

// Size is the number of leaves.
func (l *Log) Size() int64 {
	l.smu.RLock()
	defer l.smu.RUnlock()
	return l.size
}

// Has reports whether entry is in the log, and at which index.
func (l *Log) Has(ctx context.Context, entry cid.Cid) (int64, bool, error) {
	b, err := l.ds.Get(ctx, entryKey(entry))
	if errors.Is(err, datastore.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("audit log: look up entry %s: %w", entry, err)
	}
	if len(b) != 8 {
		return 0, false, fmt.Errorf("audit log: index of entry %s is damaged", entry)
	}
	return int64(binary.BigEndian.Uint64(b)), true, nil
}

// Append adds the leaves not already in the log, in order, in one atomic
// batch, and returns how many it added.
func (l *Log) Append(ctx context.Context, leaves []Leaf) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.Size()
	batch, err := l.ds.Batch(ctx)
	if err != nil {
		return 0, err
	}
	// Hashes written in this batch, which the datastore does not return
	// until it commits.
	fresh := map[int64]Hash{}
	r := tlog.HashReaderFunc(func(idx []int64) ([]Hash, error) {
		out := make([]Hash, len(idx))
		for i, x := range idx {
			if h, ok := fresh[x]; ok {
				out[i] = h
				continue
			}
			h, err := l.readHash(ctx, x)
			if err != nil {
				return nil, err
			}
			out[i] = h
		}
		return out, nil
	})
	added := 0
	seen := map[cid.Cid]bool{}
	for _, lf := range leaves {
		if seen[lf.Entry] {
			continue
		}
		seen[lf.Entry] = true
		if _, ok, err := l.Has(ctx, lf.Entry); err != nil {
			return 0, err
		} else if ok {
			continue
		}
		hs, err := tlog.StoredHashes(n, lf.Data, r)
		if err != nil {
			return 0, fmt.Errorf("audit log: hash leaf %d: %w", n, err)
		}
		base := tlog.StoredHashIndex(0, n)
		for i, h := range hs {
			fresh[base+int64(i)] = h
			if err := batch.Put(ctx, hashKey(base+int64(i)), h[:]); err != nil {
				return 0, err
			}
		}
		var idx [8]byte
		binary.BigEndian.PutUint64(idx[:], uint64(n))
		rec := append(append([]byte{}, lf.Record.Bytes()...), lf.Data...)
		for _, kv := range []struct {
			k datastore.Key
			v []byte
		}{
			{leafKey(n), append(lenPrefix(lf.Entry.Bytes()), rec...)},
			{entryKey(lf.Entry), idx[:]},
			{recordKey(lf.Record, n), nil},
		} {
			if err := batch.Put(ctx, kv.k, kv.v); err != nil {
				return 0, err
			}
		}
		n++
		added++
	}
	if added == 0 {
		return 0, nil
	}
	var sz [8]byte
	binary.BigEndian.PutUint64(sz[:], uint64(n))
	if err := batch.Put(ctx, keySize, sz[:]); err != nil {
		return 0, err
	}
	if err := batch.Commit(ctx); err != nil {
		return 0, fmt.Errorf("audit log: append %d leaves: %w", added, err)
	}
	l.smu.Lock()
	l.size = n
	l.smu.Unlock()
	return added, nil
}

// lenPrefix prefixes b with its length (one byte: CIDs are short).
func lenPrefix(b []byte) []byte { return append([]byte{byte(len(b))}, b...) }

// Leaf returns leaf n.
func (l *Log) Leaf(ctx context.Context, n int64) (Leaf, error) {
	if n < 0 || n >= l.Size() {
		return Leaf{}, fmt.Errorf("audit log: no leaf %d (size %d)", n, l.Size())
	}
	b, err := l.ds.Get(ctx, leafKey(n))
	if err != nil {
		return Leaf{}, fmt.Errorf("audit log: read leaf %d: %w", n, err)
	}
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return Leaf{}, fmt.Errorf("audit log: leaf %d is damaged", n)
	}
	e, err := cid.Cast(b[1 : 1+b[0]])
	if err != nil {
		return Leaf{}, fmt.Errorf("audit log: leaf %d: %w", n, err)
	}
	rest := b[1+b[0]:]
	rn, rec, err := cid.CidFromBytes(rest)
	if err != nil {
		return Leaf{}, fmt.Errorf("audit log: leaf %d: %w", n, err)
	}
	return Leaf{Entry: e, Record: rec, Data: rest[rn:]}, nil
}

// RecordLeaves lists the indexes of the leaves about rec, in order.
func (l *Log) RecordLeaves(ctx context.Context, rec cid.Cid) ([]int64, error) {
	prefix := "/r/" + rec.String()
	res, err := l.ds.Query(ctx, query.Query{Prefix: prefix, KeysOnly: true})
	if err != nil {
		return nil, err
	}
	defer res.Close()
	out := []int64{}
	for r := range res.Next() {
		if r.Error != nil {
			return nil, r.Error
		}
		var n int64
		if _, err := fmt.Sscanf(r.Key[len(prefix)+1:], "%x", &n); err != nil {
			return nil, fmt.Errorf("audit log: bad index key %s", r.Key)
		}
		out = append(out, n)
	}
	slices.Sort(out) // (badger lists keys in order; not every datastore does)
	return out, nil
}

func (l *Log) readHash(ctx context.Context, i int64) (Hash, error) {
	var h Hash
	b, err := l.ds.Get(ctx, hashKey(i))
	if err != nil {
		return h, fmt.Errorf("audit log: read stored hash %d: %w", i, err)
	}
	if len(b) != len(h) {
		return h, fmt.Errorf("audit log: stored hash %d is damaged", i)
	}
	copy(h[:], b)
	return h, nil
}

func (l *Log) reader(ctx context.Context) tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]Hash, error) {
		out := make([]Hash, len(idx))
		for i, x := range idx {
			h, err := l.readHash(ctx, x)
			if err != nil {
				return nil, err
			}
			out[i] = h
		}
		return out, nil
	})
}

// Root is the tree hash of the first size leaves.
func (l *Log) Root(ctx context.Context, size int64) (Hash, error) {
	if size < 0 || size > l.Size() {
		return Hash{}, fmt.Errorf("audit log: no tree of size %d (the log has %d leaves)", size, l.Size())
	}
	if size == 0 {
		return emptyRoot, nil
	}
	return tlog.TreeHash(size, l.reader(ctx))
}

// ProveInclusion proves leaf n in the tree of size leaves.
func (l *Log) ProveInclusion(ctx context.Context, n, size int64) ([]Hash, error) {
	if n < 0 || n >= size || size > l.Size() {
		return nil, fmt.Errorf("audit log: leaf %d is not in a tree of size %d (the log has %d leaves)", n, size, l.Size())
	}
	return tlog.ProveRecord(size, n, l.reader(ctx))
}

// ProveConsistency proves that the tree of size old is a prefix of the
// tree of size new.
func (l *Log) ProveConsistency(ctx context.Context, old, new int64) ([]Hash, error) {
	if old < 1 || old > new || new > l.Size() {
		return nil, fmt.Errorf("audit log: no consistency proof from size %d to %d (sizes 1 ≤ old ≤ new ≤ %d)", old, new, l.Size())
	}
	return tlog.ProveTree(new, old, l.reader(ctx))
}

// PutHead stores a signed tree head for its size.
func (l *Log) PutHead(ctx context.Context, size int64, note []byte) error {
	return l.ds.Put(ctx, headKey(size), note)
}

// Head returns the signed tree head stored for size, if any.
func (l *Log) Head(ctx context.Context, size int64) ([]byte, bool, error) {
	b, err := l.ds.Get(ctx, headKey(size))
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("audit log: read the tree head of size %d: %w", size, err)
	}
	return b, true, nil
}

// CheckInclusion checks an inclusion proof of the leaf with hash leaf at
// index n in the tree of size size with root root (RFC 9162 2.1.3.2).
func CheckInclusion(proof []Hash, size int64, root Hash, n int64, leaf Hash) error {
	if n < 0 || n >= size {
		return fmt.Errorf("leaf index %d outside a tree of size %d", n, size)
	}
	return tlog.CheckRecord(proof, size, root, n, leaf)
}

// CheckConsistency checks a consistency proof from the tree of size old
// and root oldRoot to the tree of size new and root newRoot (RFC 9162
// 2.1.4.2).
func CheckConsistency(proof []Hash, old int64, oldRoot Hash, new int64, newRoot Hash) error {
	if old < 1 || old > new {
		return fmt.Errorf("no consistency proof from size %d to %d", old, new)
	}
	return tlog.CheckTree(proof, new, newRoot, old, oldRoot)
}
