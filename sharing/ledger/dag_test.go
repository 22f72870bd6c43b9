package ledger

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ipfs/go-cid"
)

// TestDifferenceShortcut: difference with the shortcut taken at once, at
// its default and never gives what the definition gives (the causal past
// of from, inclusive, minus exclude's, newest first), on random DAGs with
// late entries (parents far back, clocks just above them), many queries
// on one dag so that the cached ancestry facts, true and false, are used.
func TestDifferenceShortcut(t *testing.T) {
	ctx := context.Background()
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 16))
		d := &dag{cache: map[cid.Cid]*node{}, anc: map[[2]cid.Cid]bool{}}
		var ids []cid.Cid
		for i := range 400 {
			c := fakeCid(fmt.Sprintf("%d/%d", seed, i))
			n := &node{}
			if i > 0 {
				k := 1 + rng.IntN(3)
				for range k {
					var p int
					if rng.IntN(20) == 0 {
						p = rng.IntN(i) // late: anywhere back
					} else {
						p = max(0, i-1-rng.IntN(6)) // recent
					}
					if pc := ids[p]; !slices.Contains(n.parents, pc) {
						n.parents = append(n.parents, pc)
					}
				}
				var top HLC
				for _, p := range n.parents {
					if pn := d.cache[p]; top.Less(pn.clock) {
						top = pn.clock
					}
				}
				n.clock = HLC{Wall: top.Wall + uint64(rng.IntN(2)), Counter: top.Counter + 1}
			}
			d.cache[c] = n
			ids = append(ids, c)
		}
		past := func(set []cid.Cid) map[cid.Cid]bool {
			seen := map[cid.Cid]bool{}
			stack := slices.Clone(set)
			for len(stack) > 0 {
				c := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				if seen[c] {
					continue
				}
				seen[c] = true
				stack = append(stack, d.cache[c].parents...)
			}
			return seen
		}
		pick := func() []cid.Cid {
			var out []cid.Cid
			for range 1 + rng.IntN(3) {
				c := ids[len(ids)-1-rng.IntN(len(ids)/2)]
				if rng.IntN(4) == 0 {
					c = ids[rng.IntN(len(ids))]
				}
				if !slices.Contains(out, c) {
					out = append(out, c)
				}
			}
			return out
		}
		for q := range 60 {
			from, exclude := pick(), pick()
			if q%10 == 0 {
				exclude = nil
			}
			pf, pe := past(from), past(exclude)
			var want []cid.Cid
			for c := range pf {
				if !pe[c] {
					want = append(want, c)
				}
			}
			slices.SortFunc(want, func(a, b cid.Cid) int {
				if before(d.cache[b].clock, b, d.cache[a].clock, a) {
					return -1
				}
				return 1
			})
			for _, after := range []int{1, 2, shortcutAfter, 1 << 30} {
				got, err := d.differenceAfter(ctx, from, exclude, 0, after)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("seed %d query %d, shortcut after %d: %d entries, want %d", seed, q, after, len(got), len(want))
				}
			}
		}
	}
}
