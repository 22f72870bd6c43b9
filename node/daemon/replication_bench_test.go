package daemon_test

import (
	"context"
	"crypto/rand"
	"os"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/medmesh/medmesh/node/devnet"
	mh "github.com/multiformats/go-multihash"
)

func benchNet(b *testing.B, names ...string) *devnet.Net {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := replOpts()
	o.Replication.Grace = time.Second
	n, err := devnet.Start(ctx, b.TempDir(), names, devnet.Options{Daemon: o})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	return n
}

// BenchmarkReplicationAddToThreeReceipts: time from the start of an add of
// a 64 MiB record (1 GiB with MEDMESH_BENCH_1G=1) to two "held" receipts
// (three holders with the owner) on loopback.
func BenchmarkReplicationAddToThreeReceipts(b *testing.B) {
	size := 64 << 20
	if os.Getenv("MEDMESH_BENCH_1G") != "" {
		size = 1 << 30
	}
	n := benchNet(b, "A", "B", "C", "D")
	A := n.Nodes[0]
	data := make([]byte, size)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rand.Read(data[:4096])
		start := time.Now()
		rec := replAdd(b, A, data, 3)
		added := time.Since(start)
		for len(heldBy(A, rec)) < 2 {
			if time.Since(start) > 5*time.Minute {
				b.Fatal("no three receipts in 5 minutes")
			}
			time.Sleep(20 * time.Millisecond)
		}
		b.ReportMetric(added.Seconds(), "add-s")
		b.ReportMetric(time.Since(start).Seconds(), "to-3-receipts-s")
	}
}

// BenchmarkReplicationRepair: time from stopping a holder of a 16 MiB
// record to a new "held" receipt (grace 1s included).
func BenchmarkReplicationRepair(b *testing.B) {
	n := benchNet(b, "A", "B", "C", "D", "E")
	A := n.Nodes[0]
	data := make([]byte, 16<<20)
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		rand.Read(data[:4096])
		rec := replAdd(b, A, data, 3)
		for len(heldBy(A, rec)) < 2 {
			time.Sleep(20 * time.Millisecond)
		}
		var victim *devnet.Node
		for p := range heldBy(A, rec) {
			victim = byID(n, p)
			break
		}
		b.StartTimer()
		start := time.Now()
		if err := victim.Stop(); err != nil {
			b.Fatal(err)
		}
		for {
			h := heldBy(A, rec)
			live := 0
			for p := range h {
				if p != victim.ID {
					live++
				}
			}
			if live >= 2 {
				break
			}
			if time.Since(start) > 2*time.Minute {
				b.Fatal("no repair in 2 minutes")
			}
			time.Sleep(20 * time.Millisecond)
		}
		b.ReportMetric(time.Since(start).Seconds(), "repair-s")
		b.StopTimer()
		if err := victim.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		victim.Daemon.P2P.Connect(ctx, A.Daemon.P2P.AddrInfo())
		cancel()
	}
}

// BenchmarkReprovide: DHT announcements per second on six loopback nodes,
// 2,000 CIDs per run in batches on the bounded provider pool.
func BenchmarkReprovide(b *testing.B) {
	n := benchNet(b, "A", "B", "C", "D", "E", "F")
	A := n.Nodes[0]
	const count = 2000
	cids := make([]cid.Cid, count)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for j := range cids {
			buf := make([]byte, 32)
			rand.Read(buf)
			h, _ := mh.Sum(buf, mh.SHA2_256, -1)
			cids[j] = cid.NewCidV1(cid.Raw, h)
		}
		b.StartTimer()
		res, err := A.Daemon.Replication().ProvideBatched(context.Background(), cids)
		if err != nil || res.Blocks != count {
			b.Fatalf("%+v %v", res, err)
		}
		b.ReportMetric(res.PerSecond(), "blocks/s")
	}
}
