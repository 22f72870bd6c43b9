package blockstore

import (
	"context"
	"crypto/rand"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	mh "github.com/multiformats/go-multihash"
)

func randomBlock(t *testing.T, n int) blocks.Block {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	c, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum(b)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := blocks.NewBlockWithCid(b, c)
	return blk
}

// A snapshot lists the blocks that existed when it was taken: not those
// written after, and still those deleted after.
func TestSnapshot(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	small, big, later := randomBlock(t, 100), randomBlock(t, 1<<20+16), randomBlock(t, 5000)
	for _, b := range []blocks.Block{small, big} {
		if err := s.Blocks.Put(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	// Something that is not a block, beside them.
	if err := s.DS.Put(ctx, datastoreKey("/medmesh/local/x"), []byte("y")); err != nil {
		t.Fatal(err)
	}
	sn, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	if err := s.Blocks.Put(ctx, later); err != nil {
		t.Fatal(err)
	}
	if err := s.Blocks.DeleteBlock(ctx, small.Cid()); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	if err := sn.Each(ctx, func(h mh.Multihash, size int64) error {
		got[string(h)] = size
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("snapshot lists %d blocks, want 2", len(got))
	}
	if got[string(small.Cid().Hash())] != 100 {
		t.Fatalf("small block: size %d", got[string(small.Cid().Hash())])
	}
	if sz := got[string(big.Cid().Hash())]; sz < 1<<20 || sz > 1<<20+64 {
		t.Fatalf("big block: size %d", sz)
	}
}

func datastoreKey(s string) datastore.Key { return datastore.NewKey(s) }
