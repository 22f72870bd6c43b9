package devnet

// Benchmarks of whole daemons (badger repos, libp2p on 127.0.0.1, the ledger,
// the access filter) through the Daemon API that the HTTP handlers call.
//
//	go test -run '^$' -bench . -benchtime 1x ./node/devnet/
//	MEDMESH_BENCH_MB=1024 go test -run '^$' -bench 'Add|TwoNodes' -benchtime 1x ./node/devnet/
//
// MEDMESH_BENCH_MB sets the record size of Add, GetLocal and GetTwoNodes
// (default 64), MEDMESH_BENCH_PEAK_MB the size of AddPeakMem (default 256),
// MEDMESH_BENCH_FETCH_KB the record size of Fetch100 (default 4096).
// Figures measured on the project's machine are in docs/BENCHMARKS.md;
// scripts/bench.sh runs the same flows with the CLI beside Kubo.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"github.com/medmesh/medmesh/node/records"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/daemon"
)

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

// benchBytes is the record size of the throughput benchmarks.
func benchBytes(b *testing.B) int64 { return int64(envInt(b, "MEDMESH_BENCH_MB", 64)) << 20 }

// genReader yields n incompressible bytes that differ with seed: a window
// cycling over 16 MiB (plus an odd tail) of ChaCha8 output, starting at an
// offset taken from seed. Drawing every byte from ChaCha8 (about 600 MB/s
// here) was what BenchmarkAdd measured: the add reads on one goroutine.
func genReader(seed uint64, n int64) io.Reader {
	genOnce.Do(func() {
		genSrc = make([]byte, 16<<20+4099)
		rand.NewChaCha8([32]byte{'m', 'e', 'd'}).Read(genSrc)
	})
	return io.LimitReader(&cycleReader{off: int(seed % uint64(len(genSrc)))}, n)
}

var (
	genOnce sync.Once
	genSrc  []byte
)

type cycleReader struct{ off int }

func (r *cycleReader) Read(p []byte) (int, error) {
	n := copy(p, genSrc[r.off:])
	r.off = (r.off + n) % len(genSrc)
	return n, nil
}

var seedCtr atomic.Uint64

// addGenerated adds a fresh generated record of n bytes on d.
func addGenerated(b *testing.B, ctx context.Context, d *daemon.Daemon, n int64) *records.AddResult {
	seed := seedCtr.Add(1) + uint64(time.Now().UnixNano())
	res, err := d.Records.Add(ctx, records.AddRequest{
		Name:      fmt.Sprintf("bench-%d.bin", seed),
		MediaType: "application/octet-stream",
		Replicas:  1, // the owner only: no background copy to the other node
		Files: []records.FileSource{{Path: "bench.bin", Open: func() (io.Reader, error) {
			return genReader(seed, n), nil
		}}},
	})
	if err != nil {
		b.Fatalf("add %d bytes: %v", n, err)
	}
	if res.Size != n {
		b.Fatalf("added %d bytes, want %d", res.Size, n)
	}
	return res
}

func startNet(b *testing.B, names ...string) *Net {
	b.Helper()
	ctx := context.Background()
	// Replication off: with it, a second node is placed as a replica holder
	// and copies each new record in the background, which would compete
	// with the measured get and leave the blocks local to the grantee.
	o := Options{Timeout: 60 * time.Second}
	o.Daemon.Replication.Disabled = true
	n, err := Start(ctx, b.TempDir(), names, o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	return n
}

// grant shares rec from owner to grantee and waits until the grantee's
// ledger has the grant.
func grant(b *testing.B, n *Net, owner, grantee *Node, rec cid.Cid) {
	b.Helper()
	ctx := context.Background()
	if _, err := owner.Daemon.Records.Grant(ctx, rec, api.GrantRequest{To: grantee.ID.String()}); err != nil {
		b.Fatalf("grant: %v", err)
	}
	if err := n.WaitLedgerSync(ctx, 30*time.Second); err != nil {
		b.Fatal(err)
	}
}

// countWriter counts bytes and discards them.
type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

func getAll(b *testing.B, d *daemon.Daemon, id cid.Cid, want int64) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var w countWriter
	if err := d.Records.Get(ctx, id, records.GetRequest{File: -1}, &w); err != nil {
		b.Fatalf("get %s: %v", id, err)
	}
	if w.n != want {
		b.Fatalf("got %d bytes, want %d", w.n, want)
	}
}

