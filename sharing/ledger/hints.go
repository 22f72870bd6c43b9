package ledger

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Follow hints: a global sync answer names the owner scopes that involve
// the asking peer (syncResp.Follow), its way back into a scope whose inbox
// delivery it missed. Working them out walks every record the peer holds
// or was granted, so they are kept per peer and worked out again only when
// an applied entry changes what the peer holds or was granted, a scope's
// state is loaded from a checkpoint, or hintTTL has passed (a grant that
// expired since still shows until then: the peer follows a scope it no
// longer needs and leaves it, unfollow.go). Without the cache each peer's
// sync every interval cost a read of each of those records: with 5,000
// records held by every node, 6-13% of a core for three idle daemons.

// maxFollowHints bounds the scopes one sync answer names.
const maxFollowHints = 64

// hintTTL is how long a peer's worked-out hints are reused.
const hintTTL = 10 * time.Minute

type followHints struct {
	mu sync.Mutex
	m  map[peer.ID]hintSet
	// gen counts forgets; forgot holds, per peer, the count at its last
	// one, and all the count at the last forget of every peer: hints
	// worked out from a state read before a forget of their peer are not
	// kept (the entry may have applied after the read).
	gen    uint64
	forgot map[peer.ID]uint64
	all    uint64
}

type hintSet struct {
	scopes []string
	at     time.Time
}

func (h *followHints) get(p peer.ID, now time.Time) ([]string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.m[p]
	if !ok || now.Sub(s.at) >= hintTTL || now.Before(s.at) {
		return nil, false
	}
	return s.scopes, true
}

// generation returns the count of forgets so far, to pass to put.
func (h *followHints) generation() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gen
}

// put keeps p's hints, worked out from a state read after generation
// returned gen, unless p's (or every peer's) were forgotten since.
func (h *followHints) put(p peer.ID, scopes []string, at time.Time, gen uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.all > gen || h.forgot[p] > gen {
		return
	}
	if h.m == nil {
		h.m = map[peer.ID]hintSet{}
	}
	h.m[p] = hintSet{scopes: scopes, at: at}
}

// forget drops the hints of the peers applied entries may have changed:
// the grantee of a grant or revoke, the author of a receipt, the holders
// an assign names. all drops every peer's (a state loaded from a
// checkpoint).
func (h *followHints) forget(es []*Entry, all bool) {
	var ps []peer.ID
	for _, e := range es {
		ps = append(ps, hintPeers(e)...)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if all {
		h.gen++
		h.m, h.forgot, h.all = nil, nil, h.gen
		return
	}
	if len(ps) == 0 {
		return
	}
	h.gen++
	if h.forgot == nil {
		h.forgot = map[peer.ID]uint64{}
	}
	for _, p := range ps {
		delete(h.m, p)
		h.forgot[p] = h.gen // one row per member named: bounded by the members
	}
}

// hintPeers are the peers whose held or granted records e may change.
func hintPeers(e *Entry) []peer.ID {
	var raw [][]byte
	switch e.Type {
	case TypeGrant:
		var w grantWire
		if canonicalUnmarshal(e.Payload, &w) == nil {
			raw = append(raw, w.Grantee)
		}
	case TypeRevoke:
		var w revokeWire
		if canonicalUnmarshal(e.Payload, &w) == nil {
			raw = append(raw, w.Grantee)
		}
	case TypeAssign:
		var w assignWire
		if canonicalUnmarshal(e.Payload, &w) == nil {
			raw = append(raw, w.Holders...)
		}
	case TypeReceipt:
		return []peer.ID{e.Author}
	}
	out := make([]peer.ID, 0, len(raw))
	for _, b := range raw {
		if p, err := peer.IDFromBytes(b); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// involves returns the owner scopes this node knows involve peer p: those
// of the records p has a live grant on, or holds, other than p's own
// (sorted, at most maxFollowHints). A revoked or expired grant is no
// reason: p left that scope (unfollow.go) and must not be sent back.
func (l *Ledger) involves(ctx context.Context, p peer.ID) []string {
	now := l.now()
	if s, ok := l.hints.get(p, now); ok {
		return s
	}
	gen := l.hints.generation()
	s, err := l.workOutInvolves(ctx, p, now)
	if err != nil {
		l.log.Warn("sync hint: read the records a peer is involved in", "peer", p.String(), "err", err)
		return s
	}
	l.hints.put(p, s, now, gen)
	return s
}

func (l *Ledger) workOutInvolves(ctx context.Context, p peer.ID, now time.Time) ([]string, error) {
	st := l.State()
	owners := map[peer.ID]bool{}
	var firstErr error
	for i, ids := range []func(context.Context, peer.ID) ([]cid.Cid, error){st.GrantedIDs, st.HeldIDs} {
		recs, err := ids(ctx, p)
		if err != nil {
			firstErr = err
			continue
		}
		for _, rec := range recs {
			if len(owners) >= maxFollowHints {
				break
			}
			info, ok, err := st.Record(ctx, rec)
			if err != nil {
				firstErr = err
				continue
			}
			if !ok || info.Owner == p || owners[info.Owner] {
				continue
			}
			if i == 0 {
				if live, err := liveGrantTo(ctx, st, rec, p, now); err != nil || !live {
					if err != nil {
						firstErr = err
					}
					continue
				}
			}
			owners[info.Owner] = true
		}
	}
	out := make([]string, 0, len(owners))
	for o := range owners {
		out = append(out, OwnerScope(o))
	}
	sort.Strings(out)
	return out, firstErr
}
