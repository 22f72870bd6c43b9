package records

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// The records with blocks in the index (what `ls` lists beside its owned,
// held and granted records) are exactly the distinct records of its
// blocks, through indexing, re-indexing a block under another record and
// dropping blocks.
func TestIndexRecords(t *testing.T) {
	x := newBlockIndex(nil)
	c := func(s string) cid.Cid {
		return cid.NewCidV1(cid.Raw, mh.Multihash(append([]byte{0x00, byte(len(s))}, s...)))
	}
	check := func(when string) {
		t.Helper()
		want := map[cid.Cid]bool{}
		for _, r := range x.blocks {
			want[r] = true
		}
		got := x.records()
		if len(got) != len(want) {
			t.Fatalf("%s: records %v, want %v", when, got, want)
		}
		for _, r := range got {
			if !want[r] {
				t.Fatalf("%s: records %v, want %v", when, got, want)
			}
		}
		if slices.ContainsFunc(got, func(r cid.Cid) bool { return x.counts[r] <= 0 }) {
			t.Fatalf("%s: counts %v", when, x.counts)
		}
	}
	r1, r2 := c("r1"), c("r2")
	for i := range 5 {
		x.set(c(fmt.Sprint("a", i)), r1)
	}
	x.set(c("b0"), r2)
	check("indexed")
	x.set(c("a0"), r1) // again
	x.set(c("b0"), r1) // moved to r1: r2 has none left
	check("re-indexed")
	if x.unset(c("zz")) {
		t.Fatal("unset of a block never indexed")
	}
	for i := range 5 {
		if !x.unset(c(fmt.Sprint("a", i))) {
			t.Fatal("unset of an indexed block")
		}
	}
	check("a's dropped")
	x.unset(c("b0"))
	check("all dropped")
	if len(x.records()) != 0 || len(x.counts) != 0 {
		t.Fatalf("empty index: %v %v", x.records(), x.counts)
	}
}
