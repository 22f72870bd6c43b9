package ledger

import "github.com/ipfs/go-cid"

// What `medmesh health` asks of the ledger: how far this node is from its
// peers.

// PendingCount is the number of entries received whose parents have not
// arrived yet (they are applied when the parents come).
func (l *Ledger) PendingCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.core.PendingLen()
}

// Knows reports whether entry c has been applied here. (PeerHeads, in
// net.go, asks a peer for its heads.)
func (l *Ledger) Knows(c cid.Cid) bool { return l.known(c) }
