package replication

import (
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Liveness tracks, from one node's point of view, when each peer was last
// seen connected and which holders are failing their proofs of storage.
// It is safe for concurrent use.
type Liveness struct {
	mu      sync.Mutex
	grace   time.Duration
	started time.Time
	seen    map[peer.ID]time.Time
	// failing[record][peer] is when the peer started failing challenges.
	failing map[cid.Cid]map[peer.ID]time.Time
	// verified[record][peer] is the last successful challenge.
	verified map[cid.Cid]map[peer.ID]time.Time
}

// NewLiveness starts a tracker: every peer counts as seen at now.
func NewLiveness(grace time.Duration, now time.Time) *Liveness {
	return &Liveness{grace: grace, started: now, seen: map[peer.ID]time.Time{},
		failing: map[cid.Cid]map[peer.ID]time.Time{}, verified: map[cid.Cid]map[peer.ID]time.Time{}}
}

// Seen records that p is connected at now. It reports whether p was
// considered down before (it came back).
func (l *Liveness) Seen(p peer.ID, now time.Time) (cameBack bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	last, ok := l.seen[p]
	if !ok {
		last = l.started
	}
	l.seen[p] = now
	return now.Sub(last) > l.grace
}

// Up reports whether p counts as alive at now: seen within the grace period.
func (l *Liveness) Up(p peer.ID, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	last, ok := l.seen[p]
	if !ok {
		last = l.started
	}
	return now.Sub(last) <= l.grace
}

// Alive reports whether p counts as alive for record rec: up, and not
// failing its proofs of storage for longer than the grace period.
func (l *Liveness) Alive(rec cid.Cid, p peer.ID, now time.Time) bool {
	if !l.Up(p, now) {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	since, failing := l.failing[rec][p]
	return !failing || now.Sub(since) <= l.grace
}

// Verified records a challenge outcome.
func (l *Liveness) Verified(rec cid.Cid, p peer.ID, ok bool, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ok {
		if l.verified[rec] == nil {
			l.verified[rec] = map[peer.ID]time.Time{}
		}
		l.verified[rec][p] = now
		delete(l.failing[rec], p)
		return
	}
	if l.failing[rec] == nil {
		l.failing[rec] = map[peer.ID]time.Time{}
	}
	if _, already := l.failing[rec][p]; !already {
		l.failing[rec][p] = now
	}
}

// LastVerified is the newest successful challenge of any of peers for rec.
func (l *Liveness) LastVerified(rec cid.Cid, peers []peer.ID) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var best time.Time
	for _, p := range peers {
		if t := l.verified[rec][p]; t.After(best) {
			best = t
		}
	}
	return best
}

// Forget drops the challenge state of a record.
func (l *Liveness) Forget(rec cid.Cid) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failing, rec)
	delete(l.verified, rec)
}
