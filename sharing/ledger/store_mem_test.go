package ledger

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// sortedKeys against a plain sorted slice, over random inserts, deletes
// and ordered walks from random points, across many chunk splits and
// emptied chunks.
func TestSortedKeys(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var s sortedKeys
	ref := map[string]bool{}
	key := func() string { return fmt.Sprintf("k/%05d", rng.IntN(8000)) }
	check := func(step int) {
		want := make([]string, 0, len(ref))
		for k := range ref {
			want = append(want, k)
		}
		sort.Strings(want)
		var got []string
		s.ascend("", func(k string) bool { got = append(got, k); return true })
		if !slices.Equal(got, want) {
			t.Fatalf("step %d: %d keys walked, want %d", step, len(got), len(want))
		}
		from := key()
		i := sort.SearchStrings(want, from)
		got = got[:0]
		s.ascend(from, func(k string) bool { got = append(got, k); return len(got) < 7 })
		if w := want[i:min(len(want), i+7)]; !slices.Equal(got, w) {
			t.Fatalf("step %d: from %s: %v, want %v", step, from, got, w)
		}
		for _, c := range s.chunks {
			if len(c) == 0 || len(c) > 2*chunkKeys {
				t.Fatalf("step %d: a chunk of %d keys", step, len(c))
			}
		}
	}
	for step := range 40000 {
		k := key()
		if rng.IntN(3) == 0 {
			s.remove(k)
			delete(ref, k)
		} else {
			s.insert(k)
			ref[k] = true
		}
		if step%2000 == 0 {
			check(step)
		}
	}
	check(-1)
	for k := range ref {
		s.remove(k)
	}
	if len(s.chunks) != 0 {
		t.Fatalf("%d chunks left after every key was removed", len(s.chunks))
	}
	s.ascend("", func(string) bool { t.Fatal("a key in an empty set"); return false })
}
