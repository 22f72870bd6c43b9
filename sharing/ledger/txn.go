package ledger

import (
	"context"
	"sort"

	"github.com/ipfs/go-cid"
)

// txn is a write overlay over the store: reads see earlier writes of the
// same batch; commit writes everything in one Store batch.
type txn struct {
	s      Store
	writes map[string][]byte // nil value = delete
	// dirs indexes written keys by every ancestor directory ("/a/", "/a/b/"),
	// so list does not scan the whole batch. It is built on the first list
	// (most batches never list) and maintained from then on.
	dirs map[string]map[string]struct{}
	// sc, when set, is the ledger's decoded-state cache: every write to a
	// cached state key drops it there.
	sc *stateCache
	// blind holds writes of new keys that nothing reads back before the
	// commit (the log indexes): no overlay map, no directory index.
	blind []kv
	// heads0 are the ledger's heads when the batch began (stageHeads).
	heads0 map[cid.Cid]HLC
}

func newTxn(s Store) *txn {
	return &txn{s: s, writes: map[string][]byte{}}
}

func (t *txn) index(k string) {
	if t.dirs == nil {
		return
	}
	if _, ok := t.writes[k]; ok {
		return
	}
	t.indexKey(k)
}

func (t *txn) indexKey(k string) {
	for i := 1; i < len(k); i++ {
		if k[i] == '/' {
			d := t.dirs[k[:i+1]]
			if d == nil {
				d = map[string]struct{}{}
				t.dirs[k[:i+1]] = d
			}
			d[k] = struct{}{}
		}
	}
}

func (t *txn) get(ctx context.Context, k string) ([]byte, bool, error) {
	if v, ok := t.writes[k]; ok {
		return v, v != nil, nil
	}
	return t.s.Get(ctx, k)
}

func (t *txn) put(k string, v []byte) {
	if v == nil {
		v = []byte{}
	}
	t.index(k)
	t.writes[k] = v
	if t.sc != nil {
		t.sc.invalidate(k)
	}
}

func (t *txn) del(k string) {
	t.index(k)
	t.writes[k] = nil
	if t.sc != nil {
		t.sc.invalidate(k)
	}
}

// putBlind writes a key that no get or list of this batch reads: the /l/
// and /t/ log indexes of newly applied entries.
func (t *txn) putBlind(k string, v []byte) {
	if v == nil {
		v = []byte{}
	}
	t.blind = append(t.blind, kv{k, v})
}

// list returns all pairs under prefix (which must end in "/"), in key order,
// merging uncommitted writes.
func (t *txn) list(ctx context.Context, prefix string) ([]kv, error) {
	m := map[string][]byte{}
	err := t.s.Scan(ctx, prefix, false, func(k string, v []byte) bool {
		m[k] = v
		return true
	})
	if err != nil {
		return nil, err
	}
	if t.dirs == nil {
		t.dirs = map[string]map[string]struct{}{}
		for k := range t.writes {
			t.indexKey(k)
		}
	}
	for k := range t.dirs[prefix] {
		if v := t.writes[k]; true {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
	}
	out := make([]kv, 0, len(m))
	for k, v := range m {
		out = append(out, kv{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (t *txn) commit(ctx context.Context) error {
	if len(t.writes) == 0 && len(t.blind) == 0 {
		return nil
	}
	b, err := t.s.Batch(ctx)
	if err != nil {
		return err
	}
	for _, w := range t.blind {
		if err := b.Put(w.Key, w.Value); err != nil {
			return err
		}
	}
	for k, v := range t.writes {
		if v == nil {
			err = b.Delete(k)
		} else {
			err = b.Put(k, v)
		}
		if err != nil {
			return err
		}
	}
	return b.Commit(ctx)
}
