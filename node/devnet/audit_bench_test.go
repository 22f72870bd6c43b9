package devnet

import (
	"context"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/node/records"
)

// BenchmarkReadToAudit measures how long a read takes to reach its owner's
// audit (issue #16: p99 under 2 s): four daemons, a record held by its owner
// and two replicas, a grantee reading it MEDMESH_BENCH_READS times (default
// 200) at random moments (exponential gaps, mean MEDMESH_BENCH_GAP_MS,
// default 300 ms, so some reads fall in the same attestation interval and
// some alone). The owner is the node with the highest peer ID, so the
// replica with the lowest serves the reads (readers ask holders in peer ID
// order): an attestation travels from the replica to the owner over
// GossipSub, as the reader's claim does. For each read it reports when the
// owner's ledger first has an attestation that counts it and when its
// `audit` first counts the reader's claim, from the end of the read, and how many
// claims and attestations the reads cost the ledger.
//
//	go test -run '^$' -bench ReadToAudit -benchtime 1x ./node/devnet/
func BenchmarkReadToAudit(b *testing.B) {
	reads := envInt(b, "MEDMESH_BENCH_READS", 200)
	gap := time.Duration(envInt(b, "MEDMESH_BENCH_GAP_MS", 300)) * time.Millisecond
	ctx := context.Background()
	n, err := Start(ctx, b.TempDir(), []string{"a", "b", "c", "d"}, Options{Timeout: 60 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	nodes := slices.Clone(n.Nodes)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	reader, owner := nodes[0], nodes[3] // the holders, nodes[1] and nodes[2], sort before the owner

	add, err := owner.Daemon.Records.Add(ctx, records.AddRequest{Name: "labs.json", MediaType: "application/json", Replicas: 3,
		Files: []records.FileSource{{Path: "labs.json", Open: func() (io.Reader, error) {
			return io.LimitReader(genReader(7, 4096), 4096), nil
		}}}})
	if err != nil {
		b.Fatal(err)
	}
	rec := add.ID
	grant(b, n, owner, reader, rec)
	deadline := time.Now().Add(60 * time.Second)
	for {
		info, _ := reader.Daemon.Ledger.Record(rec)
		if hs := reader.Daemon.Ledger.Holders(info); len(hs) == 3 {
			if hs[0] == owner.ID {
				b.Fatalf("the owner serves first: %v", hs)
			}
			b.Logf("holders %v; %s serves, %s owns", hs, hs[0].ShortString(), owner.ID.ShortString())
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the replicas did not come")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// One read first, not measured: the reader's first read dials the
	// holders, and under load its manifest may come from two of them (the
	// first one's stream stalls, the next serves it: both attest, and the
	// owner's audit flags the read the reader reported once).
	if err := reader.Daemon.Records.Get(ctx, rec, records.GetRequest{File: -1}, io.Discard); err != nil {
		b.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	att0, cl0 := 0, 0
	for _, s := range owner.Daemon.Ledger.Served(rec) {
		att0 += int(s.Reads)
	}
	if evs, err := owner.Daemon.Records.Audit(rec); err == nil {
		for _, e := range evs {
			cl0 += e.ReportedCount
		}
	}
	b.Logf("the first read: %d reads attested, %d claimed", att0, cl0)

	// The owner's audit, polled: when it first counted k attested reads
	// and k claims.
	var mu sync.Mutex
	var attestedAt, claimedAt []time.Time
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			evs, err := owner.Daemon.Records.Audit(rec)
			if err != nil {
				continue
			}
			// Attested: the reads (manifest fetches) the serving nodes'
			// attestations on the owner's ledger count (the audit's lines
			// would also count a line of blocks alone as a read).
			att, cl := 0, 0
			for _, s := range owner.Daemon.Ledger.Served(rec) {
				if s.Reader == reader.ID {
					att += int(s.Reads)
				}
			}
			for _, e := range evs {
				if e.Reader == reader.ID.String() {
					cl += e.ReportedCount
				}
			}
			att, cl = att-att0, cl-cl0
			now := time.Now()
			mu.Lock()
			for len(attestedAt) < att {
				attestedAt = append(attestedAt, now)
			}
			for len(claimedAt) < cl {
				claimedAt = append(claimedAt, now)
			}
			mu.Unlock()
		}
	}()

	done := make([]time.Time, 0, reads)
	b.ResetTimer()
	for range b.N {
		for range reads {
			time.Sleep(time.Duration(rand.ExpFloat64() * float64(gap)))
			if err := reader.Daemon.Records.Get(ctx, rec, records.GetRequest{File: -1}, io.Discard); err != nil {
				b.Fatal(err)
			}
			done = append(done, time.Now())
		}
	}
	b.StopTimer()
	wait := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		a, c := len(attestedAt), len(claimedAt)
		mu.Unlock()
		if a >= len(done) && c >= len(done) {
			break
		}
		if time.Now().After(wait) {
			b.Fatalf("after 30 s the owner's audit counts %d attested and %d claimed of %d reads", a, c, len(done))
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	<-polled
	report := func(name string, at []time.Time) {
		lat := make([]time.Duration, len(done))
		for i := range done {
			lat[i] = max(at[i].Sub(done[i]), 0)
		}
		slices.Sort(lat)
		q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		b.ReportMetric(q(0.5).Seconds()*1000, name+"-p50-ms")
		b.ReportMetric(q(0.99).Seconds()*1000, name+"-p99-ms")
		b.ReportMetric(lat[len(lat)-1].Seconds()*1000, name+"-max-ms")
		b.Logf("%s: p50 %v p90 %v p99 %v max %v over %d reads", name, q(0.5), q(0.9), q(0.99), lat[len(lat)-1], len(lat))
	}
	report("attested", attestedAt)
	report("claimed", claimedAt)
	var served []peer.ID
	evs, _ := owner.Daemon.Records.Audit(rec)
	for _, e := range evs {
		for _, a := range e.AttestedBy {
			p, _ := peer.Decode(a)
			if !slices.Contains(served, p) {
				served = append(served, p)
			}
		}
	}
	b.Logf("%d audit lines, attested by %v", len(evs), served)
	// What the reads cost the ledger: claims and attestations per read.
	claims, attests := len(owner.Daemon.Ledger.Access(rec)), len(owner.Daemon.Ledger.Served(rec)) // (the first read's too)
	b.ReportMetric(float64(claims)/float64(len(done)), "claims/read")
	b.ReportMetric(float64(attests)/float64(len(done)), "attestations/read")
	b.Logf("%d reads: %d claims, %d attestations on the owner's ledger", len(done), claims, attests)
	byServer := map[string][2]uint64{}
	for _, s := range owner.Daemon.Ledger.Served(rec) {
		v := byServer[s.Server.ShortString()]
		byServer[s.Server.ShortString()] = [2]uint64{v[0] + s.Reads, v[1] + s.Blocks}
	}
	b.Logf("reads and blocks attested by each server: %v", byServer)
}
