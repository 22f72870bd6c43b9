package p2p

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/multiformats/go-multiaddr"
)

const (
	bootstrapProtectTag  = "medmesh-bootstrap"
	bootstrapDialTimeout = 15 * time.Second
)

// bootPeer is a bootstrap peer kept connected by its own goroutine.
type bootPeer struct {
	id   peer.ID
	mu   sync.Mutex
	adds []multiaddr.Multiaddr
	// kick wakes the re-dialer: the peer disconnected or got new addresses.
	kick chan struct{}
}

func (bp *bootPeer) wake() {
	select {
	case bp.kick <- struct{}{}:
	default:
	}
}

func (bp *bootPeer) addrs() []multiaddr.Multiaddr {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	return slices.Clone(bp.adds)
}

// AddBootstrap adds a bootstrap peer: it is dialed now and re-dialed, with
// exponential backoff and jitter, whenever it is away, until the node is
// closed. Its connections are protected from the connection manager. Adding
// a known peer again replaces its addresses and re-dials it at once.
func (n *Node) AddBootstrap(ai peer.AddrInfo) {
	if ai.ID == "" || ai.ID == n.Host.ID() {
		return
	}
	n.bootMu.Lock()
	defer n.bootMu.Unlock()
	if n.ctx.Err() != nil {
		return
	}
	if len(ai.Addrs) > 0 {
		n.Host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
	}
	if bp, ok := n.boot[ai.ID]; ok {
		if len(ai.Addrs) > 0 {
			bp.mu.Lock()
			bp.adds = slices.Clone(ai.Addrs)
			bp.mu.Unlock()
		}
		bp.wake()
		return
	}
	bp := &bootPeer{id: ai.ID, adds: slices.Clone(ai.Addrs), kick: make(chan struct{}, 1)}
	n.boot[ai.ID] = bp
	n.connMgr.Protect(ai.ID, bootstrapProtectTag)
	n.wg.Add(1)
	go n.keepConnected(bp)
}

// onDisconnected wakes the re-dialer of a bootstrap peer whose last
// connection closed.
func (n *Node) onDisconnected(net network.Network, c network.Conn) {
	p := c.RemotePeer()
	if net.Connectedness(p) == network.Connected {
		return
	}
	n.bootMu.Lock()
	bp := n.boot[p]
	n.bootMu.Unlock()
	if bp != nil {
		bp.wake()
	}
}

func (n *Node) keepConnected(bp *bootPeer) {
	defer n.wg.Done()
	backoff := n.cfg.RedialBackoffMin
	for n.ctx.Err() == nil {
		if n.Host.Network().Connectedness(bp.id) == network.Connected {
			backoff = n.cfg.RedialBackoffMin
			select {
			case <-n.ctx.Done():
				return
			case <-bp.kick:
			}
			continue
		}
		if n.admitted(bp.id) {
			if n.dialBootstrap(bp) {
				backoff = n.cfg.RedialBackoffMin
				continue
			}
		}
		// Full jitter in [backoff/2, backoff): peers that lost the same
		// bootstrap node do not all come back at the same instant.
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-n.ctx.Done():
			t.Stop()
			return
		case <-bp.kick:
			t.Stop()
		case <-t.C:
		}
		backoff = min(backoff*2, n.cfg.RedialBackoffMax)
	}
}

// dialBootstrap dials bp once, bypassing the swarm's own dial backoff (this
// loop has its own), and nudges a DHT routing table refresh.
func (n *Node) dialBootstrap(bp *bootPeer) bool {
	n.metrics.bootstrapDials.Inc()
	ctx, cancel := context.WithTimeout(network.WithForceDirectDial(n.ctx, "bootstrap re-dial"), bootstrapDialTimeout)
	defer cancel()
	err := n.Host.Connect(ctx, peer.AddrInfo{ID: bp.id, Addrs: bp.addrs()})
	if err != nil {
		n.log.Debug("bootstrap dial failed", "peer", bp.id.String(), "err", err)
		return false
	}
	n.log.Info("connected to bootstrap peer", "peer", bp.id.String())
	// The DHT adds the peer once identify completes; nudge a refresh.
	_ = n.DHT.Bootstrap(n.ctx)
	return true
}
