package ledger

import (
	"context"
	"slices"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

// TestForwardEntryThatArrivedBeforeItsParents: on a line A - B - C, A writes
// e1 without publishing it and then e2 on top. B receives e2 before e1
// (pending), fetches e1 from A, applies both and only then accepts e2, so
// GossipSub forwards it and C has e2 at once rather than at its next sync
// (an hour away here).
func TestForwardEntryThatArrivedBeforeItsParents(t *testing.T) {
	if testing.Short() {
		t.Skip("networked")
	}
	ctx := context.Background()
	w := newWorld(t, 3)
	mn, nodes := startMeshEvery(t, w, 3, 12100, time.Minute, time.Hour, func(l *Ledger) { w.setup(t, l) })
	a, b, c := nodes[0], nodes[1], nodes[2]
	line(t, mn, w, a, b, c)

	e1 := forge(t, a.l, a.who, TypeRecordAnnounce, recordPayload(t, a.who, "unpublished"), nil)
	if err := a.l.Ingest(ctx, e1.raw); err != nil { // applied, not published
		t.Fatal(err)
	}
	e2, err := a.l.Append(ctx, TypeRecordAnnounce, recordPayload(t, a.who, "published"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !c.l.known(e2.CID()) || !c.l.known(e1.CID()) {
		if time.Now().After(deadline) {
			t.Fatalf("C has e2 %v, e1 %v after 20 s; B forwarded %v entries late", c.l.known(e2.CID()), c.l.known(e1.CID()), counterValue(b.l.met.forwardedLate))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := counterValue(b.l.met.forwardedLate); got != 1 {
		t.Fatalf("B forwarded %v entries late, want 1", got)
	}
	waitConverged(t, nodes, time.Minute)
}

// TestForwardEntryAlreadySynced: a node that got an entry through a sync
// before its gossip copy came still forwards the copy. In a line A - B - C
// (syncs an hour apart), B has A's entry before A publishes it; C gets it
// through B within seconds, where before the change B ignored the copy as
// known and C waited for its next sync.
func TestForwardEntryAlreadySynced(t *testing.T) {
	if testing.Short() {
		t.Skip("networked")
	}
	ctx := context.Background()
	w := newWorld(t, 3)
	mn, nodes := startMeshEvery(t, w, 3, 12200, time.Minute, time.Hour, func(l *Ledger) { w.setup(t, l) })
	a, b, c := nodes[0], nodes[1], nodes[2]
	line(t, mn, w, a, b, c)

	e := forge(t, a.l, a.who, TypeRecordAnnounce, recordPayload(t, a.who, "synced first"), nil)
	for _, l := range []*Ledger{a.l, b.l} { // as if B had synced it from A
		if err := l.Ingest(ctx, e.raw); err != nil {
			t.Fatal(err)
		}
	}
	a.l.publish(ctx, e)
	deadline := time.Now().Add(10 * time.Second)
	for !c.l.known(e.CID()) {
		if time.Now().After(deadline) {
			t.Fatal("C does not have the entry 10 s after A published it: B did not forward the copy it already had")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// line parts A and C of a started mesh, so C hears of A's entries through
// B only, and waits until B's and C's topic peers say so and a heartbeat
// has grafted the mesh.
func line(t *testing.T, mn mocknet.Mocknet, w *world, a, b, c *meshNode) {
	t.Helper()
	if err := mn.UnlinkPeers(a.h.ID(), c.h.ID()); err != nil {
		t.Fatal(err)
	}
	if err := mn.DisconnectPeers(a.h.ID(), c.h.ID()); err != nil {
		t.Fatal(err)
	}
	topic := ScopeTopicName(w.netID, "")
	deadline := time.Now().Add(time.Minute)
	for !slices.Contains(b.ps.ListPeers(topic), a.h.ID()) || !slices.Contains(b.ps.ListPeers(topic), c.h.ID()) ||
		!slices.Contains(c.ps.ListPeers(topic), b.h.ID()) || slices.Contains(c.ps.ListPeers(topic), a.h.ID()) {
		if time.Now().After(deadline) {
			t.Fatalf("the topic's peers did not form in a minute: B lists A %v, C %v; C lists B %v, A %v (want true, true, true, false)",
				slices.Contains(b.ps.ListPeers(topic), a.h.ID()), slices.Contains(b.ps.ListPeers(topic), c.h.ID()),
				slices.Contains(c.ps.ListPeers(topic), b.h.ID()), slices.Contains(c.ps.ListPeers(topic), a.h.ID()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // a GossipSub heartbeat grafts the mesh
}

// TestValidateKnownEntries: a gossiped entry this node already applied is
// accepted (forwarded) on its own topic when the message is its author's,
// and ignored on another scope's topic, on the inbox, or when another
// member republished it.
func TestValidateKnownEntries(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 3)
	l := openNode(t, w.admin, w.genesis)
	w.setup(t, l)
	author, other := w.members[1], w.members[2]
	e := as(t, l, author, TypeKeyAnnounce, KeyAnnouncePayload{Public: author.kem.Public()})
	msg := func(from *ident) *pubsub.Message {
		return &pubsub.Message{Message: &pb.Message{Data: e.raw, From: []byte(from.id)}}
	}
	for _, c := range []struct {
		name  string
		from  *ident
		scope string
		inbox bool
		want  pubsub.ValidationResult
	}{
		{"its author's message on its topic", author, "", false, pubsub.ValidationAccept},
		{"republished by another member", other, "", false, pubsub.ValidationIgnore},
		{"on the inbox", author, "", true, pubsub.ValidationIgnore},
		{"on another scope's topic", author, OwnerScope(author.id), false, pubsub.ValidationIgnore},
	} {
		if got := l.validate(ctx, other.id, msg(c.from), c.scope, c.inbox); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
