package daemon

import (
	"context"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-multiaddr"

	"github.com/medmesh/medmesh/node/gc"
	"github.com/medmesh/medmesh/node/p2p"
	"github.com/medmesh/medmesh/node/replication"
	rules "github.com/medmesh/medmesh/sharing/replication"
)

// ReplicationOptions tune the replication manager (node/replication).
type ReplicationOptions = replication.Options

// Receipt statuses.
const (
	ReceiptHeld     = rules.StatusHeld
	ReceiptDeclined = rules.StatusDeclined
	ReceiptReleased = rules.StatusReleased
)

// Replication is the node's replication manager.
func (d *Daemon) Replication() *replication.Manager { return d.repl }

// Storage is the node's garbage collector.
func (d *Daemon) Storage() *gc.Service { return d.gc }

// HoldRecord marks rec as in progress until the returned function is
// called: gc keeps its blocks meanwhile. Code that stores a record's blocks
// before the ledger announces it (imports, bulk adds) should hold it.
func (d *Daemon) HoldRecord(rec cid.Cid) (release func()) { return d.pins.Hold(rec) }

// p2pNetwork is the p2p node as the replication manager sees it.
type p2pNetwork struct{ *p2p.Node }

func (n p2pNetwork) FindProviders(ctx context.Context, c cid.Cid, max int) []peer.ID {
	var out []peer.ID
	for ai := range n.DHT.FindProvidersAsync(ctx, c, max) {
		out = append(out, ai.ID)
	}
	return out
}

// membershipNet is the p2p node as the membership service sees it.
type membershipNet struct{ *p2p.Node }

func (n membershipNet) PeerAddrs(p peer.ID) []multiaddr.Multiaddr {
	return n.Host.Peerstore().Addrs(p)
}

func (n membershipNet) SelfAddrs() []multiaddr.Multiaddr { return n.Host.Addrs() }

func (n membershipNet) Notify(connected, disconnected func(peer.ID)) {
	n.Host.Network().Notify(&network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) { connected(c.RemotePeer()) },
		DisconnectedF: func(nw network.Network, c network.Conn) {
			if nw.Connectedness(c.RemotePeer()) != network.Connected {
				disconnected(c.RemotePeer())
			}
		},
	})
}

func (n membershipNet) Connect(ctx context.Context, ai peer.AddrInfo) error {
	return n.Host.Connect(ctx, ai)
}

func (n membershipNet) NewStream(ctx context.Context, p peer.ID, proto protocol.ID) (network.Stream, error) {
	return n.Host.NewStream(ctx, p, proto)
}

func (n membershipNet) SetStreamHandler(proto protocol.ID, h network.StreamHandler) {
	n.Host.SetStreamHandler(proto, h)
}

func (n membershipNet) ClosePeer(p peer.ID) error { return n.Host.Network().ClosePeer(p) }
