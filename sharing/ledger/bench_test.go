package ledger

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

// chain builds n access entries on a builder ledger (applied there) and
// returns them with the setup entries.
func chain(b *testing.B, n int) (*world, []*Entry, []*Entry) {
	w := newWorld(b, 4)
	src := openNode(b, w.admin, w.genesis)
	setup := w.setup(b, src)
	setup = append(setup, w.grantAll(b, src)...)
	es := make([]*Entry, 0, n)
	batch := make([]*Entry, 0, 1000)
	readers := []int{0, 2, 3} // member 1 owns the record
	for i := 0; i < n; i++ {
		r := readers[i%len(readers)]
		e := forge(b, src, w.members[r], TypeAccess, w.claim(b, 1, r, testEpoch.Add(time.Duration(i))), nil)
		if _, err := src.ingest(context.Background(), []*Entry{e}); err != nil {
			b.Fatal(err)
		}
		es = append(es, e)
		batch = batch[:0]
	}
	return w, setup, es
}

// BenchmarkApply measures validated+applied entries per second through the
// batch path used by sync (signatures checked in parallel, one datastore
// batch per 2,000 entries).
func BenchmarkApply(b *testing.B) {
	const n = 5000
	w, setup, es := chain(b, n)
	raws := make([][]byte, len(es))
	for i, e := range es {
		raws[i] = e.raw
	}
	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		l := openNode(b, w.admin, w.genesis)
		ingestAll(b, l, setup)
		b.StartTimer()
		start := time.Now()
		dec := decodeParallel(raws, func(err error) { b.Fatal(err) })
		res, err := l.ingest(context.Background(), dec)
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		for _, r := range res.Results {
			if r.Status != Applied {
				b.Fatal("entry not applied", r.Err)
			}
		}
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "entries/s")
}

// BenchmarkCatchUp10k measures a node fetching and applying 10,000 missed
// entries (MEDMESH_CATCHUP_ENTRIES, a multiple of 1,000, for another
// number) from a peer over the sync protocol (mocknet, real GossipSub).
func BenchmarkCatchUp10k(b *testing.B) {
	n := 10000
	if v := os.Getenv("MEDMESH_CATCHUP_ENTRIES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 || n%1000 != 0 {
			b.Fatalf("MEDMESH_CATCHUP_ENTRIES=%q: want a positive multiple of 1000", v)
		}
	}
	for i := 0; i < b.N; i++ {
		w := newWorld(b, 2)
		mn, nodes := newMesh(b, w, 2)
		for _, nd := range nodes {
			mn.UnlinkPeers(nodes[0].h.ID(), nodes[1].h.ID())
			mn.DisconnectPeers(nodes[0].h.ID(), nodes[1].h.ID())
			_ = nd
		}
		src := nodes[0].l
		for k := 0; k < n; k += 1000 {
			var es []*Entry
			for j := 0; j < 1000; j++ {
				e := forge(b, src, w.admin, TypeAccess, w.claim(b, 1, 0, testEpoch.Add(time.Duration(k+j))), nil)
				if _, err := src.ingest(context.Background(), []*Entry{e}); err != nil {
					b.Fatal(err)
				}
				es = append(es, e)
			}
		}
		b.StartTimer()
		start := time.Now()
		mn.LinkPeers(nodes[0].h.ID(), nodes[1].h.ID())
		if err := nodes[1].l.SyncWith(context.Background(), nodes[1].h, nodes[0].h.ID()); err == nil {
			// connect-triggered sync may race with this one; both are fine
		}
		waitConverged(b, nodes, 60*time.Second)
		b.ReportMetric(time.Since(start).Seconds(), "catchup-s")
	}
}

// BenchmarkPropagation measures publish-to-applied latency on all nodes.
func BenchmarkPropagation(b *testing.B) {
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			w := newWorld(b, n)
			_, nodes := newMesh(b, w, n)
			subs := make([]<-chan *Entry, n)
			for i, nd := range nodes {
				ch, cancel := nd.l.Subscribe()
				defer cancel()
				subs[i] = ch
			}
			time.Sleep(time.Second) // let the GossipSub mesh form
			var lat []time.Duration
			rng := rand.New(rand.NewPCG(1, 2))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				src := rng.IntN(n)
				owner := (src + 1) % n
				start := time.Now()
				e, err := nodes[src].l.Append(context.Background(), TypeAccess, w.claim(b, owner, src, testEpoch.Add(time.Duration(i))))
				if err != nil {
					b.Fatal(err)
				}
				for j := range nodes {
					waitFor(b, subs[j], e.CID())
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
		})
	}
}

func waitFor(b *testing.B, ch <-chan *Entry, c cid.Cid) {
	timeout := time.After(20 * time.Second)
	for {
		select {
		case e := <-ch:
			if e.CID() == c {
				return
			}
		case <-timeout:
			b.Fatal("entry not applied everywhere")
		}
	}
}

// BenchmarkOwnedListing measures what `ls` reads of an owner's records:
// the owner's listing indexes (OwnedListing) against reading each record
// and scanning its receipts (OwnedRecords + Receipts, before issue #16).
// MEDMESH_BENCH_RECORDS sets the number of records (default 20,000), each
// held by two other members, on badger.
func BenchmarkOwnedListing(b *testing.B) {
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("MEDMESH_BENCH_RECORDS")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	w := newWorld(b, 4)
	l := openNode(b, w.admin, w.genesis)
	w.setup(b, l)
	owner := w.members[1]
	env := envelopeFor(b, owner, "bench")
	var batch []*Entry
	flush := func() {
		if _, err := l.ingest(ctx, batch); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	recs := make([]cid.Cid, n)
	for i := range n {
		p := recordPayload(b, owner, "")
		p.Record, p.Blocklist, p.OwnerEnvelope = fakeCid(fmt.Sprint("rec ", i)), fakeCid(fmt.Sprint("bl ", i)), env
		recs[i] = p.Record
		batch = append(batch, forge(b, l, owner, TypeRecordAnnounce, p, nil))
		flush()
	}
	for _, h := range w.members[2:] {
		for _, rec := range recs {
			batch = append(batch, forge(b, l, h, TypeReceipt, ReceiptPayload{Record: rec, Status: "held"}, nil))
			flush()
		}
	}
	b.Run("listing", func(b *testing.B) {
		for range b.N {
			ls, err := l.OwnedListing(ctx, owner.id)
			if err != nil || len(ls) != n+1 || len(ls[0].Holders) != 3 {
				b.Fatalf("%d records, %v", len(ls), err)
			}
		}
	})
	b.Run("records+receipts", func(b *testing.B) {
		for range b.N {
			rs, err := l.OwnedRecords(ctx, owner.id)
			if err != nil || len(rs) != n+1 {
				b.Fatal(err)
			}
			for _, r := range rs {
				if _, err := l.State().Receipts(ctx, r.ID); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
