package ledger

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestScratchReplays: a node with a scratch directory (as a daemon runs)
// drafts the same checkpoint, block for block, as one replaying in memory,
// verifies its log and computes scope digests there too; each replay's
// database lives in the directory while it runs and is gone when it is
// done; what a killed run left there is deleted when the ledger opens;
// and a scratch directory that cannot be made fails the draft with an
// error and stores nothing.
func TestScratchReplays(t *testing.T) {
	ctx := context.Background()
	sw := newScopedCkptWorld(t)
	o := sw.w.members[0]
	l := openNode(t, sw.w.members[1], sw.w.genesis)
	ingestAll(t, l, sw.holding(0))
	dir := filepath.Join(t.TempDir(), "scratch")
	left := func() int {
		ents, err := os.ReadDir(dir)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return len(ents)
	}
	for _, scope := range []string{OwnerScope(o.id), AuditScope(o.id)} {
		l.o.ScratchDir = ""
		want, wantBlocks, err := l.heldDraft(ctx, scope)
		if err != nil {
			t.Fatal(err)
		}
		wantDigest, wantN, err := l.ScopeDigest(ctx, scope)
		if err != nil {
			t.Fatal(err)
		}
		l.o.ScratchDir = dir
		d, err := l.scopeCheckpointDraft(ctx, scope)
		if err != nil {
			t.Fatal(err)
		}
		if n := left(); n != 1 {
			t.Fatalf("%s: %d databases in the scratch directory while the draft is held, want 1", scope, n)
		}
		if d.ck.CID() != want.CID() || len(d.ck.Blocks) != len(wantBlocks) {
			t.Fatalf("%s: drafted on disk %s (%d blocks), in memory %s (%d blocks)", scope, d.ck.CID(), len(d.ck.Blocks), want.CID(), len(wantBlocks))
		}
		for i, c := range d.ck.Blocks {
			b, err := d.block(ctx, c)
			if err != nil || !bytes.Equal(b, wantBlocks[i]) {
				t.Fatalf("%s: block %d (%s) on disk differs from memory's (err %v)", scope, i, c, err)
			}
		}
		d.close()
		if n := left(); n != 0 {
			t.Fatalf("%s: %d databases left in the scratch directory after the draft", scope, n)
		}
		got, n, err := l.ScopeDigest(ctx, scope)
		if err != nil || !bytes.Equal(got, wantDigest) || n != wantN {
			t.Fatalf("%s: digest on disk %x (%d entries, err %v), in memory %x (%d)", scope, got, n, err, wantDigest, wantN)
		}
	}
	if err := l.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	if n := left(); n != 0 {
		t.Fatalf("%d databases left in the scratch directory after Verify and digests", n)
	}

	// Left over by a killed daemon: deleted by Open.
	stale := filepath.Join(dir, "replay-123", "000001.vlog")
	if err := os.MkdirAll(filepath.Dir(stale), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, []byte("half a replay"), 0o600); err != nil {
		t.Fatal(err)
	}
	reopened, err := Open(ctx, Options{Store: NewMemStore(), Key: sw.w.members[3].key, Genesis: sw.w.genesis, Logger: quietLogger(), Types: testTypes(), ScratchDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	reopened.Close()
	if n := left(); n != 0 {
		t.Fatalf("Open left %d entries of an earlier run in the scratch directory", n)
	}

	// A scratch directory that cannot be made (here a file is in the
	// way; a full disk fails alike): the draft fails, nothing is stored.
	blocked := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocked, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l.o.ScratchDir = filepath.Join(blocked, "scratch")
	scope := OwnerScope(o.id)
	if _, err := l.scopeCheckpointDraft(ctx, scope); err == nil {
		t.Fatal("a draft with an unusable scratch directory succeeded")
	} else if !bytes.Contains([]byte(err.Error()), []byte("scratch")) {
		t.Fatalf("the error does not say it is the scratch directory: %v", err)
	}
	if chain, err := l.CheckpointChain(ctx, scope); err != nil || len(chain) != 0 {
		t.Fatalf("after the failed draft: %d checkpoints (err %v)", len(chain), err)
	}
}

// TestScopeDigestWithoutTheLock: while a scope digest replays (`ledger
// heads --scope`), the node appends entries; the digest is the scope's
// state when it started, as a replay of that state in memory gives it.
func TestScopeDigestWithoutTheLock(t *testing.T) {
	ctx := context.Background()
	sw := newScopedCkptWorld(t)
	l := sw.full
	o := sw.w.members[0]
	scope := AuditScope(o.id)
	want, wantN, err := l.ScopeDigest(ctx, scope)
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	l.digestHook = func() { close(entered); <-release }
	type result struct {
		d   []byte
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		d, n, err := l.ScopeDigest(ctx, scope)
		done <- result{d, n, err}
	}()
	<-entered
	appended := make(chan error, 1)
	go func() {
		e := forge(t, l, sw.w.members[1], TypeAccess, sw.w.claim(t, 0, 1, testEpoch.Add(99*time.Hour)), nil)
		appended <- l.Ingest(ctx, e.raw)
	}()
	select {
	case err := <-appended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("an append waited for a scope digest's replay")
	}
	l.digestHook = nil
	close(release)
	r := <-done
	if r.err != nil || !bytes.Equal(r.d, want) || r.n != wantN {
		t.Fatalf("digest during the append %x (%d entries, err %v), want the state when it started %x (%d)", r.d, r.n, r.err, want, wantN)
	}
	after, afterN, err := l.ScopeDigest(ctx, scope)
	if err != nil || bytes.Equal(after, want) || afterN != wantN+1 {
		t.Fatalf("digest after the append %x (%d entries, err %v): want a new state of %d entries", after, afterN, err, wantN+1)
	}
}
