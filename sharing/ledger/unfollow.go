package ledger

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Leaving scopes (issue #16). A node follows another owner's scope for
// good once an entry in its inbox, an announce or a sync hint says it is
// involved (pFollow). It stops when it no longer is: no grant to it on one
// of the owner's records is live (every one revoked or expired), it holds
// none of them, and none is escrowed to it (an emergency authority must
// keep hearing of the records it may open). It stops following only a
// scope it has followed for at least unfollowGrace and has caught up, so a
// grant on its way (its parents still syncing) is not lost. The scopes of
// the owners whose replica group it is in stay followed whatever pFollow
// says (involvedScopes), and so do owner scopes whose audit scope it
// follows the same way. What it stored of a scope it leaves stays; its
// cost stops growing. A new grant, assign or escrow brings it back (its
// inbox), and a peer's sync hint names only scopes with a live grant or a
// held record (involves).
const (
	// unfollowEvery is how often a node looks for scopes to leave.
	unfollowEvery = 10 * time.Minute
	// unfollowGrace is how long a scope is followed before it may be left.
	unfollowGrace = time.Hour
)

// followedSince decodes a pFollow value: when the node started following
// (zero for rows written before the time was kept).
func followedSince(v []byte) time.Time {
	if len(v) != 8 {
		return time.Time{}
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(v)))
}

func followedAt(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixMilli()))
}

// stillInvolved reports whether this node has a part in owner's scope at
// now: a live grant on one of owner's records, one it holds, or an escrow
// of one to it. Its cost is the records this node was granted or holds,
// and owner's records only when neither answers (about to leave).
func (l *Ledger) stillInvolved(ctx context.Context, owner peer.ID, now time.Time) (bool, error) {
	why, err := l.involvement(ctx, owner, now)
	return why != "", err
}

// involvement is stillInvolved's answer with its reason: WhyGrantee,
// WhyHolder or WhyEscrow, or "" when this node has no part in owner's
// scope any more.
func (l *Ledger) involvement(ctx context.Context, owner peer.ID, now time.Time) (string, error) {
	st := l.State()
	granted, err := st.GrantedIDs(ctx, l.self)
	if err != nil {
		return "", err
	}
	for _, id := range granted {
		info, ok, err := st.Record(ctx, id)
		if err != nil {
			return "", err
		}
		if !ok || info.Owner != owner {
			continue
		}
		if live, err := liveGrantTo(ctx, st, id, l.self, now); err != nil {
			return "", err
		} else if live {
			return WhyGrantee, nil
		}
	}
	held, err := st.HeldIDs(ctx, l.self)
	if err != nil {
		return "", err
	}
	for _, id := range held {
		if info, ok, err := st.Record(ctx, id); err != nil {
			return "", err
		} else if ok && info.Owner == owner {
			return WhyHolder, nil
		}
	}
	owned, err := st.OwnedIDs(ctx, owner)
	if err != nil {
		return "", err
	}
	for _, id := range owned {
		info, ok, err := st.Record(ctx, id)
		if err != nil {
			return "", err
		}
		if _, esc := info.EscrowFor(l.self); ok && esc {
			return WhyEscrow, nil
		}
	}
	return "", nil
}

// leaveScopes stops following the owner scopes this node followed because
// it was told it was involved (pFollow) and no longer is (see the top of
// the file), and returns them.
func (l *Ledger) leaveScopes(ctx context.Context) ([]string, error) {
	if !l.core.scoped {
		return nil, nil
	}
	now := l.now()
	since := map[string]time.Time{}
	err := l.store.Scan(ctx, pFollow, false, func(k string, v []byte) bool {
		since[k[len(pFollow):]] = followedSince(v)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: read followed scopes: %w", err)
	}
	behind := map[string]bool{}
	for _, s := range l.Behind() {
		behind[s] = true
	}
	var left []string
	for s, at := range since {
		kind, owner, err := ParseScope(s)
		if err != nil || kind != KindOwner || owner == l.self || behind[s] || now.Sub(at) < unfollowGrace {
			continue
		}
		if _, audit := since[AuditScope(owner)]; audit {
			continue
		}
		in, err := l.stillInvolved(ctx, owner, now)
		if err != nil {
			return left, err
		}
		if in {
			continue
		}
		// Followed again meanwhile (a new grant in its inbox rewrote the
		// row): stay.
		if v, ok, err := l.store.Get(ctx, pFollow+s); err != nil {
			return left, err
		} else if !ok || !followedSince(v).Equal(at) {
			continue
		}
		b, err := l.store.Batch(ctx)
		if err != nil {
			return left, err
		}
		if err := b.Delete(pFollow + s); err != nil {
			return left, err
		}
		if err := b.Commit(ctx); err != nil {
			return left, err
		}
		left = append(left, s)
	}
	if len(left) == 0 {
		return nil, nil
	}
	_, removed, err := l.refreshFollow(ctx)
	if err != nil {
		return left, err
	}
	if n := l.tr.Load(); n != nil && len(removed) > 0 {
		l.subscribeFollowed(n) // unsubscribes from those left
	}
	l.log.Info("left scopes: no live grant, held record or escrow there any more", "scopes", left, "no_longer_followed", removed)
	return left, nil
}

// leaveLoop looks for scopes to leave every unfollowEvery.
func (l *Ledger) leaveLoop(ctx context.Context) {
	l.every(ctx, unfollowEvery, func() {
		if _, err := l.leaveScopes(ctx); err != nil {
			l.log.Warn("leave scopes", "err", err)
		}
	})
}
