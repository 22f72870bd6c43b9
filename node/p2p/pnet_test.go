package p2p

import (
	"context"
	"github.com/libp2p/go-libp2p/core/network"
	"sync"
	"testing"
	"time"
)

// TestNetworkKeyRotation: nodes switch their pre-shared key while their
// hosts run. A node that knows only the old key connects while the old key
// is accepted, and not after its retirement: the refusal comes before any
// handshake, on the first bytes.
func TestNetworkKeyRotation(t *testing.T) {
	t.Parallel()
	oldK, newK := newPSK(t), newPSK(t)
	ia, ib, ic, id := newIdentity(t), newIdentity(t), newIdentity(t), newIdentity(t)
	members := newMemberSet(ia.id, ib.id, ic.id, id.id)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	withClock := func(c *Config) { c.Now = clock }
	a := startNode(t, ia, oldK, members, withClock)
	b := startNode(t, ib, oldK, members, withClock)
	stale := startNode(t, ic, oldK, members, withClock) // never learns the new key
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.Connect(ctx, a.AddrInfo()); err != nil {
		t.Fatalf("old key: %v", err)
	}

	// The rotation: the new key is dialed from activate, the old one
	// accepted until retire.
	activate, retire := now.Add(10*time.Second), now.Add(20*time.Second)
	sched := []NetworkKey{{PSK: oldK, Until: retire}, {PSK: newK, From: activate}}
	for _, n := range []*testNode{a, b} {
		if err := n.SetNetworkKeys(sched); err != nil {
			t.Fatal(err)
		}
	}
	// A node with only the new key reaches a before activation: keys
	// learnt early are accepted at once.
	fresh := startNode(t, id, newK, members, withClock)
	if err := fresh.Connect(ctx, a.AddrInfo()); err != nil {
		t.Fatalf("new key before activation: %v", err)
	}
	// Existing connections stay up across the switch.
	mu.Lock()
	now = activate.Add(time.Second)
	mu.Unlock()
	if !connected(b.Node, a.ID()) {
		t.Fatal("the switch dropped a connection")
	}
	// b now dials with the new key; the stale node still gets in with the
	// old one during the overlap.
	b.Host.Network().ClosePeer(a.ID())
	if err := b.Connect(ctx, a.AddrInfo()); err != nil {
		t.Fatalf("new key after activation: %v", err)
	}
	if err := stale.Connect(ctx, a.AddrInfo()); err != nil {
		t.Fatalf("old key during the overlap: %v", err)
	}

	// After retirement the old key is refused, before any handshake.
	// (Connections opened before stay: the stale node is a member, and
	// its DHT may well have redialed meanwhile; close them.)
	refused := counterValue(t, a.metrics.pskRefused)
	mu.Lock()
	now = retire.Add(time.Second)
	mu.Unlock()
	stale.Host.Network().ClosePeer(a.ID())
	a.Host.Network().ClosePeer(stale.ID())
	// (The stale node's own redials may have failed meanwhile: bypass its
	// dial backoff.)
	cctx, ccancel := context.WithTimeout(network.WithForceDirectDial(ctx, "test"), 2*time.Second)
	err := stale.Connect(cctx, a.AddrInfo())
	ccancel()
	if err == nil {
		t.Fatalf("the retired key still connects: stale conns %v, a conns %v", stale.Host.Network().ConnsToPeer(a.ID()), a.Host.Network().ConnsToPeer(stale.ID()))
	}
	waitFor(t, 5*time.Second, "refusal counted", func() bool { return counterValue(t, a.metrics.pskRefused) > refused })
	if len(a.Host.Network().ConnsToPeer(stale.ID())) != 0 {
		t.Fatal("a connection under the retired key persists")
	}
}
