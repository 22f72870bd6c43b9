package ledger

import (
	"context"
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// What `medmesh health` asks of the ledger: how far this node is from its
// peers.

// PendingCount is the number of entries received whose parents have not
// arrived yet (they are applied when the parents come).
func (l *Ledger) PendingCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.core.PendingLen()
}

// Knows reports whether entry c has been applied here.
func (l *Ledger) Knows(c cid.Cid) bool { return l.known(c) }

// PeerHeads asks p for its heads: one sync request that asks for at most
// one entry, so it costs a few hundred bytes however far apart the two
// ledgers are.
func (l *Ledger) PeerHeads(ctx context.Context, h host.Host, p peer.ID) ([]cid.Cid, error) {
	l.mu.Lock()
	offer, err := l.core.Offer(ctx)
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	req := syncReq{Network: l.net.Bytes(), Op: opDiff, Max: 1}
	for _, c := range offer.Heads {
		req.Have = append(req.Have, c.Bytes())
	}
	resp, err := l.request(ctx, h, p, &req)
	if err != nil {
		return nil, err
	}
	if resp.Err != "" {
		return nil, fmt.Errorf("ledger: peer %s: %s", p, resp.Err)
	}
	out := make([]cid.Cid, 0, len(resp.Heads))
	for _, b := range resp.Heads {
		c, err := cid.Cast(b)
		if err != nil {
			return nil, fmt.Errorf("ledger: peer %s sent a bad head: %w", p, err)
		}
		out = append(out, c)
	}
	return out, nil
}
