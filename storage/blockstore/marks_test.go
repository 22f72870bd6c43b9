package blockstore

import (
	"context"
	"testing"

	bstore "github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/datastore/dshelp"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
)

// The marks mirror the prefix the blockstore writes blocks under.
func TestMarkPrefixIsBlockPrefix(t *testing.T) {
	if got := bstore.BlockPrefix.String() + "/"; got != blockPrefix {
		t.Fatalf("boxo stores blocks under %s, the marks mirror %s", got, blockPrefix)
	}
}

// HasAll's mark of a CID is the mark of the key Blocks stores its block
// under, whatever the CID's version and codec.
func TestAppendMark(t *testing.T) {
	b := randomBlock(t, 10)
	h := b.Cid().Hash()
	for _, c := range []cid.Cid{b.Cid(), cid.NewCidV0(h), cid.NewCidV1(cid.DagCBOR, h)} {
		want := markOf(bstore.BlockPrefix.Child(dshelp.MultihashToDsKey(h)).Bytes())
		if got := appendMark([]byte("x"), c); string(got) != "x"+string(want) {
			t.Fatalf("mark of %s: %q, want %q", c, got, want)
		}
	}
}

// A store written before the marks existed (blocks without marks, and a
// stale mark left by an older medmesh that deleted its block) gets every
// block's mark, and no other, when it is opened; then HasAll is Has.
func TestOpenMarksOldStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Write as an older medmesh did: straight to the datastore.
	old := bstore.NewBlockstore(s.DS)
	var bs []blocks.Block
	for i := range 2000 {
		b := randomBlock(t, 50+i%500)
		bs = append(bs, b)
		if err := old.Put(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	gone := randomBlock(t, 10)
	if err := s.Blocks.Put(ctx, gone); err != nil { // marked
		t.Fatal(err)
	}
	if err := old.DeleteBlock(ctx, gone.Cid()); err != nil { // its mark stays
		t.Fatal(err)
	}
	if err := s.DS.Delete(ctx, datastore.NewKey(marksDoneKey)); err != nil {
		t.Fatal(err)
	}
	ids := []cid.Cid{gone.Cid(), randomBlock(t, 10).Cid()}
	for _, b := range bs {
		ids = append(ids, b.Cid())
	}
	if got, err := s.HasAll(ctx, ids); err != nil || got[2] {
		t.Fatalf("before the reopen, unmarked blocks are not seen: %v %v (the test writes no marks)", got[:3], err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.HasAll(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if got[0] || got[1] {
		t.Fatalf("blocks not stored are held: %v", got[:2])
	}
	for i, b := range bs {
		if !got[i+2] {
			t.Fatalf("block %d (%s), stored before the marks, is not held after the reopen", i, b.Cid())
		}
	}
}

// A block and its mark are written and deleted together, by Put, PutMany
// (batches larger than one transaction of the marks) and DeleteBlock.
func TestMarksFollowBlocks(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var many []blocks.Block
	for i := range 3000 { // more than batchEntries, and than batchBytes
		many = append(many, randomBlock(t, 100+i%2000))
	}
	big := randomBlock(t, 300<<10) // in the value log
	many = append(many, big)
	if err := s.Blocks.PutMany(ctx, many); err != nil {
		t.Fatal(err)
	}
	one := randomBlock(t, 70)
	if err := s.Blocks.Put(ctx, one); err != nil {
		t.Fatal(err)
	}
	all := append(append([]blocks.Block{}, many...), one)
	for i := 0; i < len(all); i += 3 {
		if err := s.Blocks.DeleteBlock(ctx, all[i].Cid()); err != nil {
			t.Fatal(err)
		}
	}
	ids := make([]cid.Cid, len(all))
	for i, b := range all {
		ids[i] = b.Cid()
	}
	got, err := s.HasAll(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for i := range all {
		want := i%3 != 0
		has, err := s.Blocks.Has(ctx, ids[i])
		if err != nil || has != want {
			t.Fatalf("block %d: Has %v %v, want %v", i, has, err, want)
		}
		if got[i] != want {
			t.Fatalf("block %d: HasAll says %v, want %v", i, got[i], want)
		}
	}
	// No mark without a block, none for what is not a block.
	n := 0
	res, err := s.DS.Query(ctx, dsqKeysOnly(markPrefix))
	if err != nil {
		t.Fatal(err)
	}
	for r := range res.Next() {
		if r.Error != nil {
			t.Fatal(r.Error)
		}
		n++
	}
	if want := len(all) - (len(all)+2)/3; n != want {
		t.Fatalf("%d marks for %d blocks", n, want)
	}
}

func dsqKeysOnly(prefix string) dsq.Query { return dsq.Query{Prefix: prefix, KeysOnly: true} }
