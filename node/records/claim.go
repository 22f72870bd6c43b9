package records

import (
	"context"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/sharing/ledger"
)

// claimer batches this node's read claims (access entries): a read after a
// quiet interval is claimed at once, as it is made (so a revoke that
// follows it cannot make its claim come too late), later reads of the same
// (record version, grant, stated purpose) at most once per attestInterval,
// one claim counting them, so a grantee reading a record 300 times in a
// minute writes about sixty claims, not 300. The owner's audit matches each
// claim's reads with the attested ones (access.Audit). What it costs: the
// reads of a burst still pending when a revoke of their grant arrives are
// refused by the ledger (the grant is no longer live at the claim), and the
// owner's audit shows them attested but not reported.
type claimer struct {
	s       *Service
	mu      sync.Mutex
	pending map[claimKey]*claimBatch
	recent  map[claimKey]time.Time // when a key was last claimed
	wake    chan struct{}
}

type claimKey struct {
	rec     cid.Cid // the version read
	grant   cid.Cid
	purpose string
}

type claimBatch struct {
	version     uint64
	reads       uint64
	first, last time.Time
}

func newClaimer(s *Service) *claimer {
	return &claimer{s: s, pending: map[claimKey]*claimBatch{}, recent: map[claimKey]time.Time{}, wake: make(chan struct{}, 1)}
}

// count adds one read of version info under grant g with the stated
// purpose.
func (c *claimer) count(info ledger.RecordInfo, g *ledger.Grant, purpose string, now time.Time) {
	k := claimKey{info.ID, g.Entry, purpose}
	c.mu.Lock()
	if len(c.recent) > 256 { // keys read once, long ago (a flush prunes too)
		for rk, t := range c.recent {
			if time.Since(t) > 2*attestInterval && c.pending[rk] == nil {
				delete(c.recent, rk)
			}
		}
	}
	if last, ok := c.recent[k]; (!ok || time.Since(last) >= attestInterval) && c.pending[k] == nil {
		// Quiet: claim this read now, in the reader's call.
		c.recent[k] = time.Now()
		c.mu.Unlock()
		c.append(context.Background(), k, &claimBatch{version: info.Version, reads: 1, first: now, last: now})
		return
	}
	b := c.pending[k]
	if b == nil {
		b = &claimBatch{version: info.Version, first: now}
		c.pending[k] = b
	}
	b.reads++
	b.last = now
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// run flushes the pending reads attestInterval after the last claim, until
// ctx ends (then once more).
func (c *claimer) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			c.flush(context.Background())
			return
		case <-c.wake:
		}
		t := time.NewTimer(attestInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			c.flush(context.Background())
			return
		case <-t.C:
		}
		c.flush(ctx)
	}
}

// flush appends one claim per pending batch.
func (c *claimer) flush(ctx context.Context) {
	c.mu.Lock()
	batches := c.pending
	c.pending = map[claimKey]*claimBatch{}
	now := time.Now()
	for k := range batches {
		c.recent[k] = now
	}
	for k, t := range c.recent { // forget the quiet ones
		if now.Sub(t) > 2*attestInterval {
			delete(c.recent, k)
		}
	}
	c.mu.Unlock()
	for k, b := range batches {
		c.append(ctx, k, b)
	}
}

func (c *claimer) append(ctx context.Context, k claimKey, b *claimBatch) {
	p := ledger.AccessPayload{Record: k.rec, Version: b.version, Purpose: k.purpose, Time: b.first, Grant: k.grant}
	if b.reads > 1 {
		p.Reads, p.Last = b.reads, b.last
	}
	if _, err := c.s.ledger.Append(ctx, ledger.TypeAccess, p); err != nil {
		c.s.log.Error("audit: could not claim reads on the ledger", "record", k.rec, "reads", b.reads, "err", err)
	}
}
