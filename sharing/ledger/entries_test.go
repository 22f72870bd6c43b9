package ledger

import (
	"context"
	"testing"

	"github.com/ipfs/go-cid"
)

// EachEntry lists every applied entry, genesis included, and each is a
// block in the store.
func TestEachEntry(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 3)
	l, st := openAt(t, t.TempDir(), w.admin, w.genesis)
	want := map[cid.Cid]bool{w.netID: true}
	for _, e := range w.setup(t, l) {
		want[e.CID()] = true
	}
	e := as(t, l, w.members[1], TypeRecordAnnounce, recordPayload(t, w.members[1], "r"))
	want[e.CID()] = true
	got := map[cid.Cid]bool{}
	if err := l.EachEntry(ctx, func(c cid.Cid) error {
		got[c] = true
		if has, err := st.Blocks.Has(ctx, c); err != nil || !has {
			t.Errorf("entry %s is not a block in the store: %v", c, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("EachEntry listed %d entries, want %d", len(got), len(want))
	}
	for c := range want {
		if !got[c] {
			t.Fatalf("EachEntry left out %s", c)
		}
	}
}
