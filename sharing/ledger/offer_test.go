package ledger

import (
	"context"
	"fmt"
	"testing"
)

// TestScopeOfferNamesEntriesOfItsScope: a node a few entries ahead of a
// peer on an owner scope (the owner adding records, the peer not yet
// having the newest) offers ancestors of its heads the peer knows, so the
// peer's answer holds what the node lacks (nothing), not the scope's
// history. An owner scope entry names global heads too, and an entry's
// parents are sorted by their bytes: an offer that followed the first
// parent left the scope for the global one in about half the cases and
// offered no entry of the owner scope the peer knew.
func TestScopeOfferNamesEntriesOfItsScope(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 3, WithScopes())
	ahead := openNode(t, w.admin, w.genesis)
	peer := openNode(t, w.members[1], w.genesis)
	owner := w.members[1]
	es := w.setup(t, ahead)
	for i := range 200 {
		es = append(es, as(t, ahead, owner, TypeRecordAnnounce, recordPayload(t, owner, fmt.Sprintf("r%d", i))))
		if i%50 == 0 { // the global scope moves on too
			es = append(es, as(t, ahead, w.admin, TypeMemberAdd, MemberAddPayload{Peer: newIdent(t).id, Org: fmt.Sprintf("org %d", i)}))
		}
	}
	ingestAll(t, peer, es)
	scope := wireScope(OwnerScope(owner.id))
	for i := range 24 {
		e := as(t, ahead, owner, TypeRecordAnnounce, recordPayload(t, owner, fmt.Sprintf("new %d", i)))
		offer, err := ahead.core.ScopeOffer(ctx, scope)
		if err != nil {
			t.Fatal(err)
		}
		lacks, err := peer.core.ScopePeerLacks(ctx, scope, offer)
		if err != nil {
			t.Fatal(err)
		}
		if len(lacks) != 0 {
			t.Fatalf("after new record %d: the peer would send %d entries the node has (its offer: %d entries)", i, len(lacks), len(offer.Heads))
		}
		ingestAll(t, peer, []*Entry{e})
	}
}
