package ledger

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkScopeDraft measures drafting a checkpoint of an owner's scope of
// N record announcements (MEDMESH_DRAFT_ENTRIES, default 20,000) in a
// 10-member network: how long the draft takes, and the longest any other
// use of the ledger (a probe taking its lock every millisecond, as a sync
// or a query does) waits meanwhile (wait-max-ms). Drafts used to hold the
// ledger's lock for the whole replay; they now hold it for the walk of the
// roots' past only (checkpoint_scope.go).
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
			var worst atomic.Int64
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
				}
			}()
			t0 := time.Now()
			ck, _, err := src.scopeCheckpointDraft(ctx, scope)
			took := time.Since(t0)
			close(stop)
			wg.Wait()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(took.Seconds(), "draft-s")
			b.ReportMetric(float64(worst.Load())/1e6, "wait-max-ms")
			b.ReportMetric(float64(ck.Entries), "entries")
		}
	}
	b.Run("full", draft)
	b.Run("from-checkpoint", func(b *testing.B) {
		// The group's checkpoint at N, then a tenth more entries: the
		// next draft replays those only.
		ck, blocks, err := src.scopeCheckpointDraft(ctx, scope)
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
		if err := src.storeScopeCheckpoint(ctx, ck, blocks); err != nil {
			b.Fatal(err)
		}
		announce(n, n+n/10)
		draft(b)
	})
}
