package ledger

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// TestTrimCachesWhenQuiet: the DAG caches go only after trimQuiet without
// an applied entry and above the floor, and the ledger reads and applies
// as before once they have gone.
func TestTrimCachesWhenQuiet(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 4)
	l := openNode(t, w.admin, w.genesis)
	var mu sync.Mutex
	now := time.Now()
	l.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	w.setup(t, l)
	before, _, err := l.ScopeDigest(ctx, ScopeGlobal)
	if err != nil {
		t.Fatal(err)
	}
	cached := func() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.core.d.cache) }
	if cached() == 0 {
		t.Fatal("nothing cached after applying the setup")
	}
	if n := l.trimIfQuiet(0, 1); n != 0 {
		t.Fatalf("trimmed %d nodes right after applying", n)
	}
	advance(trimQuiet - time.Second)
	if n := l.trimIfQuiet(0, 1); n != 0 {
		t.Fatalf("trimmed %d nodes %s after the last apply", n, trimQuiet-time.Second)
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
	// Still applies on top of heads it no longer caches, and counts again.
	w.grantAll(t, l)
	if n := l.trimIfQuiet(0, 1); n != 0 {
		t.Fatalf("trimmed %d nodes right after new entries", n)
	}
	advance(trimQuiet)
	if n := l.trimIfQuiet(0, 1); n == 0 {
		t.Fatal("nothing trimmed after the new entries went quiet")
	}
}
