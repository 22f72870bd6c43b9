package records

import (
	"context"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/sharing/ledger"
)

// claimer batches this node's read claims (access entries) as the attestor
// batches the serving nodes' attestations: one claim per (record version,
// grant, stated purpose) and interval, counting the reads it covers, so a
// grantee reading a record 300 times in a minute writes about sixty claims,
// not 300, and a lone read is claimed within attestLead. The owner's audit
// matches each claim's reads with the attested ones (access.Audit).
type claimer struct {
	s       *Service
	mu      sync.Mutex
	pending map[claimKey]*claimBatch
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
	return &claimer{s: s, pending: map[claimKey]*claimBatch{}, wake: make(chan struct{}, 1)}
}

// count adds one read of version info under grant g with the stated
// purpose.
func (c *claimer) count(info ledger.RecordInfo, g *ledger.Grant, purpose string, now time.Time) {
	k := claimKey{info.ID, g.Entry, purpose}
	c.mu.Lock()
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

// run flushes as the attestor does (attestLead after the first read that
// follows a quiet interval, else attestInterval after the previous flush),
// until ctx ends (then once more).
func (c *claimer) run(ctx context.Context) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			c.flush(context.Background())
			return
		case <-c.wake:
		}
		t := time.NewTimer(max(attestLead, attestInterval-time.Since(last)))
		select {
		case <-ctx.Done():
			t.Stop()
			c.flush(context.Background())
			return
		case <-t.C:
		}
		last = time.Now()
		c.flush(ctx)
	}
}

// flush appends one claim per pending batch.
func (c *claimer) flush(ctx context.Context) {
	c.mu.Lock()
	batches := c.pending
	c.pending = map[claimKey]*claimBatch{}
	c.mu.Unlock()
	for k, b := range batches {
		p := ledger.AccessPayload{Record: k.rec, Version: b.version, Purpose: k.purpose, Time: b.first, Grant: k.grant}
		if b.reads > 1 {
			p.Reads, p.Last = b.reads, b.last
		}
		if _, err := c.s.ledger.Append(ctx, ledger.TypeAccess, p); err != nil {
			c.s.log.Error("audit: could not claim reads on the ledger", "record", k.rec, "reads", b.reads, "err", err)
		}
	}
}
