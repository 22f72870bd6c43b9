package ledger

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/ipfs/go-cid"
)

func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

// applyEveryOrder ingests base then every permutation of es into fresh
// ledgers and returns the common digest (failing if any differs).
func applyEveryOrder(t *testing.T, w *world, base, es []*Entry, check func(l *Ledger)) []byte {
	t.Helper()
	ctx := context.Background()
	var want []byte
	for _, perm := range permutations(len(es)) {
		l := openNode(t, w.admin, w.genesis)
		ingestAll(t, l, base)
		for _, i := range perm {
			if err := l.Ingest(ctx, es[i].raw); err != nil && !errors.Is(err, ErrPending) {
				t.Fatalf("order %v: entry %d: %v", perm, i, err)
			}
		}
		if l.core.pend.len() != 0 {
			t.Fatalf("order %v: %d entries still pending", perm, l.core.pend.len())
		}
		check(l)
		d := l.Digest()
		if want == nil {
			want = d
		} else if !bytes.Equal(want, d) {
			t.Fatalf("order %v: digest differs", perm)
		}
	}
	return want
}

func TestConcurrentGrantRevoke(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 3)
	b := openNode(t, w.admin, w.genesis)
	base := w.setup(t, b)
	owner, grantee := w.members[1], w.members[2]
	rec := recordPayload(t, owner, "b").Record
	grant := func(tag string, parents []cid.Cid) *Entry {
		return forge(t, b, owner, TypeGrant, GrantPayload{Record: rec, Grantee: grantee.id, Envelope: envelopeFor(t, grantee, tag), Purpose: PurposeTreatment}, parents)
	}
	g0 := grant("g0", nil) // before the revoke: the revoke saw it
	ingestAll(t, b, []*Entry{g0})
	r := forge(t, b, owner, TypeRevoke, RevokePayload{Record: rec, Grantee: grantee.id}, []cid.Cid{g0.CID()})
	g1 := grant("g1", []cid.Cid{g0.CID()}) // concurrent with the revoke
	ingestAll(t, b, []*Entry{r, g1})
	g2 := grant("g2", nil) // saw the revoke (and g1)
	ingestAll(t, b, []*Entry{g2})
	if ok, _ := b.core.d.isAncestor(ctx, r.CID(), g2.CID()); !ok {
		t.Fatal("test DAG wrong: g2 must follow the revoke")
	}
	applyEveryOrder(t, w, base, []*Entry{g0, r, g1, g2}, func(l *Ledger) {
		gs := l.Grants(rec)
		if len(gs) != 1 || gs[0].Entry != g2.CID() {
			t.Fatalf("want only g2 current, got %+v", gs)
		}
	})
	// Without g2: nothing survives, in every order.
	applyEveryOrder(t, w, base, []*Entry{g0, r, g1}, func(l *Ledger) {
		if gs := l.Grants(rec); len(gs) != 0 {
			t.Fatalf("revoke must cancel grants it saw and concurrent ones, got %+v", gs)
		}
	})
}

func TestConcurrentAddRemove(t *testing.T) {
	w := newWorld(t, 3)
	b := openNode(t, w.admin, w.genesis)
	base := w.setup(t, b)
	admin2, x := w.members[1], newIdent(t)
	base = append(base, as(t, b, w.admin, TypeMemberAdd, MemberAddPayload{Peer: admin2.id, Org: "clinic", Roles: []string{RoleAdmin}}))
	add0 := as(t, b, w.admin, TypeMemberAdd, MemberAddPayload{Peer: x.id, Org: "x"})
	base = append(base, add0, as(t, b, x, TypeKeyAnnounce, KeyAnnouncePayload{Public: x.kem.Public()}))
	recA := recordPayload(t, w.admin, "a").Record
	gx := as(t, b, w.admin, TypeGrant, GrantPayload{Record: recA, Grantee: x.id, Envelope: envelopeFor(t, x, "x"), Purpose: PurposeTreatment})
	base = append(base, gx)
	fork := b.Heads()
	rm := forge(t, b, w.admin, TypeMemberRemove, MemberRemovePayload{Peer: x.id}, fork)
	readd := forge(t, b, admin2, TypeMemberAdd, MemberAddPayload{Peer: x.id, Org: "x2"}, fork) // concurrent with rm
	xw := forge(t, b, x, TypeAccess, AccessPayload{Record: recA, Version: 1, Purpose: PurposeTreatment, Grant: gx.CID()}, fork)
	ingestAll(t, b, []*Entry{rm, readd, xw})
	if b.IsMember(x.id) {
		t.Fatal("remove must win over a concurrent add")
	}
	late := forge(t, b, x, TypeAccess, AccessPayload{Record: recA, Version: 1, Purpose: PurposeResearch, Grant: gx.CID()}, nil)
	if err := b.Ingest(context.Background(), late.raw); !errors.As(err, new(*RejectError)) {
		t.Fatalf("entry after removal accepted: %v", err)
	}
	applyEveryOrder(t, w, base, []*Entry{rm, readd, xw}, func(l *Ledger) {
		if l.IsMember(x.id) {
			t.Fatal("x must not be a member")
		}
		if len(l.Access(recordPayload(t, w.admin, "a").Record)) != 1 {
			t.Fatal("x's concurrent entry must stand")
		}
	})
	readd2 := forge(t, b, admin2, TypeMemberAdd, MemberAddPayload{Peer: x.id, Org: "x3"}, nil) // saw the remove
	applyEveryOrder(t, w, base, []*Entry{rm, readd, xw, readd2}, func(l *Ledger) {
		ms := l.Members()
		found := false
		for _, m := range ms {
			if m.Peer == x.id {
				found = m.Org == "x3"
			}
		}
		if !found {
			t.Fatal("an add that saw the remove must re-admit (with its own org)")
		}
	})
}
