package ledger

import (
	"fmt"
	"slices"
	"testing"

	"github.com/medmesh/medmesh/sharing/replication"
)

// TestGroupOfFollowsMembership: the memoized replica groups are those
// replication.Group computes from the current membership, and a change
// of membership is reflected at once (no group from the old one is kept).
func TestGroupOfFollowsMembership(t *testing.T) {
	w := newWorld(t, 3, WithScopes())
	l := openNode(t, w.admin, w.genesis)
	for i, m := range w.members[1:] {
		as(t, l, w.admin, TypeMemberAdd, MemberAddPayload{Peer: m.id, Org: fmt.Sprintf("clinic %d", i)})
	}
	check := func() {
		t.Helper()
		var rms []replication.Member
		for _, m := range l.Members() {
			rms = append(rms, replication.Member{Peer: m.Peer, Org: m.Org})
		}
		for _, m := range l.Members() {
			want := replication.Group(m.Peer, rms)
			for range 2 { // computed, then memoized
				if got := l.groupOf(m.Peer); !slices.Equal(got, want) {
					t.Fatalf("group of %s: %v, want %v", m.Peer, got, want)
				}
			}
		}
	}
	check()
	for i := range 6 {
		m := newIdent(t)
		as(t, l, w.admin, TypeMemberAdd, MemberAddPayload{Peer: m.id, Org: fmt.Sprintf("org %d", i)})
		check()
	}
}
