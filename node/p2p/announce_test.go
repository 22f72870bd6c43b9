package p2p

import (
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// TestAnnounceAddrs: a node behind NAT advertises the addresses it is
// told to (identify carries them to its peers), not its listen addresses.
func TestAnnounceAddrs(t *testing.T) {
	psk := newPSK(t)
	ia, ib := newIdentity(t), newIdentity(t)
	members := newMemberSet(ia.id, ib.id)
	public := multiaddr.StringCast("/ip4/203.0.113.7/tcp/4101")
	extra := multiaddr.StringCast("/dns4/pacs.example.org/tcp/4102")
	a := startNode(t, ia, psk, members, func(c *Config) {
		c.Announce = Announce{Replace: []multiaddr.Multiaddr{public}, Append: []multiaddr.Multiaddr{extra}}
	})
	got := a.Host.Addrs()
	if len(got) != 2 || !got[0].Equal(public) || !got[1].Equal(extra) {
		t.Fatalf("announced %v, want [%s %s]", got, public, extra)
	}
	// The listen address still works; the peer learns the announced ones.
	listen := a.Host.Network().ListenAddresses()
	b := startNode(t, ib, psk, members, func(c *Config) {
		c.Bootstrap = []peer.AddrInfo{{ID: ia.id, Addrs: listen}}
	})
	waitFor(t, 10*time.Second, "connected", func() bool { return connected(b.Node, ia.id) })
	waitFor(t, 10*time.Second, "identify carries the announced addresses", func() bool {
		return slices.ContainsFunc(b.Host.Peerstore().Addrs(ia.id), public.Equal)
	})

	// Only AppendAnnounce: the listen addresses and the extra one.
	ic := newIdentity(t)
	c := startNode(t, ic, psk, newMemberSet(ic.id), func(c *Config) { c.Announce.Append = []multiaddr.Multiaddr{extra} })
	got = c.Host.Addrs()
	if len(got) < 2 || !got[len(got)-1].Equal(extra) || !slices.ContainsFunc(got, func(m multiaddr.Multiaddr) bool { return !m.Equal(extra) }) {
		t.Fatalf("append-only announce: %v", got)
	}
	// A UDP announce address cannot carry the PSK.
	bad := Config{Identity: ic.key, PSK: psk, NetworkID: "x", Members: newMemberSet(), Blockstore: b.store.Blocks,
		Announce: Announce{Replace: []multiaddr.Multiaddr{multiaddr.StringCast("/ip4/203.0.113.7/udp/4101/quic-v1")}}}
	if err := bad.validate(); err == nil {
		t.Fatal("a QUIC announce address was accepted")
	}
}
