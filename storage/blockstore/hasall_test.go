package blockstore

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// HasAll answers what Has answers for each block, whatever the mix: blocks
// in the memtable and in the tables, deleted ones, blocks never stored,
// the same block asked twice or under another CID version and codec, and
// asks dense (walked) or sparse among many other blocks (sought).
func TestHasAllIsHas(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put := func(n int) []blocks.Block {
		bs := make([]blocks.Block, n)
		for i := range bs {
			bs[i] = randomBlock(t, 10+i%300)
			if err := s.Blocks.Put(ctx, bs[i]); err != nil {
				t.Fatal(err)
			}
		}
		return bs
	}
	flushed := put(3000)
	deleted := flushed[:500]
	for _, b := range deleted {
		if err := s.Blocks.DeleteBlock(ctx, b.Cid()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.FlushMemtables(ctx); err != nil {
		t.Fatal(err)
	}
	fresh := put(1000) // in the memtable
	for _, b := range fresh[:100] {
		if err := s.Blocks.DeleteBlock(ctx, b.Cid()); err != nil {
			t.Fatal(err)
		}
	}
	// Something that is not a block, beside them.
	if err := s.DS.Put(ctx, datastoreKey("/medmesh/local/x"), []byte("y")); err != nil {
		t.Fatal(err)
	}
	var never []cid.Cid
	for range 500 {
		never = append(never, randomBlock(t, 20).Cid())
	}
	all := append(append([]blocks.Block(nil), flushed...), fresh...)
	check := func(name string, cids []cid.Cid) {
		t.Helper()
		got, err := s.HasAll(ctx, cids)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(cids) {
			t.Fatalf("%s: %d answers for %d blocks", name, len(got), len(cids))
		}
		n := 0
		for i, c := range cids {
			want, err := s.Blocks.Has(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if got[i] != want {
				t.Fatalf("%s: block %d (%s): HasAll says %v, Has %v", name, i, c, got[i], want)
			}
			if want {
				n++
			}
		}
		t.Logf("%s: %d of %d held", name, n, len(cids))
	}
	var dense []cid.Cid
	for _, b := range all {
		dense = append(dense, b.Cid())
	}
	dense = append(dense, never...)
	mrand.Shuffle(len(dense), func(i, j int) { dense[i], dense[j] = dense[j], dense[i] })
	check("every block", dense)

	var sparse []cid.Cid
	for i := 0; i < len(all); i += 97 {
		sparse = append(sparse, all[i].Cid())
	}
	sparse = append(sparse, never[:5]...)
	check("sparse", sparse)

	// The same multihash under CIDv0 (dag-pb) and CIDv1 dag-cbor is the
	// same block; asked twice, answered twice.
	h := flushed[700].Cid().Hash()
	gone := deleted[3].Cid()
	check("other CIDs", []cid.Cid{cid.NewCidV0(h), cid.NewCidV1(cid.DagCBOR, h), flushed[700].Cid(), flushed[700].Cid(), gone, gone, never[0]})

	if got, err := s.HasAll(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("no blocks: %v %v", got, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.HasAll(cctx, dense); err == nil {
		t.Fatal("HasAll on a cancelled context: no error")
	}
}

// BenchmarkHasAll: whether a node holds each of N records' root blocks
// (MEDMESH_BENCH_RECORDS, default 100,000), in a store that also holds a
// chunk and a ledger entry per record (the sizes of scripts/recordgen's
// records: a 2 KiB chunk, a manifest, an entry), as `ls` asks it: one Has
// per record, or one HasAll.
func BenchmarkHasAll(b *testing.B) {
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("MEDMESH_BENCH_RECORDS")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	block := func(size int) blocks.Block {
		buf := make([]byte, size)
		rand.Read(buf)
		c, _ := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum(buf)
		blk, _ := blocks.NewBlockWithCid(buf, c)
		return blk
	}
	roots := make([]cid.Cid, n)
	batch := make([]blocks.Block, 0, 3000)
	for i := range n {
		root := block(600)
		roots[i] = root.Cid()
		batch = append(batch, root, block(2100), block(1600))
		if len(batch) == cap(batch) || i == n-1 {
			if err := s.Blocks.PutMany(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	// A tenth of the records are not held here (announced, not stored).
	for i := 0; i < n; i += 10 {
		roots[i] = block(600).Cid()
	}
	if err := s.FlushMemtables(ctx); err != nil {
		b.Fatal(err)
	}
	held := n - (n+9)/10
	b.Run(fmt.Sprintf("Has/records=%d", n), func(b *testing.B) {
		for range b.N {
			count := 0
			for _, c := range roots {
				ok, err := s.Blocks.Has(ctx, c)
				if err != nil {
					b.Fatal(err)
				}
				if ok {
					count++
				}
			}
			if count != held {
				b.Fatalf("%d held, want %d", count, held)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	})
	b.Run(fmt.Sprintf("HasAll/records=%d", n), func(b *testing.B) {
		for range b.N {
			got, err := s.HasAll(ctx, roots)
			if err != nil {
				b.Fatal(err)
			}
			count := 0
			for _, ok := range got {
				if ok {
					count++
				}
			}
			if count != held {
				b.Fatalf("%d held, want %d", count, held)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	})
}
