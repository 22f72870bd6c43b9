package ledger

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"

	"github.com/ipfs/go-cid"
)

// TestClockAheadHeldBack: an entry a member signed with a clock a century
// ahead is held back (neither applied, stored, forwarded nor rejected), so
// the owner can still make a grant that expires in 30 days (with the entry
// applied, every later entry's clock is a century ahead and such a grant
// "expires before it is made"); an entry within MaxClockAhead applies; the
// held one applies once this node's clock catches up; a batch keeps one
// result per input in order; health's list of such authors forgets them
// after an hour.
func TestClockAheadHeldBack(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
	w := newWorld(t, 3)
	l, st := openAtEvery(t, t.TempDir(), w.admin, w.genesis, time.Hour, func(o *Options) { o.Now = clock })
	t.Cleanup(func() { l.Close(); st.Close() })
	w.setup(t, l)
	rogue, fast := w.members[2], w.members[1]
	at := func(who *ident, wall time.Time) *Entry {
		t.Helper()
		pl, err := encodePayload(l.core.types, TypeKeyAnnounce, KeyAnnouncePayload{Public: who.kem.Public()})
		if err != nil {
			t.Fatal(err)
		}
		l.mu.Lock()
		heads := l.core.closureHeads("")
		l.mu.Unlock()
		e, err := signScoped(who.key, l.net, "", TypeKeyAnnounce, pl, heads, HLC{Wall: uint64(wall.UnixMilli())})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	century := at(rogue, clock().Add(100*365*24*time.Hour))
	if err := l.Ingest(ctx, century.raw); !errors.Is(err, ErrAhead) || !errors.Is(err, ErrPending) {
		t.Fatalf("an entry a century ahead: %v, want ErrAhead", err)
	}
	if l.known(century.CID()) || l.PendingCount() != 0 {
		t.Fatalf("the entry a century ahead is applied %v, buffered %d", l.known(century.CID()), l.PendingCount())
	}
	if got := l.ClockAhead(); len(got) != 1 || got[0] != rogue.id {
		t.Fatalf("authors held back: %v", got)
	}
	if got := counterValue(l.met.ahead); got != 1 {
		t.Fatalf("medmesh_ledger_entries_ahead_total %v", got)
	}
	// Gossip ignores it (not forwarded, the sender not penalized).
	msg := &pubsub.Message{Message: &pb.Message{Data: century.raw, From: []byte(rogue.id)}}
	if got := l.validate(ctx, rogue.id, msg, "", false); got != pubsub.ValidationIgnore {
		t.Fatalf("gossip of the entry a century ahead: %v, want ignore", got)
	}

	// The owner (the admin owns record "a") grants for 30 days.
	rec := recordPayload(t, w.members[0], "a").Record
	if _, err := l.Append(ctx, TypeGrant, GrantPayload{Record: rec, Grantee: w.members[1].id,
		Envelope: envelopeFor(t, w.members[1], "30 days"), Purpose: PurposeTreatment, Expires: clock().Add(30 * 24 * time.Hour)}); err != nil {
		t.Fatalf("a 30-day grant after the entry a century ahead: %v", err)
	}

	// A clock 5 minutes fast is within the margin: applied at once.
	if err := l.Ingest(ctx, at(fast, clock().Add(5*time.Minute)).raw); err != nil {
		t.Fatalf("an entry 5 minutes ahead: %v", err)
	}
	// One 20 minutes fast waits for this node's clock; a batch keeps one
	// result per input, in order.
	early, ok := at(fast, clock().Add(20*time.Minute)), at(rogue, clock().Add(6*time.Minute))
	out, err := l.ingest(ctx, []*Entry{early, ok})
	if err != nil || len(out.Results) != 2 || out.Results[0].Err != ErrAhead || out.Results[1].Status != Applied {
		t.Fatalf("a batch of an entry 20 minutes ahead and one on time: %+v, %v", out.Results, err)
	}
	set(clock().Add(11 * time.Minute))
	if err := l.Ingest(ctx, early.raw); err != nil || !l.known(early.CID()) {
		t.Fatalf("the entry 20 minutes ahead, 11 minutes later: %v", err)
	}
	set(clock().Add(2 * aheadWindow))
	if got := l.ClockAhead(); len(got) != 0 {
		t.Fatalf("authors held back more than an hour ago are still listed: %v", got)
	}
}

// TestLateEntryReported: an entry whose parents are far behind the heads
// (here more than a lowered LateBehind) is applied, counted
// (medmesh_ledger_late_entries_total) and reported once with its author;
// an entry on the heads is not.
func TestLateEntryReported(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 3)
	l := openNode(t, w.admin, w.genesis)
	setup := w.setup(t, l)
	l.mu.Lock()
	l.core.lateBehind = 5
	l.mu.Unlock()
	for range 8 {
		as(t, l, w.members[1], TypeKeyAnnounce, KeyAnnouncePayload{Public: newIdent(t).kem.Public()})
	}
	if got := counterValue(l.met.late); got != 0 {
		t.Fatalf("entries on the heads counted late: %v", got)
	}
	rogue := w.members[2]
	late := forge(t, l, rogue, TypeKeyAnnounce, KeyAnnouncePayload{Public: rogue.kem.Public()}, []cid.Cid{setup[len(setup)-1].CID()})
	if err := l.Ingest(ctx, late.raw); err != nil {
		t.Fatal(err)
	}
	if got := counterValue(l.met.late); got != 1 {
		t.Fatalf("medmesh_ledger_late_entries_total %v after an entry 8 behind, want 1", got)
	}
	if got := l.core.TakeLate(); len(got) != 0 {
		t.Fatalf("late entries left after the ledger took them: %v", got)
	}
}
