package ledger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkScopeDraft measures drafting a checkpoint of an owner's scope of
// N record announcements (MEDMESH_DRAFT_ENTRIES, default 20,000; with
// MEDMESH_DRAFT_HEAPPROFILE=PREFIX, a heap profile of each draft) in a
// 10-member network: how long the draft takes, and the longest any other
// use of the ledger (a probe taking its lock every millisecond, as a sync
// or a query does) waits meanwhile (wait-max-ms). Drafts used to hold the
// ledger's lock for the whole replay; they now hold it for the walk of the
// roots' past only (checkpoint_scope.go). heap-MiB is the most the Go
// heap (live and not yet collected objects) grew during the draft, sampled
// with the probe, live-MiB the most its live part grew (as of the GCs
// during the draft): a draft's memory is most of a node's peak with
// automatic checkpoints. MEDMESH_DRAFT_CPUPROFILE=PREFIX writes a CPU
// profile of each draft.
func BenchmarkScopeDraft(b *testing.B) {
	n := 20_000
	if v := os.Getenv("MEDMESH_DRAFT_ENTRIES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	w := newWorld(b, 10, WithScopes())
	src, err := Open(ctx, Options{Store: NewMemStore(), Key: w.admin.key, Genesis: w.genesis, Logger: quietLogger(), Types: testTypes()})
	if err != nil {
		b.Fatal(err)
	}
	w.setup(b, src)
	owner := w.members[1]
	scope := OwnerScope(owner.id)
	announce := func(from, to int) {
		for i := from; i < to; i++ {
			as(b, src, owner, TypeRecordAnnounce, recordPayload(b, owner, fmt.Sprintf("d%d", i)))
		}
	}
	announce(0, n)
	b.Logf("load average %s; %d entries in %s", loadAvg(), n, scope)
	draft := func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			var worst, peak, live atomic.Int64
			runtime.GC()
			heap := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
			rtmetrics.Read(heap)
			base, baseLive := int64(heap[0].Value.Uint64()), int64(heap[1].Value.Uint64())
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // the probe
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
					}
					t0 := time.Now()
					src.Heads()
					if d := int64(time.Since(t0)); d > worst.Load() {
						worst.Store(d)
					}
					rtmetrics.Read(heap)
					if h := int64(heap[0].Value.Uint64()) - base; h > peak.Load() {
						peak.Store(h)
					}
					if h := int64(heap[1].Value.Uint64()) - baseLive; h > live.Load() {
						live.Store(h)
					}
				}
			}()
			var prof *os.File
			if f := os.Getenv("MEDMESH_DRAFT_CPUPROFILE"); f != "" {
				// The draft's CPU alone, not the history's building: a
				// profile per sub-benchmark.
				var err error
				if prof, err = os.Create(f + "." + strings.ReplaceAll(b.Name(), "/", "-")); err != nil {
					b.Fatal(err)
				}
				if err := pprof.StartCPUProfile(prof); err != nil {
					b.Fatal(err)
				}
			}
			t0 := time.Now()
			d, err := src.scopeCheckpointDraft(ctx, scope)
			took := time.Since(t0)
			if prof != nil {
				pprof.StopCPUProfile()
				if err := prof.Close(); err != nil {
					b.Fatal(err)
				}
			}
			close(stop)
			wg.Wait()
			if err != nil {
				b.Fatal(err)
			}
			ck := d.ck
			if f := os.Getenv("MEDMESH_DRAFT_HEAPPROFILE"); f != "" {
				// What the draft holds when it is done, before it is
				// closed: a heap profile per sub-benchmark.
				runtime.GC()
				p := f + "." + strings.ReplaceAll(b.Name(), "/", "-")
				fh, err := os.Create(p)
				if err != nil {
					b.Fatal(err)
				}
				err = pprof.WriteHeapProfile(fh)
				if err := errors.Join(err, fh.Close()); err != nil {
					b.Fatal(err)
				}
			}
			d.close()
			b.ReportMetric(took.Seconds(), "draft-s")
			b.ReportMetric(float64(worst.Load())/1e6, "wait-max-ms")
			b.ReportMetric(float64(ck.Entries), "entries")
			b.ReportMetric(float64(peak.Load())/(1<<20), "heap-MiB")
			b.ReportMetric(float64(live.Load())/(1<<20), "live-MiB")
		}
	}
	// memory: the replay's core on a MemStore (tests, the simulation);
	// scratch: on a badger database of its own, as a node's
	// (Options.ScratchDir).
	stores := func(b *testing.B) {
		b.Run("memory", func(b *testing.B) {
			src.o.ScratchDir = ""
			draft(b)
		})
		b.Run("scratch", func(b *testing.B) {
			src.o.ScratchDir = b.TempDir()
			draft(b)
		})
	}
	b.Run("full", stores)
	b.Run("from-checkpoint", func(b *testing.B) {
		// The group's checkpoint at N, then a tenth more entries: the
		// next draft replays those only.
		ck, blocks, err := src.heldDraft(ctx, scope)
		if err != nil {
			b.Fatal(err)
		}
		byID := map[string]*ident{}
		for _, m := range w.members {
			byID[m.id.String()] = m
		}
		for _, p := range ck.Signers[:Quorum(len(ck.Signers))] {
			if err := ck.Sign(byID[p.String()].key); err != nil {
				b.Fatal(err)
			}
		}
		if err := src.storeScopeCheckpoint(ctx, ck, blockMap(blocks)); err != nil {
			b.Fatal(err)
		}
		announce(n, n+n/10)
		stores(b)
	})
}
