package ledger

import (
	"cmp"
	"context"
	"sort"
	"time"

	"github.com/medmesh/medmesh/sharing/replication"
)

// Stat is what `medmesh ledger stat` reports about this node's ledger.
type Stat struct {
	// Stored: the entries this node stores and their encoded bytes.
	Stored
	// Scopes are the scopes this node follows (Scopes).
	Scopes []string
	// Synced is true once this node has caught up with every followed
	// scope (Synced).
	Synced bool
	// Behind lists the followed scopes it has not caught up with yet
	// (empty when Synced).
	Behind []string
}

// Stat returns the entries this node stores, their bytes, the scopes it
// follows and whether it is caught up. It reads counters, not the log: its
// cost does not grow with the ledger.
func (l *Ledger) Stat(ctx context.Context) Stat {
	l.mu.Lock()
	st := Stat{Stored: l.core.Stored()}
	l.mu.Unlock()
	st.Scopes = l.Scopes()
	st.Behind = l.Behind()
	st.Synced = len(st.Behind) == 0
	return st
}

// Scopes returns the names of the scopes this node follows, sorted, the
// global scope first: the topics it subscribes to and the entries it
// stores and syncs (Followed).
func (l *Ledger) Scopes() []string { return l.Followed() }

// syncState is what the transport remembers of its last catch-up with one
// peer.
type syncState struct {
	// caughtUp: the last sync with the peer ended with every head the peer
	// answered with applied here, so nothing the peer had then was missing.
	caughtUp bool
	at       time.Time
}

// Synced reports whether this node has caught up with every followed
// scope: Behind is empty.
func (l *Ledger) Synced() bool { return len(l.Behind()) == 0 }

// Behind returns the followed scopes this node has not caught up with,
// "global" first.
//
// The global scope is caught up when no entry is waiting for missing
// parents and, for every connected peer, the latest catch-up sync (on
// connect, on a gap, every SyncInterval) ended with every head that peer
// answered with applied here. A node with no connected peer is caught up
// only if it is the network's sole member; one whose first sync with a
// peer has not ended yet is not. Entries the peers write later reach it by
// gossip; one that arrives before its parents makes it behind until a sync
// fetches them.
//
// Another scope is caught up when the latest sync of that scope with each
// connected peer that follows it (scopeFollowers: on its topic, its owner,
// the owner's replica group; each is synced with as it joins the topic,
// and the sync loop syncs those not caught up with) left nothing of it
// missing here. With no follower connected, this node's own scopes are
// caught up (it writes them; its followers are out of reach), another
// owner's are not (the sync loop dials the owner).
func (l *Ledger) Behind() []string {
	n := l.tr.Load()
	if n == nil {
		return l.Followed() // not on the network yet
	}
	var out []string
	if !l.globalCaughtUp(n) {
		out = append(out, ScopeGlobal)
	}
	for _, s := range l.Followed()[1:] {
		if !l.scopeCaughtUp(n, s) {
			out = append(out, s)
		}
	}
	return out
}

// globalCaughtUp: the global scope's part of Behind.
func (l *Ledger) globalCaughtUp(n *transport) bool {
	l.mu.Lock()
	pending := l.core.PendingLen()
	l.mu.Unlock()
	if pending > 0 {
		return false
	}
	synced, ok := n.caughtUp()
	if !ok {
		return false
	}
	if synced > 0 {
		return true
	}
	// No peer to compare with: caught up only if there is no one else.
	l.stateMu.RLock()
	others := 0
	for p := range l.members {
		if p != l.self {
			others++
		}
	}
	l.stateMu.RUnlock()
	return others == 0
}

// scopeCaughtUp: scope s's part of Behind.
func (l *Ledger) scopeCaughtUp(n *transport, s string) bool {
	ws := wireScope(s)
	followers := l.scopeFollowers(n, s)
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range followers {
		if st, ok := n.scopeSynced[syncKey{p, ws}]; !ok || !st.caughtUp {
			return false
		}
	}
	if len(followers) > 0 {
		return true
	}
	_, owner, err := ParseScope(s)
	return err == nil && owner == l.self
}

// Why this node stores a scope's entries (ScopeStored.Why).
const (
	WhyGlobal  = "global"  // the global scope: every node follows it
	WhyOwn     = "own"     // this node's own owner or audit scope
	WhyGroup   = "group"   // the owner's replica group has this node
	WhyGrantee = "grantee" // a live grant to this node on one of the owner's records
	WhyHolder  = "holder"  // this node holds one of the owner's records outside its group
	WhyEscrow  = "escrow"  // one of the owner's records is escrowed to this node
	// WhyLeaving: followed, but none of the above any more: this node
	// leaves the scope at its next look (within unfollowEvery, once it has
	// followed it for unfollowGrace).
	WhyLeaving = "leaving"
	// WhyReads: not followed; the entries are this node's own claims of
	// its reads of the owner's records (an audit scope).
	WhyReads = "reads"
	// WhyLeft: not followed any more; what this node stored of it stays.
	WhyLeft = "left"
)

// ScopeStored is what this node stores of one scope, and why.
type ScopeStored struct {
	Scope    string
	Followed bool
	Why      string
	Stored
}

// StoredByScope returns, for every scope this node follows or stores
// entries of, the entries it stores of it and why (the Why constants):
// the global scope first, then by entries stored, most first. The counts
// are counters; the reasons cost this node's grants and holdings, and an
// owner's records for a followed scope where neither answers (an escrow,
// or a scope about to be left).
func (l *Ledger) StoredByScope(ctx context.Context) ([]ScopeStored, error) {
	l.mu.Lock()
	by := l.core.StoredByScope()
	l.mu.Unlock()
	followed := map[string]bool{}
	for _, s := range l.Followed() {
		followed[s] = true
		if _, ok := by[s]; !ok {
			by[s] = Stored{}
		}
	}
	var rms []replication.Member
	for _, m := range l.Members() {
		rms = append(rms, replication.Member{Peer: m.Peer, Org: m.Org})
	}
	now := l.now()
	out := make([]ScopeStored, 0, len(by))
	for s, st := range by {
		ss := ScopeStored{Scope: s, Followed: followed[s], Stored: st}
		kind, owner, err := ParseScope(s)
		switch {
		case err != nil:
			return nil, err
		case kind == KindGlobal:
			ss.Why = WhyGlobal
		case owner == l.self:
			ss.Why = WhyOwn
		case !ss.Followed && kind == KindAudit:
			ss.Why = WhyReads
		case !ss.Followed:
			ss.Why = WhyLeft
		case replication.InGroup(owner, l.self, rms):
			ss.Why = WhyGroup
		default:
			why, err := l.involvement(ctx, owner, now)
			if err != nil {
				return nil, err
			}
			ss.Why = cmp.Or(why, WhyLeaving)
		}
		out = append(out, ss)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.Why == WhyGlobal) != (b.Why == WhyGlobal) {
			return a.Why == WhyGlobal
		}
		if a.Entries != b.Entries {
			return a.Entries > b.Entries
		}
		return a.Scope < b.Scope
	})
	return out, nil
}
