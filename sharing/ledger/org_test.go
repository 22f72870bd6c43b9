package ledger

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

func orgOf(l *Ledger, p peer.ID) (string, bool) {
	for _, m := range l.Members() {
		if m.Peer == p {
			return m.Org, true
		}
	}
	return "", false
}

func wantOrg(t *testing.T, l *Ledger, p peer.ID, want string) {
	t.Helper()
	if got, ok := orgOf(l, p); !ok || got != want {
		t.Fatalf("org of %s: %q (member %v), want %q", p, got, ok, want)
	}
}

func wantRejected(t *testing.T, l *Ledger, e *Entry, unauthorized bool, what string) {
	t.Helper()
	err := l.Ingest(context.Background(), e.raw)
	if !errors.As(err, new(*RejectError)) {
		t.Fatalf("%s: accepted (%v)", what, err)
	}
	if unauthorized && !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("%s: rejected, but not for authority: %v", what, err)
	}
}

// TestMemberOrgAuthority: only a member itself states its organisation,
// only when its admission set none, and only once; an organisation set by
// the admin's member.add always wins.
func TestMemberOrgAuthority(t *testing.T) {
	w := newWorld(t, 2) // admin + a member admitted with org "clinic"
	l := openNode(t, w.admin, w.genesis)
	w.setup(t, l)
	admin, clinic := w.admin, w.members[1]
	lab, outsider := newIdent(t), newIdent(t)
	as(t, l, admin, TypeMemberAdd, MemberAddPayload{Peer: lab.id}) // the admin gave no org

	// The founding admin's admission is the genesis: no org until it says.
	wantOrg(t, l, admin.id, "")
	as(t, l, admin, TypeMemberOrg, MemberOrgPayload{Peer: admin.id, Org: "St Mary"})
	wantOrg(t, l, admin.id, "St Mary")

	// Someone else's statement: a member naming another member, a
	// member whose admission set its org, a second statement, a
	// non-member.
	wantRejected(t, l, forge(t, l, clinic, TypeMemberOrg, MemberOrgPayload{Peer: lab.id, Org: "Rogue"}, nil), true, "clinic states lab's org")
	wantRejected(t, l, forge(t, l, admin, TypeMemberOrg, MemberOrgPayload{Peer: lab.id, Org: "Rogue"}, nil), true, "admin states lab's org with member.org")
	wantRejected(t, l, forge(t, l, clinic, TypeMemberOrg, MemberOrgPayload{Peer: clinic.id, Org: "Other"}, nil), true, "clinic overrides its admission's org")
	wantRejected(t, l, forge(t, l, admin, TypeMemberOrg, MemberOrgPayload{Peer: admin.id, Org: "Again"}, nil), true, "a second statement")
	wantRejected(t, l, forge(t, l, outsider, TypeMemberOrg, MemberOrgPayload{Peer: outsider.id, Org: "Outside"}, nil), false, "a non-member")
	wantOrg(t, l, lab.id, "")
	wantOrg(t, l, clinic.id, "clinic")

	// Free text is refused by the ledger, not only by the CLI.
	wantRejected(t, l, forge(t, l, lab, TypeMemberOrg, MemberOrgPayload{Peer: lab.id, Org: "Lab\nMRN 12345"}, nil), false, "a control character")
	wantRejected(t, l, forge(t, l, lab, TypeMemberOrg, MemberOrgPayload{Peer: lab.id, Org: strings.Repeat("x", MaxOrgLen+1)}, nil), false, "a long org")

	// The lab states its own, once.
	as(t, l, lab, TypeMemberOrg, MemberOrgPayload{Peer: lab.id, Org: "Central Lab"})
	wantOrg(t, l, lab.id, "Central Lab")

	// The admin's member.add with an org overrides the statement; one
	// without an org leaves the statement in force.
	as(t, l, admin, TypeMemberAdd, MemberAddPayload{Peer: lab.id, Org: "Lab (north)"})
	wantOrg(t, l, lab.id, "Lab (north)")
	as(t, l, admin, TypeMemberAdd, MemberAddPayload{Peer: lab.id})
	wantOrg(t, l, lab.id, "Central Lab")

	if err := l.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestMemberOrgConcurrent: concurrent statements (only a modified node makes
// them) and a statement concurrent with an admission that sets an org
// resolve the same way in every arrival order.
func TestMemberOrgConcurrent(t *testing.T) {
	w := newWorld(t, 1)
	b := openNode(t, w.admin, w.genesis)
	base := w.setup(t, b)
	x := newIdent(t)
	base = append(base, as(t, b, w.admin, TypeMemberAdd, MemberAddPayload{Peer: x.id}))
	fork := b.Heads()
	s1 := forge(t, b, x, TypeMemberOrg, MemberOrgPayload{Peer: x.id, Org: "One"}, fork)
	s2 := forge(t, b, x, TypeMemberOrg, MemberOrgPayload{Peer: x.id, Org: "Two"}, fork)
	first := "One"
	if before(s2.Clock, s2.CID(), s1.Clock, s1.CID()) {
		first = "Two"
	}
	applyEveryOrder(t, w, base, []*Entry{s1, s2}, func(l *Ledger) { wantOrg(t, l, x.id, first) })

	adm := forge(t, b, w.admin, TypeMemberAdd, MemberAddPayload{Peer: x.id, Org: "Assigned"}, fork)
	applyEveryOrder(t, w, base, []*Entry{s1, adm}, func(l *Ledger) { wantOrg(t, l, x.id, "Assigned") })
}

func TestCheckOrg(t *testing.T) {
	for _, ok := range []string{"St Mary", "Regional Imaging (north)", "Hôpital Saint-Louis", "A&E", "lab_2", "O'Brien Clinic"} {
		if err := CheckOrg(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", " St Mary", "St Mary ", "a\tb", "a\nb", "x;drop", "<b>", strings.Repeat("a", MaxOrgLen+1), "\xff"} {
		if err := CheckOrg(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
