package ledger

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

// BenchmarkJoinMillion measures issue #16's "time for a new node to join
// with 1,000,000 entries of history behind it": a network's history is
// built once (real Ed25519 signatures; read claims, the type that
// dominates the volume, over setup, keys, records and grants) on a source
// node, which signs a checkpoint; then 1,000 more entries follow it. Two
// new nodes on badger (the node's store) then join:
//
//   - checkpoint: verify the chain, check and load the checkpoint's state
//     blocks, then decode (signatures checked in parallel, as sync does)
//     and apply the 1,000 entries after it;
//   - replay: decode and apply every entry, as a node does today.
//
// Both must reach the source's digest. The state blocks are handed over
// in memory: the network transfer of the state (its size is reported) is
// not part of the figure. MEDMESH_JOIN_ENTRIES sets the history's size
// (default 1,000,000); MEDMESH_JOIN_REPLAY=0 skips the full replay.
//
//	go test ./sharing/ledger -run XXX -bench BenchmarkJoinMillion -benchtime 1x -timeout 60m
func BenchmarkJoinMillion(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("MEDMESH_JOIN_ENTRIES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	const tail = 1000
	ctx := context.Background()
	w := newWorld(b, 8)
	src, err := Open(ctx, Options{Store: NewMemStore(), Key: w.admin.key, Genesis: w.genesis, Logger: quietLogger(), Types: testTypes()})
	if err != nil {
		b.Fatal(err)
	}
	history := w.setup(b, src)
	history = append(history, w.grantAll(b, src)...)

	// Read claims on a chain, applied in batches as sync applies them.
	t0 := time.Now()
	claims := func(count int) []*Entry {
		out := make([]*Entry, 0, count)
		batch := make([]*Entry, 0, 4000)
		prev := src.Heads()
		var clock HLC
		for _, h := range prev {
			if e, _ := src.Entry(ctx, h); e != nil && clock.Less(e.Clock) {
				clock = e.Clock
			}
		}
		flush := func() {
			res, err := src.ingest(ctx, batch)
			if err != nil {
				b.Fatal(err)
			}
			if len(res.Applied) != len(batch) {
				b.Fatalf("applied %d of %d: %v", len(res.Applied), len(batch), res.Rejected)
			}
			batch = batch[:0]
		}
		for i := 0; i < count; i++ {
			owner := i % len(w.members)
			reader := (owner + 1 + i/len(w.members)%(len(w.members)-1)) % len(w.members)
			clock = HLC{Wall: clock.Wall + 1}
			pl, err := encodePayload(src.core.types, TypeAccess, w.claim(b, owner, reader, testEpoch.Add(time.Duration(i)*time.Millisecond)))
			if err != nil {
				b.Fatal(err)
			}
			e, err := signEntry(w.members[reader].key, src.net, TypeAccess, pl, prev, clock)
			if err != nil {
				b.Fatal(err)
			}
			prev = []cid.Cid{e.cid}
			out = append(out, e)
			if batch = append(batch, e); len(batch) == cap(batch) {
				flush()
			}
		}
		flush()
		return out
	}
	history = append(history, claims(n-len(history)-1)...) // and the genesis
	built := time.Since(t0)
	t0 = time.Now()
	ck, _, err := src.MakeCheckpoint(ctx, ScopeGlobal, nil)
	if err != nil {
		b.Fatal(err)
	}
	made := time.Since(t0)
	after := claims(tail)
	chain, err := src.CheckpointChain(ctx, ScopeGlobal)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("load average %s", loadAvg())
	b.Logf("history: %d entries (%d behind the checkpoint, %d after) built and applied in %v; checkpoint made in %v: %d bytes of state in %d blocks",
		len(history)+len(after)+1, ck.Entries, len(after), built.Round(time.Millisecond), made.Round(time.Millisecond), ck.Size, len(ck.Blocks))
	raws := func(es []*Entry) [][]byte {
		out := make([][]byte, len(es))
		for i, e := range es {
			out[i] = e.raw
		}
		return out
	}
	apply := func(l *Ledger, rs [][]byte) {
		for len(rs) > 0 {
			k := min(len(rs), maxRespEntries) // one sync response
			es := decodeParallel(rs[:k], func(err error) { b.Fatal(err) })
			res, err := l.ingest(ctx, es)
			if err != nil {
				b.Fatal(err)
			}
			if len(res.Applied) != len(es) {
				b.Fatalf("applied %d of %d: %v", len(res.Applied), len(es), res.Rejected)
			}
			rs = rs[k:]
		}
	}
	want := src.Digest()
	tailRaws := raws(after)
	all := raws(append(history, after...))
	// Keep only bytes: a joiner's process holds no one else's heap, and the
	// source's would make every garbage collection below scan it.
	blocks := make(map[cid.Cid][]byte, len(ck.Blocks))
	for _, c := range ck.Blocks {
		if blocks[c], err = src.StateBlock(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	getBlock := func(_ context.Context, c cid.Cid) ([]byte, error) { return blocks[c], nil }
	entries, size, nblocks := ck.Entries, ck.Size, len(ck.Blocks)
	src.Close()
	src, history, after, ck = nil, nil, nil, nil
	runtime.GC()

	b.Run("checkpoint", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			j := openNode(b, newIdent(b), w.genesis)
			start, cpu0 := time.Now(), cpuTime()
			if err := j.JoinFromCheckpoint(ctx, chain, getBlock); err != nil {
				b.Fatal(err)
			}
			loaded := time.Since(start)
			apply(j, tailRaws)
			took, cpu := time.Since(start), cpuTime()-cpu0
			if !bytes.Equal(j.Digest(), want) {
				b.Fatal("joined from the checkpoint: digest differs from the source's")
			}
			b.ReportMetric(took.Seconds(), "join-s")
			b.ReportMetric(cpu.Seconds(), "join-cpu-s")
			b.ReportMetric(loaded.Seconds(), "load-s")
			b.ReportMetric(float64(entries), "entries")
			b.ReportMetric(float64(size)/(1<<20), "state-MiB")
			b.Logf("joined from the checkpoint (%d entries, %d bytes of state in %d blocks) in %v wall, %v CPU (state loaded in %v, then %d entries applied)",
				entries, size, nblocks, took.Round(time.Millisecond), cpu.Round(time.Millisecond), loaded.Round(time.Millisecond), len(tailRaws))
		}
	})
	if os.Getenv("MEDMESH_JOIN_REPLAY") == "0" {
		return
	}
	b.Run("replay", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			j := openNode(b, newIdent(b), w.genesis)
			start, cpu0 := time.Now(), cpuTime()
			apply(j, all)
			took, cpu := time.Since(start), cpuTime()-cpu0
			if !bytes.Equal(j.Digest(), want) {
				b.Fatal("full replay: digest differs from the source's")
			}
			b.ReportMetric(took.Seconds(), "join-s")
			b.ReportMetric(cpu.Seconds(), "join-cpu-s")
			b.Logf("replayed %d entries in %v wall, %v CPU", len(all), took.Round(time.Millisecond), cpu.Round(time.Millisecond))
		}
	})
}

// cpuTime is the process's CPU time so far (user and system): on a machine
// shared with other work, wall time says more about the load than the code.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return string(bytes.TrimSpace(b))
}
