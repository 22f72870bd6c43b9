package ledger

import (
	"context"
	"time"
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
