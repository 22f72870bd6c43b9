package ledger

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

// BenchmarkLateParent: what one entry with old parents costs the entries
// concurrent with it. A member signs an entry X whose parents are from
// far back in the history (a node that appends before catching up, or a
// rogue member on purpose); X is valid and becomes a head. Each entry
// signed before its author saw X (its parents the heads before X) is then
// judged off the heads, and its causal past is found by walking from the
// heads and from its parents down to X's old parents. The benchmark
// reports the time per concurrent entry with and without X, for histories
// of several sizes between X's parents and the heads.
func BenchmarkLateParent(b *testing.B) {
	const concurrent = 20
	for _, h := range []int{1000, 10000, 40000} {
		w, setup, es := chain(b, h)
		src := openNode(b, w.admin, w.genesis)
		ingestAll(b, src, setup)
		if _, err := src.ingest(context.Background(), es); err != nil {
			b.Fatal(err)
		}
		old := setup[len(setup)-1].CID()
		// X: member 2's claim on the last setup entry, before the history.
		late := forge(b, src, w.members[2], TypeAccess, w.claim(b, 1, 2, testEpoch.Add(-time.Hour)), []cid.Cid{old})
		// The concurrent entries: member 3's claims on the heads before X.
		var conc []*Entry
		for i := range concurrent {
			conc = append(conc, forge(b, src, w.members[3], TypeAccess, w.claim(b, 1, 3, testEpoch.Add(time.Duration(h+i)*time.Second)), nil))
		}
		for _, withLate := range []bool{false, true} {
			b.Run(fmt.Sprintf("history=%d/late=%v", h, withLate), func(b *testing.B) {
				var per time.Duration
				for range b.N {
					b.StopTimer()
					l := openNode(b, w.admin, w.genesis)
					ingestAll(b, l, setup)
					if _, err := l.ingest(context.Background(), es); err != nil {
						b.Fatal(err)
					}
					if withLate {
						if out, err := l.ingest(context.Background(), []*Entry{late}); err != nil || out.Results[0].Status != Applied {
							b.Fatalf("the late entry: %v %v", out.Results, err)
						}
					}
					b.StartTimer()
					start := time.Now()
					for _, e := range conc {
						out, err := l.ingest(context.Background(), []*Entry{e})
						if err != nil || out.Results[0].Status != Applied {
							b.Fatalf("a concurrent entry: %v %v", out.Results, err)
						}
					}
					per += time.Since(start) / concurrent
				}
				b.ReportMetric(float64(per.Microseconds())/float64(b.N), "µs/concurrent-entry")
			})
		}
	}
}
