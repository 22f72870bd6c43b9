package ledger

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// TestTrimCachesWhenQuiet: the DAG caches go only once the node cache has
// not grown for trimQuiet and holds more than the floor, and the ledger
// reads and applies as before once they have gone; new entries, or reads
// of history the cache no longer holds, start the wait again.
func TestTrimCachesWhenQuiet(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 4)
	l := openNode(t, w.admin, w.genesis)
	var mu sync.Mutex
	now := time.Now()
	l.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	setup := w.setup(t, l)
	before, _, err := l.ScopeDigest(ctx, ScopeGlobal)
	if err != nil {
		t.Fatal(err)
	}
	cached := func() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.core.d.cache) }
	if cached() == 0 {
		t.Fatal("nothing cached after applying the setup")
	}
	if n := l.trimIfQuiet(0, 1); n != 0 { // first look: the wait starts
		t.Fatalf("trimmed %d nodes at the first look", n)
	}
	advance(trimQuiet - time.Second)
	if n := l.trimIfQuiet(0, 1); n != 0 {
		t.Fatalf("trimmed %d nodes %s after the cache last grew", n, trimQuiet-time.Second)
	}
	advance(2 * time.Second)
	if n := l.trimIfQuiet(1000, 1); n != 0 {
		t.Fatalf("trimmed %d nodes under the floor", n)
	}
	held := cached()
	if n := l.trimIfQuiet(0, 1); n != held || cached() != 0 {
		t.Fatalf("quiet trim dropped %d of %d nodes, %d left", n, held, cached())
	}
	after, _, err := l.ScopeDigest(ctx, ScopeGlobal)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("digest after the trim %x, before %x (%v)", after, before, err)
	}
	// Reading history it no longer caches (as when serving a peer's
	// catch-up) grows the cache: the wait starts again.
	for _, e := range setup {
		if !l.known(e.CID()) {
			t.Fatalf("entry %s unknown after the trim", e.CID())
		}
	}
	if n := l.trimIfQuiet(0, 1); n != 0 {
		t.Fatalf("trimmed %d nodes right after reads refilled the cache", n)
	}
	advance(trimQuiet)
	if n := l.trimIfQuiet(0, 1); n == 0 {
		t.Fatal("nothing trimmed after the reads went quiet")
	}
	// Still applies on top of heads it no longer caches, and new entries
	// start the wait again.
	w.grantAll(t, l)
	if n := l.trimIfQuiet(0, 1); n != 0 {
		t.Fatalf("trimmed %d nodes right after new entries", n)
	}
	advance(trimQuiet)
	if n := l.trimIfQuiet(0, 1); n == 0 {
		t.Fatal("nothing trimmed after the new entries went quiet")
	}
}
