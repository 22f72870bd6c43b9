package ledger

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/medmesh/medmesh/storage/blockstore"
)

// openWithCkptDir opens a ledger on the badger store in dir keeping its
// checkpoints' state blocks under ckDir ("" : in the store).
func openWithCkptDir(t *testing.T, dir, ckDir string, who *ident, genesis []byte) (*Ledger, *blockstore.Store) {
	t.Helper()
	return openAtEvery(t, dir, who, genesis, 500*time.Millisecond, func(o *Options) { o.CheckpointDir = ckDir })
}

// TestStateBlocksAsFiles: with a checkpoint directory (as a daemon runs),
// a checkpoint's state blocks are files, one per block, and none is a row
// of the datastore; storing the next checkpoint leaves exactly its blocks;
// a joiner loads the state from them; blocks an older version kept in the
// datastore move to files when the ledger opens; what a crash left between
// writing blocks and committing (a block no chain names, a half-written
// file) is deleted at open; and a damaged file is an error, never state.
func TestStateBlocksAsFiles(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 4)
	repo := t.TempDir()
	dsDir, ckDir := filepath.Join(repo, "datastore"), filepath.Join(repo, "checkpoints")
	globalDir := filepath.Join(ckDir, ScopeGlobal)
	files := func() []string {
		t.Helper()
		ents, err := os.ReadDir(globalDir)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	names := func(cs []cid.Cid) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.String())
		}
		slices.Sort(out)
		return out
	}
	rows := func(l *Ledger) int {
		t.Helper()
		n := 0
		for _, p := range []string{pCkptBlock, pCkptScopeBlock} {
			if err := l.store.Scan(ctx, p, true, func(string, []byte) bool { n++; return true }); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}

	// A node of an older version: its blocks are rows.
	a, st := openWithCkptDir(t, dsDir, "", w.admin, w.genesis)
	w.setup(t, a)
	w.grantAll(t, a)
	ck1, _, err := a.MakeCheckpoint(ctx, ScopeGlobal, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := rows(a); n != len(ck1.Blocks) {
		t.Fatalf("without a checkpoint directory: %d block rows, want %d", n, len(ck1.Blocks))
	}
	a.Close()
	st.Close()

	// Opened with a checkpoint directory: the rows become files.
	a, st = openWithCkptDir(t, dsDir, ckDir, w.admin, w.genesis)
	defer func() { a.Close(); st.Close() }()
	if n := rows(a); n != 0 {
		t.Fatalf("%d block rows left in the datastore after the move", n)
	}
	if got, want := files(), names(ck1.Blocks); !slices.Equal(got, want) {
		t.Fatalf("files after the move %v, want the checkpoint's blocks %v", got, want)
	}
	for _, c := range ck1.Blocks {
		if _, err := a.StateBlock(ctx, c); err != nil {
			t.Fatal(err)
		}
	}

	// The next checkpoint replaces them.
	for i := 0; i < 30; i++ {
		as(t, a, w.members[1+i%3], TypeAccess, w.claim(t, 0, 1+i%3, testEpoch.Add(time.Duration(i)*time.Second)))
	}
	ck2, _, err := a.MakeCheckpoint(ctx, ScopeGlobal, nil)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(names(ck1.Blocks), names(ck2.Blocks)) {
		t.Fatal("the second checkpoint has the first one's blocks: the test proves nothing")
	}
	if got, want := files(), names(ck2.Blocks); !slices.Equal(got, want) {
		t.Fatalf("files after the second checkpoint %v, want its blocks %v", got, want)
	}
	if n := rows(a); n != 0 {
		t.Fatalf("the second checkpoint wrote %d block rows to the datastore", n)
	}
	j := openNode(t, newIdent(t), w.genesis)
	if err := j.JoinFromCheckpoint(ctx, chainOf(t, a), a.StateBlock); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(j.Digest(), a.Digest()) {
		t.Fatal("a joiner loading the files reached another digest")
	}

	// Left by a crash: a block no chain names, a temporary file.
	stray := blockCID([]byte("a block of a checkpoint never committed")).String()
	for _, n := range []string{stray, "." + stray + ".part-42"} {
		if err := os.WriteFile(filepath.Join(globalDir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	st.Close()
	a, st = openWithCkptDir(t, dsDir, ckDir, w.admin, w.genesis)
	if got, want := files(), names(ck2.Blocks); !slices.Equal(got, want) {
		t.Fatalf("files after reopening %v, want the latest checkpoint's blocks %v", got, want)
	}

	// A checkpoint that fails while its blocks are written (here a
	// directory where one block goes, as a full disk would fail it)
	// leaves neither a chain row nor any of its blocks.
	for i := 0; i < 10; i++ {
		as(t, a, w.members[1+i%3], TypeAccess, w.claim(t, 0, 1+i%3, testEpoch.Add(time.Hour+time.Duration(i)*time.Second)))
	}
	a.mu.Lock()
	next, _, err := a.core.Checkpoint(ctx, ScopeGlobal, ck2.cid)
	a.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	var inTheWay string
	for _, c := range next.Blocks {
		if !slices.Contains(ck2.Blocks, c) {
			inTheWay = filepath.Join(globalDir, c.String())
		}
	}
	if inTheWay == "" {
		t.Fatalf("the next checkpoint's blocks %v are the stored one's: the test proves nothing", next.Blocks)
	}
	if err := os.MkdirAll(filepath.Join(inTheWay, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.MakeCheckpoint(ctx, ScopeGlobal, nil); err == nil {
		t.Fatal("a checkpoint whose block cannot be written: no error")
	}
	if got, want := files(), names(ck2.Blocks); !slices.Equal(got, want) {
		t.Fatalf("files after a failed checkpoint %v, want the stored one's blocks %v", got, want)
	}
	if n := len(chainOf(t, a)); n != 2 {
		t.Fatalf("chain of %d after a failed checkpoint", n)
	}
	// With more than one block: those written before the failure go too.
	bA, bB := []byte("first block of a checkpoint that fails"), []byte("second block")
	twoBlocks := *next
	twoBlocks.Blocks = []cid.Cid{blockCID(bA), blockCID(bB)}
	if err := os.MkdirAll(filepath.Join(globalDir, blockCID(bB).String(), "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	func() {
		defer a.scopeCkptLock(ScopeGlobal)()
		if err := a.storeCheckpoint(ctx, ScopeGlobal, 2, &twoBlocks, blockMap([][]byte{bA, bB})); err == nil {
			t.Fatal("a checkpoint whose second block cannot be written: no error")
		}
	}()
	if got, want := files(), names(ck2.Blocks); !slices.Equal(got, want) {
		t.Fatalf("files after a failed checkpoint of two blocks %v, want the stored one's blocks %v", got, want)
	}
	ck3, _, err := a.MakeCheckpoint(ctx, ScopeGlobal, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := files(), names(ck3.Blocks); !slices.Equal(got, want) {
		t.Fatalf("files after the checkpoint made again %v, want its blocks %v", got, want)
	}

	// A damaged file is an error naming it.
	victim := filepath.Join(globalDir, ck3.Blocks[0].String())
	if err := os.WriteFile(victim, []byte("not the block"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.StateBlock(ctx, ck3.Blocks[0]); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("a damaged state block file: %v", err)
	}
}
