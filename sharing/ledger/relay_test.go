package ledger

import (
	"context"
	"slices"
	"testing"
	"time"
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
	// Then A and C part: C learns of A's entries through B only.
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
			t.Fatal("the topic's peers did not form")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // a GossipSub heartbeat grafts the mesh

	e1 := forge(t, a.l, a.who, TypeRecordAnnounce, recordPayload(t, a.who, "unpublished"), nil)
	if err := a.l.Ingest(ctx, e1.raw); err != nil { // applied, not published
		t.Fatal(err)
	}
	e2, err := a.l.Append(ctx, TypeRecordAnnounce, recordPayload(t, a.who, "published"))
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(20 * time.Second)
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
