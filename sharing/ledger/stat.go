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
}

// Stat returns the entries this node stores, their bytes, the scopes it
// follows and whether it is caught up. It reads counters, not the log: its
// cost does not grow with the ledger.
func (l *Ledger) Stat(ctx context.Context) Stat {
	l.mu.Lock()
	st := Stat{Stored: l.core.Stored()}
	l.mu.Unlock()
	st.Scopes = l.Scopes()
	st.Synced = l.Synced()
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

// Synced reports whether this node has caught up with every followed scope:
// no entry is waiting for missing parents, and for every connected peer the
// latest catch-up sync (on connect, on a gap, every SyncInterval) ended with
// every head that peer answered with applied here. A node with no connected
// peer is synced only if it is the network's sole member; one whose first
// sync with a peer has not ended yet is not. Entries the peers write later
// reach it by gossip; one that arrives before its parents makes it
// unsynced until a sync fetches them.
func (l *Ledger) Synced() bool {
	l.mu.Lock()
	pending := l.core.PendingLen()
	l.mu.Unlock()
	if pending > 0 {
		return false
	}
	n := l.tr.Load()
	if n == nil {
		return false // not on the network yet
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
