package p2p

import (
	"context"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

type memberFunc func(peer.ID) bool

func (f memberFunc) IsMember(p peer.ID) bool { return f(p) }

// TestOwnMessagesReachPeersOutsideTheMesh: a node's own message reaches a
// member it is connected to even when that member is not in its mesh, as
// for a member that has just joined and has no mesh until a heartbeat
// after it learns who the members are. The publisher here never counts
// the receiver as a member, so no mesh ever forms between them and gossip
// never names the message to it: only flood publishing delivers it.
func TestOwnMessagesReachPeersOutsideTheMesh(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mn := mocknet.New()
	defer mn.Close()
	a, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	b, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	// A does not count B a member yet; B counts everyone.
	psA, err := pubsub.NewGossipSub(ctx, a, GossipSubOptions(memberFunc(func(p peer.ID) bool { return p != b.ID() }))...)
	if err != nil {
		t.Fatal(err)
	}
	psB, err := pubsub.NewGossipSub(ctx, b, GossipSubOptions(memberFunc(func(peer.ID) bool { return true }))...)
	if err != nil {
		t.Fatal(err)
	}
	const topic = "medmesh test"
	ta, err := psA.Join(topic)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := psB.Join(topic)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := tb.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ta.Subscribe(); err != nil {
		t.Fatal(err)
	}
	if _, err := mn.ConnectPeers(a.ID(), b.ID()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(ta.ListPeers()) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("A never saw B subscribe")
		}
	}
	if err := ta.Publish(ctx, []byte("a key announcement")); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	msg, err := sub.Next(rctx)
	if err != nil {
		t.Fatalf("B did not receive A's message within 5 s (several heartbeats): %v", err)
	}
	if string(msg.Data) != "a key announcement" {
		t.Fatalf("B received %q", msg.Data)
	}
}
