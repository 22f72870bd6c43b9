package ledger

import (
	"context"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
)

// MemStore is a Store in memory: for tests, for driving a Core without a
// node, and for Verify's replay. The zero value is not usable; use
// NewMemStore.
type MemStore struct {
	mu      sync.RWMutex
	kv      map[string][]byte
	keys    sortedKeys // the keys of kv
	entries map[cid.Cid][]byte
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{kv: map[string][]byte{}, entries: map[cid.Cid][]byte{}}
}

// Get implements Store.
func (m *MemStore) Get(_ context.Context, k string) ([]byte, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, ok := m.kv[k]
	return v, ok, nil
}

// Scan implements Store. fn runs on a copy of the listing, so it may use
// the store.
func (m *MemStore) Scan(ctx context.Context, prefix string, keysOnly bool, fn func(string, []byte) bool) error {
	m.mu.RLock()
	var rows []kv
	m.keys.ascend(prefix, func(k string) bool {
		if !strings.HasPrefix(k, prefix) {
			return false
		}
		r := kv{Key: k}
		if !keysOnly {
			r.Value = m.kv[k]
		}
		rows = append(rows, r)
		return true
	})
	m.mu.RUnlock()
	for _, r := range rows {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !fn(r.Key, r.Value) {
			break
		}
	}
	return nil
}

// Batch implements Store.
func (m *MemStore) Batch(context.Context) (Batch, error) {
	return &memBatch{m: m, ops: map[string][]byte{}}, nil
}

type memBatch struct {
	m   *MemStore
	ops map[string][]byte // nil: delete
}

func (b *memBatch) Put(k string, v []byte) error {
	b.ops[k] = append([]byte{}, v...)
	return nil
}

func (b *memBatch) Delete(k string) error {
	b.ops[k] = nil
	return nil
}

// Commit applies the batch and merges its new keys into the sorted key
// list in one pass, so a batch costs the size of the store once, not per
// key.
func (b *memBatch) Commit(context.Context) error {
	m := b.m
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, v := range b.ops {
		_, had := m.kv[k]
		switch {
		case v == nil && had:
			delete(m.kv, k)
			m.keys.remove(k)
		case v != nil:
			if !had {
				m.keys.insert(k)
			}
			m.kv[k] = v
		}
	}
	return nil
}

// sortedKeys is a sorted set of strings kept in chunks of at most
// 2*chunkKeys, so an insert or a delete moves at most a chunk of keys, not
// all of them: a MemStore commits once an entry, and one sorted slice
// rebuilt at each commit made a long history quadratic to build (20,000
// entries of one owner: 155 s, most of it there).
type sortedKeys struct{ chunks [][]string }

const chunkKeys = 512

// find returns the chunk where k is or would go, and its index there.
func (s *sortedKeys) find(k string) (int, int) {
	ci := sort.Search(len(s.chunks), func(j int) bool { c := s.chunks[j]; return c[len(c)-1] >= k })
	if ci == len(s.chunks) {
		ci-- // after every key: the end of the last chunk
	}
	return ci, sort.SearchStrings(s.chunks[ci], k)
}

func (s *sortedKeys) insert(k string) {
	if len(s.chunks) == 0 {
		s.chunks = [][]string{{k}}
		return
	}
	ci, i := s.find(k)
	c := s.chunks[ci]
	if i < len(c) && c[i] == k {
		return
	}
	c = slices.Insert(c, i, k)
	if len(c) > 2*chunkKeys {
		tail := slices.Clone(c[chunkKeys:])
		c = slices.Clip(c[:chunkKeys])
		s.chunks = slices.Insert(s.chunks, ci+1, tail)
	}
	s.chunks[ci] = c
}

func (s *sortedKeys) remove(k string) {
	if len(s.chunks) == 0 {
		return
	}
	ci, i := s.find(k)
	c := s.chunks[ci]
	if i == len(c) || c[i] != k {
		return
	}
	if c = slices.Delete(c, i, i+1); len(c) == 0 {
		s.chunks = slices.Delete(s.chunks, ci, ci+1)
	} else {
		s.chunks[ci] = c
	}
}

// ascend calls fn with each key from the first at or after from, in
// order, until it returns false.
func (s *sortedKeys) ascend(from string, fn func(string) bool) {
	if len(s.chunks) == 0 {
		return
	}
	ci, i := s.find(from)
	for ; ci < len(s.chunks); ci, i = ci+1, 0 {
		for _, k := range s.chunks[ci][i:] {
			if !fn(k) {
				return
			}
		}
	}
}

// PutEntries implements Store.
func (m *MemStore) PutEntries(_ context.Context, es []*Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range es {
		m.entries[e.cid] = e.raw
	}
	return nil
}

// GetEntry implements Store.
func (m *MemStore) GetEntry(_ context.Context, c cid.Cid) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, ok := m.entries[c]
	if !ok {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	return b, nil
}
