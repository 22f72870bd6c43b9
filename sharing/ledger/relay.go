package ledger

import (
	"context"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
)

// Forwarding entries that arrived before their parents. GossipSub forwards
// a message only once this node's validator accepts it, and an entry whose
// parents this node lacks is "pending" while a sync fetches them. Ignored
// at once, it was not forwarded: every peer that would have heard it
// through this node waited for another mesh path or its own next sync (a
// second at a daemon's default interval, ten in the simulation). Entries
// published in quick succession (a member's admission, its key, its
// organisation) overtake each other this way. So the validator waits, up
// to pendingWait, for the sync it started to apply the entry, and then
// accepts it: GossipSub forwards the original message, as if it had
// arrived in order. (Publishing it again once applied, the first version,
// sends a new message from each node that had it pending, which GossipSub
// cannot de-duplicate against the original: accepting the original keeps
// one message per entry.) At most maxPendingWaits validations wait at once;
// beyond that a pending entry is ignored, as before.
const (
	pendingWait     = 3 * time.Second
	maxPendingWaits = 256
)

type pendingWaits struct {
	mu sync.Mutex
	m  map[cid.Cid]*pendingWaiter
	n  int // waiting validations
}

type pendingWaiter struct {
	ch      chan struct{} // closed when the entry applies
	waiters int
}

// wait registers a validation waiting for c to apply; ok is false when
// too many already wait. done must be called when the wait ends.
func (p *pendingWaits) wait(c cid.Cid) (applied <-chan struct{}, done func(), ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n >= maxPendingWaits {
		return nil, nil, false
	}
	if p.m == nil {
		p.m = map[cid.Cid]*pendingWaiter{}
	}
	w := p.m[c]
	if w == nil {
		w = &pendingWaiter{ch: make(chan struct{})}
		p.m[c] = w
	}
	w.waiters++
	p.n++
	return w.ch, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.n--
		w.waiters--
		if w.waiters == 0 && p.m[c] == w {
			delete(p.m, c)
		}
	}, true
}

// applied wakes the validations waiting for entries of es.
func (p *pendingWaits) applied(es []*Entry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.m) == 0 {
		return
	}
	for _, e := range es {
		if w, ok := p.m[e.cid]; ok {
			close(w.ch)
			delete(p.m, e.cid)
		}
	}
}

// awaitPending waits, up to pendingWait, for the pending entry c to apply
// (the caller started the sync that fetches its parents). It reports
// whether it did.
func (l *Ledger) awaitPending(ctx context.Context, c cid.Cid) bool {
	ch, done, ok := l.pending.wait(c)
	if !ok {
		return false
	}
	defer done()
	applied := l.known(c) // applied between the ingest and the registration
	if !applied {
		t := time.NewTimer(pendingWait)
		defer t.Stop()
		select {
		case <-ch:
			applied = true
		case <-t.C:
		case <-ctx.Done():
		case <-l.closed:
		}
	}
	if applied {
		l.met.forwardedLate.Inc()
	}
	return applied
}
