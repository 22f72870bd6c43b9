package auditlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/multiformats/go-multihash"
)

// The reference vectors of RFC 6962's Merkle tree, as Certificate
// Transparency's implementations test them (the eight leaves below, the
// root of each prefix, audit paths and consistency proofs), also in
// golang.org/x/mod/sumdb/tlog's and transparency-dev/merkle's tests. A log
// no other implementation agrees with proves nothing to an auditor.
var (
	rfcLeaves = []string{"", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"}
	rfcRoots  = []string{
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
		"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
		"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
		"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
	}
	// leaf index (0-based), tree size, audit path
	rfcInclusion = []struct {
		n, size int64
		path    []string
	}{
		{0, 8, []string{"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
		{5, 8, []string{"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
		{2, 3, []string{"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
		{1, 5, []string{"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
	}
	rfcConsistency = []struct {
		old, new int64
		path     []string
	}{
		{1, 1, nil},
		{1, 8, []string{"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7", "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
		{6, 8, []string{"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a", "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
		{2, 5, []string{"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
	}
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hexPath(hs []Hash) []string {
	out := []string{}
	for _, h := range hs {
		out = append(out, hex.EncodeToString(h[:]))
	}
	return out
}

// fakeCID names leaf data as the ledger would (a raw block's CID).
func fakeCID(data []byte) cid.Cid {
	mh, _ := multihash.Sum(data, multihash.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, mh)
}

var testRecord = fakeCID([]byte("record"))

func newLog(t *testing.T) (*Log, datastore.Batching) {
	t.Helper()
	ds := dssync.MutexWrap(datastore.NewMapDatastore())
	l, err := Open(context.Background(), ds)
	if err != nil {
		t.Fatal(err)
	}
	return l, ds
}

func appendData(t *testing.T, l *Log, data ...[]byte) {
	t.Helper()
	var ls []Leaf
	for _, d := range data {
		ls = append(ls, Leaf{Data: d, Entry: fakeCID(d), Record: testRecord})
	}
	if _, err := l.Append(context.Background(), ls); err != nil {
		t.Fatal(err)
	}
}

func rfcLog(t *testing.T) *Log {
	t.Helper()
	l, _ := newLog(t)
	// One at a time: each append computes its stored hashes from what is
	// on disk.
	for _, s := range rfcLeaves {
		appendData(t, l, mustHex(t, s))
	}
	return l
}

func TestRootsMatchRFC6962(t *testing.T) {
	ctx := context.Background()
	l, _ := newLog(t)
	for n := 0; n <= len(rfcLeaves); n++ {
		if n > 0 {
			appendData(t, l, mustHex(t, rfcLeaves[n-1]))
		}
		r, err := l.Root(ctx, int64(n))
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(r[:]); got != rfcRoots[n] {
			t.Errorf("size %d: root %s, RFC 6962 says %s", n, got, rfcRoots[n])
		}
	}
	// The same leaves in one batch give the same tree.
	b, _ := newLog(t)
	var all [][]byte
	for _, s := range rfcLeaves {
		all = append(all, mustHex(t, s))
	}
	appendData(t, b, all...)
	for n := int64(1); n <= 8; n++ {
		r, _ := b.Root(ctx, n)
		if hex.EncodeToString(r[:]) != rfcRoots[n] {
			t.Errorf("batched append: size %d root differs", n)
		}
	}
	// Leaf and node hashing are RFC 6962's (0x00 and 0x01 prefixes).
	if h := LeafHash(nil); h != sha256.Sum256([]byte{0}) {
		t.Errorf("leaf hash of nothing: %x", h)
	}
}

func TestInclusionMatchesRFC6962(t *testing.T) {
	ctx := context.Background()
	l := rfcLog(t)
	for _, v := range rfcInclusion {
		p, err := l.ProveInclusion(ctx, v.n, v.size)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(hexPath(p)) != fmt.Sprint(v.path) {
			t.Errorf("leaf %d in %d: path %v, RFC 6962 says %v", v.n, v.size, hexPath(p), v.path)
		}
		root := [32]byte(mustHex(t, rfcRoots[v.size]))
		leaf := LeafHash(mustHex(t, rfcLeaves[v.n]))
		if err := CheckInclusion(p, v.size, root, v.n, leaf); err != nil {
			t.Errorf("leaf %d in %d: %v", v.n, v.size, err)
		}
		// A changed leaf, another index, another root: each fails.
		if CheckInclusion(p, v.size, root, v.n, LeafHash(append(mustHex(t, rfcLeaves[v.n]), 1))) == nil {
			t.Errorf("leaf %d in %d: a changed leaf verified", v.n, v.size)
		}
		if CheckInclusion(p, v.size, root, (v.n+1)%v.size, leaf) == nil && v.size > 1 {
			t.Errorf("leaf %d in %d: the proof verified at another index", v.n, v.size)
		}
		if CheckInclusion(p, v.size, [32]byte(mustHex(t, rfcRoots[0])), v.n, leaf) == nil {
			t.Errorf("leaf %d in %d: verified against another root", v.n, v.size)
		}
	}
}

func TestConsistencyMatchesRFC6962(t *testing.T) {
	ctx := context.Background()
	l := rfcLog(t)
	for _, v := range rfcConsistency {
		p, err := l.ProveConsistency(ctx, v.old, v.new)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(hexPath(p)) != fmt.Sprint(append([]string{}, v.path...)) {
			t.Errorf("%d→%d: proof %v, RFC 6962 says %v", v.old, v.new, hexPath(p), v.path)
		}
		oldRoot, newRoot := [32]byte(mustHex(t, rfcRoots[v.old])), [32]byte(mustHex(t, rfcRoots[v.new]))
		if err := CheckConsistency(p, v.old, oldRoot, v.new, newRoot); err != nil {
			t.Errorf("%d→%d: %v", v.old, v.new, err)
		}
		if v.old != v.new && CheckConsistency(p, v.old, [32]byte(mustHex(t, rfcRoots[v.old+1])), v.new, newRoot) == nil {
			t.Errorf("%d→%d: verified from another old root", v.old, v.new)
		}
	}
}

// Every leaf of every tree up to 40 leaves proves its inclusion, and every
// pair of sizes its consistency: each shape of the recursion.
func TestProofsAllSizes(t *testing.T) {
	ctx := context.Background()
	l, _ := newLog(t)
	roots := []Hash{emptyRoot}
	for n := 1; n <= 40; n++ {
		appendData(t, l, []byte{byte(n), byte(n * 7)})
		r, err := l.Root(ctx, int64(n))
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, r)
	}
	for size := int64(1); size <= 40; size++ {
		for n := range size {
			p, err := l.ProveInclusion(ctx, n, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckInclusion(p, size, roots[size], n, LeafHash([]byte{byte(n + 1), byte((n + 1) * 7)})); err != nil {
				t.Fatalf("leaf %d of %d: %v", n, size, err)
			}
		}
		for old := int64(1); old <= size; old++ {
			p, err := l.ProveConsistency(ctx, old, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckConsistency(p, old, roots[old], size, roots[size]); err != nil {
				t.Fatalf("%d→%d: %v", old, size, err)
			}
		}
	}
}

// A log rewritten after a tree head was published (one old leaf changed,
// then grown) cannot prove it only grew from that head.
func TestRewrittenLogFailsConsistency(t *testing.T) {
	ctx := context.Background()
	honest, forged := rfcLog(t), func() *Log {
		l, _ := newLog(t)
		for i, s := range rfcLeaves {
			d := mustHex(t, s)
			if i == 2 {
				d = []byte("rewritten")
			}
			appendData(t, l, d)
		}
		return l
	}()
	published, _ := honest.Root(ctx, 5) // what the auditor kept
	for _, l := range []*Log{honest, forged} {
		p, err := l.ProveConsistency(ctx, 5, 8)
		if err != nil {
			t.Fatal(err)
		}
		newRoot, _ := l.Root(ctx, 8)
		err = CheckConsistency(p, 5, published, 8, newRoot)
		if (l == honest) != (err == nil) {
			t.Fatalf("honest %v: %v", l == honest, err)
		}
		// An inclusion proof of the changed leaf against the published
		// head fails too.
		ip, _ := l.ProveInclusion(ctx, 2, 5)
		lf, _ := l.Leaf(ctx, 2)
		err = CheckInclusion(ip, 5, published, 2, LeafHash(lf.Data))
		if (l == honest) != (err == nil) {
			t.Fatalf("inclusion, honest %v: %v", l == honest, err)
		}
	}
}

// The log is in the datastore: reopened, it has the same leaves and root;
// an entry appended twice is one leaf.
func TestLogDurableAndIdempotent(t *testing.T) {
	ctx := context.Background()
	l, ds := newLog(t)
	appendData(t, l, []byte("a"), []byte("b"), []byte("a"))
	appendData(t, l, []byte("b"), []byte("c"))
	if l.Size() != 3 {
		t.Fatalf("size %d, want 3 (duplicates are one leaf)", l.Size())
	}
	r1, _ := l.Root(ctx, 3)
	l2, err := Open(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l2.Root(ctx, 3)
	if err != nil || r1 != r2 || l2.Size() != 3 {
		t.Fatalf("reopened: size %d root %x (%v), want %x", l2.Size(), r2, err, r1)
	}
	lf, err := l2.Leaf(ctx, 1)
	if err != nil || !bytes.Equal(lf.Data, []byte("b")) || lf.Entry != fakeCID([]byte("b")) || lf.Record != testRecord {
		t.Fatalf("leaf 1: %+v %v", lf, err)
	}
	if n, ok, _ := l2.Has(ctx, fakeCID([]byte("c"))); !ok || n != 2 {
		t.Fatalf("index of c: %d %v", n, ok)
	}
	idx, err := l2.RecordLeaves(ctx, testRecord)
	if err != nil || fmt.Sprint(idx) != "[0 1 2]" {
		t.Fatalf("record leaves %v %v", idx, err)
	}
	if _, err := l2.ProveInclusion(ctx, 3, 3); err == nil {
		t.Fatal("a proof of a leaf past the end")
	}
	if _, err := l2.ProveConsistency(ctx, 2, 4); err == nil {
		t.Fatal("a consistency proof past the end")
	}
}

func dssyncMap() datastore.Batching { return dssync.MutexWrap(datastore.NewMapDatastore()) }
