package ledger

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"
)

// metaReads is a Store that records which entries' metadata (/e/ rows)
// are read one by one, and how often the log (/l/) is scanned.
type metaReads struct {
	Store
	mu       sync.Mutex
	read     map[string]int
	logScans int
}

func (m *metaReads) Scan(ctx context.Context, prefix string, keysOnly bool, fn func(string, []byte) bool) error {
	if prefix == pLog {
		m.mu.Lock()
		m.logScans++
		m.mu.Unlock()
	}
	return m.Store.Scan(ctx, prefix, keysOnly, fn)
}

func (m *metaReads) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if c, ok := strings.CutPrefix(key, pMeta); ok {
		m.mu.Lock()
		m.read[c]++
		m.mu.Unlock()
	}
	return m.Store.Get(ctx, key)
}

// TestDraftReadsItsClosureOnly: a checkpoint draft and a scope digest of
// one owner's scope, on a node that also holds another owner's, read
// none of the other scope's entries and do not scan the log: what they
// replay comes from the walk of their roots' past (scanning every entry
// the node has logged made a draft's cost grow with every scope the node
// follows), and both still reach the scope's state.
func TestDraftReadsItsClosureOnly(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 6, WithScopes())
	st := &metaReads{Store: NewMemStore(), read: map[string]int{}}
	l, err := Open(ctx, Options{Store: st, Key: w.admin.key, Genesis: w.genesis, Logger: quietLogger(), Types: testTypes()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	w.setup(t, l)
	a, b := w.members[1], w.members[2]
	var others []cid.Cid
	for i := range 40 {
		as(t, l, a, TypeRecordAnnounce, recordPayload(t, a, fmt.Sprintf("a%d", i)))
		others = append(others, as(t, l, b, TypeRecordAnnounce, recordPayload(t, b, fmt.Sprintf("b%d", i))).cid)
	}
	scope := OwnerScope(a.id)
	wantDigest, wantN, err := l.ScopeDigest(ctx, scope) // the first: reads are counted from here
	if err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	clear(st.read)
	st.logScans = 0
	st.mu.Unlock()
	d, err := l.scopeCheckpointDraft(ctx, scope)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	digest, n, err := l.ScopeDigest(ctx, scope)
	if err != nil {
		t.Fatal(err)
	}
	if string(digest) != string(wantDigest) || n != wantN || d.ck.Entries == 0 {
		t.Fatalf("digest %x (%d entries), want %x (%d); draft of %d entries", digest, n, wantDigest, wantN, d.ck.Entries)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.logScans > 0 {
		t.Fatalf("a draft and a digest of %s scanned the whole log %d times", scope, st.logScans)
	}
	for _, c := range others {
		if k := st.read[c.String()]; k > 0 {
			t.Fatalf("a draft and a digest of %s read the metadata of %s, an entry of another owner's scope, %d times", scope, c, k)
		}
	}
}
