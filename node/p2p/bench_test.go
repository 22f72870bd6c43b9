package p2p

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// BenchmarkFetchTwoNodes fetches 1 MiB raw blocks (256 MiB, 64 MiB under
// -short) from one node into another's badger store over loopback. Each
// iteration fetches into a fresh node and store, so nothing is local.
func BenchmarkFetchTwoNodes(b *testing.B) {
	const blockSize = 1 << 20
	nBlocks := 256
	if testing.Short() {
		nBlocks = 64
	}
	psk := newPSK(b)
	ih := newIdentity(b)
	members := newMemberSet(ih.id)
	holder := startNode(b, ih, psk, members, nil)
	cids := make([]cid.Cid, nBlocks)
	batch := make([]blocks.Block, 0, 16)
	for i := range cids {
		blk := randomBlock(b, blockSize)
		cids[i] = blk.Cid()
		batch = append(batch, blk)
		if len(batch) == cap(batch) {
			putBlocks(b, holder.Blockstore(), batch...)
			batch = batch[:0]
		}
	}
	putBlocks(b, holder.Blockstore(), batch...)

	b.SetBytes(int64(nBlocks * blockSize))
	var cpu time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		ifetch := newIdentity(b)
		members.mu.Lock()
		members.m[ifetch.id] = true
		members.mu.Unlock()
		fetcher := startNode(b, ifetch, psk, members, func(c *Config) {
			c.Bootstrap = []peer.AddrInfo{holder.AddrInfo()}
		})
		waitFor(b, 10*time.Second, "connected", func() bool { return connected(fetcher.Node, ih.id) })
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		got := 0
		b.StartTimer()
		cpu0 := processCPU(b)
		stopProfile := startFetchProfile(b)
		err := fetcher.GetMany(ctx, cids, func(blk blocks.Block) error {
			got += len(blk.RawData())
			return nil
		})
		b.StopTimer()
		stopProfile()
		cpu += processCPU(b) - cpu0
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		if got != nBlocks*blockSize {
			b.Fatalf("got %d bytes", got)
		}
		b.StartTimer()
	}
	// CPU seconds (both nodes, user+system) per GiB moved: unlike MB/s it
	// barely depends on what else runs on the machine.
	b.ReportMetric(cpu.Seconds()/float64(b.N)/(float64(nBlocks*blockSize)/(1<<30)), "cpu-s/GiB")
}

// processCPU is the process's user+system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFetchTuning sweeps transfer settings; it runs only with
// P2P_BENCH_SWEEP=1 (it takes minutes).
func BenchmarkFetchTuning(b *testing.B) {
	if os.Getenv("P2P_BENCH_SWEEP") == "" {
		b.Skip("set P2P_BENCH_SWEEP=1")
	}
	defer func(o, e, w int, y uint32) {
		bsMaxOutstandingBytesPerPeer, bsEngineTaskWorkers, bsTaskWorkers, yamuxMaxStreamWindow = o, e, w, y
	}(bsMaxOutstandingBytesPerPeer, bsEngineTaskWorkers, bsTaskWorkers, yamuxMaxStreamWindow)
	for _, o := range []int{1 << 20, 4 << 20, 16 << 20, 32 << 20, 64 << 20} {
		b.Run(fmt.Sprintf("outstanding=%dMiB", o>>20), func(b *testing.B) {
			bsMaxOutstandingBytesPerPeer = o
			BenchmarkFetchTwoNodes(b)
		})
	}
	bsMaxOutstandingBytesPerPeer = 32 << 20
	for _, w := range []int{2, 4, 8, 16} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			bsEngineTaskWorkers, bsTaskWorkers = w, w
			BenchmarkFetchTwoNodes(b)
		})
	}
	bsEngineTaskWorkers, bsTaskWorkers = 8, 8
	for _, y := range []uint32{4 << 20, 16 << 20, 32 << 20} {
		b.Run(fmt.Sprintf("yamux=%dMiB", y>>20), func(b *testing.B) {
			yamuxMaxStreamWindow = y
			BenchmarkFetchTwoNodes(b)
		})
	}
}

// startFetchProfile writes a CPU profile of the timed fetch alone to
// $P2P_BENCH_CPUPROFILE, when set (go test's -cpuprofile also covers the
// setup, which writes as many bytes as the fetch moves).
func startFetchProfile(b *testing.B) (stop func()) {
	path := os.Getenv("P2P_BENCH_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}

// BenchmarkProvide announces 256 CIDs per op in a three-node network.
func BenchmarkProvide(b *testing.B) {
	psk := newPSK(b)
	ids := []identity{newIdentity(b), newIdentity(b), newIdentity(b)}
	members := newMemberSet(ids[0].id, ids[1].id, ids[2].id)
	hub := startNode(b, ids[0], psk, members, nil)
	boot := func(c *Config) { c.Bootstrap = []peer.AddrInfo{hub.AddrInfo()} }
	p := startNode(b, ids[1], psk, members, boot)
	startNode(b, ids[2], psk, members, boot)
	waitFor(b, 10*time.Second, "routing table", func() bool { return p.DHT.RoutingTable().Size() == 2 })
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		cids := make([]cid.Cid, 256)
		for i := range cids {
			cids[i] = randomBlock(b, 64).Cid()
		}
		b.StartTimer()
		if err := p.Provide(ctx, cids); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*256), "µs/cid")
}
