package ledger

import (
	"bytes"
	"context"
	"fmt"
	"slices"
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

// TestCatchUpWalksTheDifferenceOnce: a peer that catches up in rounds
// costs the server one walk of what it lacks, not one a round (the
// server keeps the rest as a cursor), and reaches the server's state; a
// round whose offer shows the previous answer was not applied gets a
// fresh walk and the same answer again.
func TestCatchUpWalksTheDifferenceOnce(t *testing.T) {
	ctx := context.Background()
	w, src := claimHistory(t, 1000)
	dst := openNode(t, w.members[1], w.genesis)
	asker := w.members[2].id
	ask := func() *syncResp {
		t.Helper()
		dst.mu.Lock()
		offer, err := dst.core.Offer(ctx)
		dst.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		req := syncReq{Network: src.net.Bytes(), Op: opDiff, Max: 100}
		for _, c := range offer.Heads {
			req.Have = append(req.Have, c.Bytes())
		}
		resp := src.serveFrom(ctx, &req, asker)
		if resp.Err != "" {
			t.Fatal(resp.Err)
		}
		return resp
	}
	apply := func(resp *syncResp) {
		t.Helper()
		out, err := dst.ingest(ctx, decodeParallel(resp.Entries, func(err error) { t.Fatal(err) }))
		if err != nil || len(out.Applied) != len(resp.Entries) {
			t.Fatalf("applied %d of %d: %v %v", len(out.Applied), len(resp.Entries), err, out.Rejected)
		}
	}
	first := ask()
	again := ask() // the first answer not applied: walked anew, the same answer
	if src.cursors.walks != 2 || len(again.Entries) != 100 || !slices.EqualFunc(first.Entries, again.Entries, bytes.Equal) {
		t.Fatalf("an offer without the last answer's entry: %d walks, %d entries (the first answer had %d)", src.cursors.walks, len(again.Entries), len(first.Entries))
	}
	apply(again)
	rounds := 1
	for {
		resp := ask()
		rounds++
		apply(resp)
		if !resp.More {
			break
		}
	}
	if !bytes.Equal(dst.Digest(), src.Digest()) {
		t.Fatal("the peer did not reach the server's state")
	}
	if rounds < 10 || src.cursors.walks != 2 {
		t.Fatalf("%d rounds walked the difference %d times, want once (the second ask's walk)", rounds, src.cursors.walks-1)
	}
	if n := src.cursors.by.Len(); n != 0 {
		t.Fatalf("%d cursors kept after the catch-up", n)
	}
}
