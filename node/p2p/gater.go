package p2p

import (
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// gater admits only members, and guests (Config.Guests). It checks before dialing a peer and after the
// Noise handshake has authenticated the remote peer's identity, in both
// directions. Address-level hooks admit everything: the PSK already stops
// strangers before the handshake.
type gater struct {
	self    peer.ID
	members Membership
	guests  func(peer.ID) bool // may be nil
}

func (g *gater) admit(p peer.ID) bool {
	return p == g.self || g.members.IsMember(p) || (g.guests != nil && g.guests(p))
}

// InterceptPeerDial refuses to dial non-members.
func (g *gater) InterceptPeerDial(p peer.ID) bool { return g.admit(p) }

// InterceptAddrDial admits every address of an admitted peer.
func (g *gater) InterceptAddrDial(p peer.ID, _ multiaddr.Multiaddr) bool { return g.admit(p) }

// InterceptAccept admits every inbound connection up to the handshake.
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool { return true }

// InterceptSecured refuses authenticated non-members, inbound or outbound.
func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return g.admit(p)
}

// InterceptUpgraded admits the connection: the peer was already checked.
func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