// stallCount reads the fetcher's stall counter from a node's /metrics.
func stallCount(b *testing.B, nd *Node) float64 {
	b.Helper()
	var buf bytes.Buffer
	if err := nd.API.DownloadRaw(context.Background(), "/metrics", &buf); err != nil {
		b.Logf("metrics: %v", err)
		return 0
	}
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "medmesh_fetch_stalls_total "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// BenchmarkAdd encrypts and stores a generated stream on one node: chunking,
// AES-256-GCM, badger writes, the final sync, the ledger announcement and the
// synchronous DHT provide of manifest and block list.
func BenchmarkAdd(b *testing.B) {
	n := startNet(b, "a")
	size := benchBytes(b)
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		addGenerated(b, context.Background(), n.Nodes[0].Daemon, size)
	}
}

// BenchmarkGetLocal reads and decrypts a record its owner holds.
func BenchmarkGetLocal(b *testing.B) {
	n := startNet(b, "a")
	size := benchBytes(b)
	res := addGenerated(b, context.Background(), n.Nodes[0].Daemon, size)
	b.SetBytes(size)
	var cpu time.Duration
	b.ResetTimer()
	for range b.N {
		c0 := cpuSeconds(b)
		getAll(b, n.Nodes[0].Daemon, res.ID, size)
		cpu += cpuSeconds(b) - c0
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N)/(float64(size)/(1<<30)), "cpu-s/GiB")
}

// cpuSeconds is the process's user+system CPU time so far: per GiB moved
// it barely depends on what else runs on the machine, unlike MB/s.
func cpuSeconds(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkGetTwoNodes has a grantee fetch a record from its owner over
// loopback and decrypt it. Every iteration reads a fresh record (added and
// granted outside the timer), so nothing is in the grantee's blockstore.
func BenchmarkGetTwoNodes(b *testing.B) {
	n := startNet(b, "owner", "grantee")
	owner, grantee := n.Nodes[0], n.Nodes[1]
	size := benchBytes(b)
	stalls0 := stallCount(b, grantee)
	b.SetBytes(size)
	var cpu time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		res := addGenerated(b, context.Background(), owner.Daemon, size)
		grant(b, n, owner, grantee, res.ID)
		if has, _ := grantee.Daemon.Store.Blocks.Has(context.Background(), res.Manifest.Files[0].Chunks[0].CID); has {
			b.Fatal("grantee already holds the record's blocks")
		}
		b.StartTimer()
		c0 := cpuSeconds(b)
		getAll(b, grantee.Daemon, res.ID, size)
		cpu += cpuSeconds(b) - c0
	}
	b.StopTimer()
	b.ReportMetric(stallCount(b, grantee)-stalls0, "fetcher-stalls")
	b.ReportMetric(cpu.Seconds()/float64(b.N)/(float64(size)/(1<<30)), "cpu-s/GiB")
}

