package records

import (
	"context"
	"errors"
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
// claim's reads with the attested ones (access.Audit). A burst's claim is
// appended when the burst ends, a quiet read's once its manifest is
// fetched; if a revoke of its grant (or its expiry) arrived meanwhile, the
// ledger refuses it on the current heads, and it is appended at the
// position where the (first) read resolved its grant instead
// (ledger.AppendAt): the grant was live there, so the owner's audit shows
// those reads reported, not only attested.
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
	// pos is where the ledger stood when the batch's first read resolved
	// its grant (nil when the ledger has no AppendAt).
	pos *ledger.Position
}

func newClaimer(s *Service) *claimer {
	return &claimer{s: s, pending: map[claimKey]*claimBatch{}, recent: map[claimKey]time.Time{}, wake: make(chan struct{}, 1)}
}

// count adds one read of version info under grant g with the stated
// purpose, made at ledger position pos (taken when the read resolved its
// grant: nil without AppendAt).
func (c *claimer) count(info ledger.RecordInfo, g *ledger.Grant, purpose string, now time.Time, pos *ledger.Position) {
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
		c.append(context.Background(), k, &claimBatch{version: info.Version, reads: 1, first: now, last: now, pos: pos})
		return
	}
	b := c.pending[k]
	if b == nil {
		b = &claimBatch{version: info.Version, first: now, pos: pos}
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
	_, err := c.s.ledger.Append(ctx, ledger.TypeAccess, p)
	if errors.Is(err, ledger.ErrUnauthorized) && b.pos != nil {
		// The grant was revoked (or expired) since the burst began: claim
		// where it was live, as of the last read.
		pl, _ := c.s.ledger.(positioned)
		if _, err = pl.AppendAt(ctx, ledger.TypeAccess, p, *b.pos, b.last); err == nil {
			c.s.log.Info("audit: claimed reads made before their grant's revoke arrived, at the ledger position where they were made", "record", k.rec, "reads", b.reads)
		}
	}
	if err != nil {
		c.s.log.Error("audit: could not claim reads on the ledger", "record", k.rec, "reads", b.reads, "err", err)
	}
}

// positioned is the ledger's AppendAt (*ledger.Ledger has it).
type positioned interface {
	Position() ledger.Position
	AppendAt(ctx context.Context, typ string, payload any, pos ledger.Position, at time.Time) (*ledger.Entry, error)
}

// position is where the ledger stands now, if it can append there later.
func (s *Service) position() *ledger.Position {
	pl, ok := s.ledger.(positioned)
	if !ok {
		return nil
	}
	p := pl.Position()
	return &p
}
