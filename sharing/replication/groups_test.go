package replication

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestGroupTrackerMatchesGroupsWith drives trackers through random
// changes of membership (joins, leaves, several at once, organisations
// changing, shared and missing organisations, q leaving and coming back)
// and checks each answer against GroupsWith computed from scratch.
func TestGroupTrackerMatchesGroupsWith(t *testing.T) {
	ps := testPeers(t, 90)
	orgOf := func(r *rand.Rand) string {
		switch k := r.Intn(10); {
		case k < 2:
			return "" // members without an organisation rank on their own
		case k < 6:
			return fmt.Sprintf("shared %d", r.Intn(3)) // a few big organisations
		default:
			return fmt.Sprintf("clinic %d", r.Intn(40))
		}
	}
	ranked, updates := 0, 0
	for seed := int64(0); seed < 40; seed++ {
		r := rand.New(rand.NewSource(seed))
		q := ps[int(seed)%len(ps)]
		cur := map[peer.ID]string{}
		for _, p := range ps[:10+r.Intn(50)] {
			cur[p] = orgOf(r)
		}
		cur[q] = orgOf(r)
		tr := NewGroupTracker(q)
		for step := 0; step < 150; step++ {
			switch k := r.Intn(20); {
			case k < 8: // a join
				cur[ps[r.Intn(len(ps))]] = orgOf(r)
			case k < 16: // a leave
				for p := range cur {
					if p != q || r.Intn(10) == 0 {
						delete(cur, p)
						break
					}
				}
			case k < 18: // an organisation changes
				for p := range cur {
					cur[p] = orgOf(r)
					break
				}
			default: // several at once
				for i := 0; i < 1+r.Intn(4); i++ {
					cur[ps[r.Intn(len(ps))]] = orgOf(r)
				}
				for p := range cur {
					if r.Intn(8) == 0 {
						delete(cur, p)
					}
				}
			}
			if r.Intn(30) == 0 {
				cur[q] = orgOf(r) // q's own organisation, or q back
			}
			var ms []Member
			for _, p := range ps { // a stable order, as the ledger's
				if org, ok := cur[p]; ok {
					ms = append(ms, Member{Peer: p, Org: org})
				}
			}
			got, want := tr.Update(ms), GroupsWith(q, ms)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("seed %d step %d: tracker %v, GroupsWith %v", seed, step, got, want)
			}
			ranked += tr.Ranked
			updates++
		}
	}
	t.Logf("%d updates, %.1f owners ranked per update", updates, float64(ranked)/float64(updates))
}

// BenchmarkGroupTracker is what one node computes at a change of
// membership with a tracker (one member leaves, then joins again),
// beside BenchmarkGroupsWith's full computation.
func BenchmarkGroupTracker(b *testing.B) {
	for _, n := range []int{50, 200, 1000} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			ms := randomMembers(n)
			tr := NewGroupTracker(ms[0].Peer)
			tr.Update(ms)
			ranked := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				x := 1 + i%(n-1)
				without := append(append([]Member{}, ms[:x]...), ms[x+1:]...)
				if i%2 == 0 {
					tr.Update(without)
				} else {
					tr.Update(ms)
				}
				ranked += tr.Ranked
			}
			b.ReportMetric(float64(ranked)/float64(b.N), "ranked/op")
		})
	}
}
