package ledger

import (
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/expiring"
)

// A peer far behind catches up in rounds: each answer holds at most
// maxRespEntries of what it lacks, oldest first, and the peer asks again.
// Working out what it lacks is a walk of the whole difference (the
// newest entries first, so it cannot stop at the oldest it sends), under
// the ledger's lock: without a cursor a peer 100,000 entries behind cost
// the server 25 walks of up to 100,000 entries. The server keeps the rest
// of the walk for the peer's next request instead, as a cursor, so a
// catch-up walks the difference once.
//
// The protocol does not change (a strict CBOR decoder on an older node
// would refuse a new field): the peer's next offer says whether the cursor
// still holds. A peer that applied an answer has its last entry as a head
// (nothing it has names it as a parent of the same scope: it lacked the
// entry until then), and its offer names its heads first. If the last
// entry is not among the offered heads (a gossiped child of it arrived
// meanwhile, or the peer did not apply the answer), the server walks the
// difference afresh. Entries the peer got otherwise meanwhile are sent
// again and dropped by it as known; entries the server applied since the
// walk are not in the rest: once it is sent, the answer's heads show the
// peer it still lacks some, and the next round walks anew.

const (
	// maxSyncCursors bounds the cursors kept (each holds the CIDs of one
	// peer's remaining catch-up: up to a few MB for a scope's history).
	maxSyncCursors = 16
	// syncCursorTTL is how long a cursor waits for the peer's next round.
	syncCursorTTL = time.Minute
)

type syncCursor struct {
	last cid.Cid   // the last entry of the answer the cursor follows
	rest []cid.Cid // what the peer lacked then and was not sent, oldest first
}

// syncCursors are the cursors of peers catching up from this node, by
// peer and wire scope.
type syncCursors struct {
	mu    sync.Mutex
	by    *expiring.Map[syncKey, syncCursor]
	walks uint64 // differences walked for answers (tests)
}

func (s *syncCursors) init() {
	if s.by == nil {
		s.by = expiring.New[syncKey, syncCursor](syncCursorTTL, maxSyncCursors)
	}
}

// take returns (and forgets) the rest of peer p's catch-up of scope if
// its offer shows it applied the answer the cursor follows.
func (s *syncCursors) take(p peer.ID, scope string, offer SyncOffer, now time.Time) ([]cid.Cid, bool) {
	if p == "" {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	c, ok := s.by.Take(syncKey{p, scope}, now)
	if !ok || !slices.Contains(offer.Heads, c.last) {
		return nil, false
	}
	return c.rest, true
}

// keep records the rest of peer p's catch-up of scope after an answer
// whose last entry is last.
func (s *syncCursors) keep(p peer.ID, scope string, last cid.Cid, rest []cid.Cid, now time.Time) {
	if p == "" || len(rest) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	s.by.Put(syncKey{p, scope}, syncCursor{last: last, rest: slices.Clip(rest)}, now)
}

// walked counts a difference walked for an answer.
func (s *syncCursors) walked() {
	s.mu.Lock()
	s.walks++
	s.mu.Unlock()
}
