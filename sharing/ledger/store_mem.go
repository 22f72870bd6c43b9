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
	keys    []string // the keys of kv, sorted
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
	for i := sort.SearchStrings(m.keys, prefix); i < len(m.keys) && strings.HasPrefix(m.keys[i], prefix); i++ {
		r := kv{Key: m.keys[i]}
		if !keysOnly {
			r.Value = m.kv[r.Key]
		}
		rows = append(rows, r)
	}
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
	var added []string
	deleted := false
	for k, v := range b.ops {
		_, had := m.kv[k]
		switch {
		case v == nil && had:
			delete(m.kv, k)
			deleted = true
		case v != nil:
			if !had {
				added = append(added, k)
			}
			m.kv[k] = v
		}
	}
	keys := m.keys
	if deleted {
		keys = slices.DeleteFunc(slices.Clone(keys), func(k string) bool { _, ok := m.kv[k]; return !ok })
	}
	if len(added) > 0 {
		sort.Strings(added)
		merged := make([]string, 0, len(keys)+len(added))
		i, j := 0, 0
		for i < len(keys) && j < len(added) {
			if keys[i] < added[j] {
				merged = append(merged, keys[i])
				i++
			} else {
				merged = append(merged, added[j])
				j++
			}
		}
		keys = append(append(merged, keys[i:]...), added[j:]...)
	}
	m.keys = keys
	return nil
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