// BenchmarkFetch100 measures the latency of 100 consecutive fetches of a
// small record (4 MiB) by a grantee: manifest lookup, fetch, decrypt. Before
// each fetch the grantee's copy of the record's blocks is deleted, so every
// fetch crosses the network. A stall is a fetch slower than 10x the median
// (also reported: the fetcher's own stall counter, StallTimeout without a
// block).
func BenchmarkFetch100(b *testing.B) {
	const fetches = 100
	n := startNet(b, "owner", "grantee")
	owner, grantee := n.Nodes[0], n.Nodes[1]
	size := int64(envInt(b, "MEDMESH_BENCH_FETCH_KB", 4096)) << 10
	res := addGenerated(b, context.Background(), owner.Daemon, size)
	grant(b, n, owner, grantee, res.ID)
	blks := res.Manifest.Blocks(res.ID)
	drop := func() {
		for _, c := range blks {
			if err := grantee.Daemon.Store.Blocks.DeleteBlock(context.Background(), c); err != nil {
				b.Fatal(err)
			}
		}
	}
	stalls0 := stallCount(b, grantee)
	lat := make([]time.Duration, 0, fetches*b.N)
	b.SetBytes(size * fetches)
	b.ResetTimer()
	for range b.N {
		for range fetches {
			b.StopTimer()
			drop()
			b.StartTimer()
			t := time.Now()
			getAll(b, grantee.Daemon, res.ID, size)
			lat = append(lat, time.Since(t))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	p50 := q(0.50)
	slow := 0
	for _, d := range lat {
		if d > 10*p50 {
			slow++
		}
	}
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(q(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(slow), "stalls")
	b.ReportMetric(stallCount(b, grantee)-stalls0, "fetcher-stalls")
}

// BenchmarkAddPeakMem adds MEDMESH_BENCH_PEAK_MB (default 256; 1024 for the
// target) and samples the Go runtime every 10ms: peak HeapInuse and peak Sys
// (all memory the runtime holds from the OS) during the add. The target is
// < 256 MiB for 1 GiB; scripts/bench.sh measures the RSS of a real daemon
// process (VmHWM) too.
func BenchmarkAddPeakMem(b *testing.B) {
	n := startNet(b, "a")
	size := int64(envInt(b, "MEDMESH_BENCH_PEAK_MB", 256)) << 20
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var mu sync.Mutex
	var peakHeap, peakSys, peakAnon, peakFile uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			mu.Lock()
			peakHeap = max(peakHeap, ms.HeapInuse)
			peakSys = max(peakSys, ms.Sys)
			anon, file := procRss()
			peakAnon = max(peakAnon, anon)
			peakFile = max(peakFile, file)
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		addGenerated(b, context.Background(), n.Nodes[0].Daemon, size)
	}
	b.StopTimer()
	close(stop)
	<-done
	b.ReportMetric(float64(base.HeapInuse)/(1<<20), "base-heap-MiB")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(peakSys)/(1<<20), "peak-sys-MiB")
	if peakAnon+peakFile > 0 {
		b.ReportMetric(float64(peakAnon)/(1<<20), "peak-rss-anon-MiB")
		b.ReportMetric(float64(peakFile)/(1<<20), "peak-rss-file-MiB")
	}
}

// procRss reads this process's resident anonymous and file-backed memory
// from /proc/self/status, in bytes (0, 0 where there is no /proc). The test
// binary's own file pages count too, so the file figure is an upper bound
// on what the daemon's value log keeps resident.
func procRss() (anon, file uint64) {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for line := range strings.Lines(string(raw)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "RssAnon":
			anon = kb << 10
		case "RssFile":
			file = kb << 10
		}
	}
	return anon, file
}

// BenchmarkGetTwoNodesBlocks isolates the transfer from decryption and the
// API: the grantee fetches a fresh record's chunk blocks through its p2p
// node, either with one GetMany (one bitswap session for all chunks:
// "session"), with GetBlocks (the same session, its blocks yielded in order
// at most 32 ahead, as a read takes them: "ordered"), or one Get (one
// session) per chunk with 32 in flight ("per-chunk"). The gaps are what
// ordering costs and what session-per-block would.
func BenchmarkGetTwoNodesBlocks(b *testing.B) {
	n := startNet(b, "owner", "grantee")
	owner, grantee := n.Nodes[0], n.Nodes[1]
	size := benchBytes(b)
	for _, mode := range []string{"session", "ordered", "per-chunk"} {
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(size)
			for range b.N {
				b.StopTimer()
				res := addGenerated(b, context.Background(), owner.Daemon, size)
				grant(b, n, owner, grantee, res.ID)
				var cids []cid.Cid
				for _, c := range res.Manifest.Files[0].Chunks {
					cids = append(cids, c.CID)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				b.StartTimer()
				var got atomic.Int64
				switch mode {
				case "session":
					err := grantee.Daemon.P2P.GetMany(ctx, cids, func(blk blocks.Block) error {
						got.Add(int64(len(blk.RawData())))
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				case "ordered":
					for r := range grantee.Daemon.P2P.GetBlocks(ctx, cids, 32) {
						if r.Err != nil {
							b.Fatal(r.Err)
						}
						got.Add(int64(len(r.Block.RawData())))
					}
				case "per-chunk":
					sem := make(chan struct{}, 32)
					var wg sync.WaitGroup
					var ferr atomic.Value
					for _, c := range cids {
						sem <- struct{}{}
						wg.Add(1)
						go func() {
							defer func() { <-sem; wg.Done() }()
							blk, err := grantee.Daemon.P2P.Get(ctx, c)
							if err != nil {
								ferr.Store(err)
								return
							}
							got.Add(int64(len(blk.RawData())))
						}()
					}
					wg.Wait()
					if err, _ := ferr.Load().(error); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				cancel()
				if got.Load() < size {
					b.Fatalf("got %d bytes", got.Load())
				}
			}
		})
	}
}
