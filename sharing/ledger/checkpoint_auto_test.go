package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestAutoScopeCheckpoint: the first member of an owner's replica group
// drafts a checkpoint of the owner's scope, the others co-sign it over the
// sync protocol at the proposal's heads while the scope moves on, a
// proposal from outside the group or one of another state is refused, and
// a node granted a record afterwards loads the checkpoint instead of
// syncing the scope's history.
func TestAutoScopeCheckpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("networked")
	}
	ctx := context.Background()
	// Followers ask for a scope's newer checkpoints every second, not
	// every ten: adoption takes seconds (it took 20 s a checkpoint, and
	// the one-minute waits below were once missed under load).
	const askEvery = time.Second
	w, _, nodes := newScopedMeshOpts(t, 6, func(_ int, o *Options) { o.checkpointAskEvery = askEvery })
	owner := nodes[1]
	scope := OwnerScope(owner.who.id)
	group := slices.Sorted(slices.Values(owner.l.groupOf(owner.who.id)))
	byID := map[string]*meshNode{}
	for _, nd := range nodes {
		byID[nd.who.id.String()] = nd
	}
	if len(group) < 3 || len(group) > 4 {
		t.Fatalf("group %v", group)
	}
	// b refuses what it must; the rest (c and maybe d) make the quorum
	// with the proposer.
	proposer, b := byID[group[0].String()], byID[group[1].String()]
	var rest []*meshNode
	for _, p := range group[2:] {
		rest = append(rest, byID[p.String()])
	}
	var outsider *meshNode
	for _, nd := range nodes {
		if nd != owner && !slices.Contains(group, nd.who.id) {
			outsider = nd
		}
	}
	followers := append([]*meshNode{owner, proposer, b}, rest...)
	announce := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if _, err := owner.l.Append(ctx, TypeRecordAnnounce, recordPayload(t, owner.who, fmt.Sprintf("r%d", i))); err != nil {
				t.Fatal(err)
			}
		}
		waitScope(t, scope, followers, time.Minute)
	}
	announce(0, 30)
	if n, err := proposer.l.sinceCheckpoint(ctx, scope); err != nil || n != 30 {
		t.Fatalf("entries past the latest checkpoint: %d, %v; want 30", n, err)
	}
	cosign := func(to *meshNode, from *meshNode, ck *Checkpoint) *syncResp {
		t.Helper()
		raw, err := ck.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return to.l.serveFrom(ctx, &syncReq{Network: to.l.net.Bytes(), Op: opCosign, Scope: wireScope(scope), Proposal: raw}, from.who.id)
	}

	d, err := proposer.l.signScopeDraft(ctx, scope, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.close()
	draft := d.ck
	// Not a signer, or a signer that did not sign: refused before any work.
	rogue := *draft
	rogue.Sigs = nil
	if err := rogue.Sign(outsider.who.key); err != nil {
		t.Fatal(err)
	}
	if r := cosign(b, outsider, &rogue); !strings.Contains(r.Err, "only a signer") {
		t.Fatalf("a proposal by a node outside the group: %q", r.Err)
	}
	if r := cosign(b, proposer, &rogue); !strings.Contains(r.Err, "only a signer") {
		t.Fatalf("a proposal its sender did not sign: %q", r.Err)
	}
	// A member outside the group that lists itself among the signers.
	madeUp := *draft
	madeUp.Signers = slices.Sorted(slices.Values([]peer.ID{outsider.who.id, b.who.id}))
	madeUp.Sigs = nil
	if err := madeUp.seal(); err != nil {
		t.Fatal(err)
	}
	if err := madeUp.Sign(outsider.who.key); err != nil {
		t.Fatal(err)
	}
	if r := cosign(b, outsider, &madeUp); !strings.Contains(r.Err, "only a signer") {
		t.Fatalf("a proposal by a member outside the group naming itself a signer: %q", r.Err)
	}
	// Another state at the same heads: b computes its own and refuses.
	other := *draft
	other.Entries++
	other.Sigs = nil
	if err := other.seal(); err != nil {
		t.Fatal(err)
	}
	if err := other.Sign(proposer.who.key); err != nil {
		t.Fatal(err)
	}
	if r := cosign(b, proposer, &other); !strings.Contains(r.Err, "not the checkpoint") {
		t.Fatalf("a proposal of another state: %q", r.Err)
	}
	// And right after, b replays no other proposal of the scope.
	if r := cosign(b, proposer, draft); !strings.Contains(r.Err, "busy") {
		t.Fatalf("a second replay within %s: %q", cosignEvery, r.Err)
	}

	// The scope moves on; the rest co-sign the draft at its own heads.
	announce(30, 35)
	n := proposer.l.tr.Load()
	got := draft
	for i, nd := range rest {
		if got, err = proposer.l.askCosign(ctx, n, nd.who.id, got); err != nil {
			t.Fatalf("co-signing a proposal at heads behind the scope's: %v", err)
		}
		if trustedSigs(got, got.Signers) != i+2 {
			t.Fatalf("signatures %v", got.Sigs)
		}
	}
	// The last made a quorum and stored it.
	last := rest[len(rest)-1]
	if cks, _ := last.l.CheckpointChain(ctx, scope); len(cks) != 1 || cks[0].cid != draft.cid {
		t.Fatalf("the chain of the signer that made the quorum: %v", cks)
	}

	// The whole round through proposeScopeCheckpoint, after more entries.
	announce(35, 60)
	if n, err := proposer.l.sinceCheckpoint(ctx, scope); err != nil || n < 25 {
		t.Fatalf("entries past the latest checkpoint on the proposer: %d, %v", n, err)
	}
	// proposeNow runs the round at once, each co-signer's rate limit
	// reset.
	proposeNow := func() *Checkpoint {
		t.Helper()
		for _, nd := range append([]*meshNode{b}, rest...) {
			nd.l.auto.mu.Lock()
			nd.l.auto.cosigned = nil
			nd.l.auto.mu.Unlock()
		}
		ck, err := proposer.l.proposeScopeCheckpoint(ctx, n, scope)
		if err != nil {
			t.Fatal(err)
		}
		return ck
	}
	ck := proposeNow()
	if ck.Entries < 60 {
		t.Fatalf("checkpoint of %d entries", ck.Entries)
	}
	if n, err := proposer.l.sinceCheckpoint(ctx, scope); err != nil || n != 0 {
		t.Fatalf("entries past the new checkpoint: %d, %v", n, err)
	}
	// Every follower (the owner and its group) adopts it at a sync.
	adopted := func(nds []*meshNode, want *Checkpoint) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for _, nd := range nds {
			for {
				cks, err := nd.l.CheckpointChain(ctx, scope)
				if err != nil {
					t.Fatal(err)
				}
				if len(cks) > 0 && cks[len(cks)-1].cid == want.cid {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s (owner %v, proposer %v, b %v) did not adopt %s: %d checkpoints", nd.who.id, nd == owner, nd == proposer, nd == b, want.cid, len(cks))
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	adopted(followers, ck)
	deadline := time.Now().Add(time.Minute)

	// Followers that hold the entries adopted it by computing it (no
	// state fetched): one signed by a majority of the group but of
	// another state is refused, and nothing is stored.
	forged := *ck
	forged.Entries++
	forged.Clock.Wall++
	forged.Sigs = nil
	if err := forged.seal(); err != nil {
		t.Fatal(err)
	}
	for _, p := range group[:Quorum(len(group))] {
		if err := forged.Sign(byID[p.String()].who.key); err != nil {
			t.Fatal(err)
		}
	}
	func() {
		defer owner.l.scopeCkptLock(scope)()
		if err := owner.l.adoptScope(ctx, &forged, nil, false); !errors.Is(err, ErrCheckpointMismatch) {
			t.Fatalf("a forged checkpoint signed by a majority: %v", err)
		}
	}()
	if cks, _ := owner.l.CheckpointChain(ctx, scope); cks[len(cks)-1].cid != ck.cid {
		t.Fatalf("the owner stored %s", cks[len(cks)-1].cid)
	}

	// A grant to the outsider: it follows the scope from the checkpoint,
	// though each follower drops its first request for the scope's
	// checkpoints and its first for a state block (a connection replaced
	// under it): the outsider must not replay the scope from a peer that
	// did not answer, and asks again.
	for _, nd := range followers {
		dropFirstRequests(nd.h, nd.l, outsider.who.id, wireScope(scope), opCheckpoints, opStateBlock)
	}
	rec := recordPayload(t, owner.who, "r1").Record
	if _, err := owner.l.Append(ctx, TypeGrant, GrantPayload{Record: rec, Grantee: outsider.who.id,
		Envelope: envelopeFor(t, outsider.who, "g"), Purpose: PurposeTreatment}); err != nil {
		t.Fatal(err)
	}
	for !outsider.l.Follows(scope) {
		if time.Now().After(deadline) {
			t.Fatal("the grantee does not follow the scope")
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitScope(t, scope, append(followers, outsider), time.Minute)
	if gs := outsider.l.Grants(rec); len(gs) != 1 {
		t.Fatalf("the grantee sees grants %v", gs)
	}
	// It started the scope from the checkpoint: it holds the entries
	// after it, not those the checkpoint covers (their metadata only).
	base, err := outsider.l.ckptMarkers(ctx, pCkptBase)
	if err != nil || !base[scope] {
		t.Fatalf("the grantee did not start %s from a checkpoint: %v %v", scope, base, err)
	}
	held := 0
	if err := outsider.l.EachEntry(ctx, func(c cid.Cid) error {
		if _, err := outsider.l.store.GetEntry(ctx, c); err == nil {
			if nd, _ := outsider.l.core.d.get(ctx, c); nd != nil && nd.scope == wireScope(scope) {
				held++
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if held >= 10 {
		t.Fatalf("the grantee stores %d of the scope's %d entries: it synced the history", held, ck.Entries+1)
	}
	t.Logf("checkpoint of %d entries; the grantee stores %d of the scope's entries", ck.Entries, held)

	// The grantee keeps the entries from there, not the group's next
	// checkpoints: it neither replays the scope to adopt one nor serves the
	// one it loaded (which only gets older) to a new follower, which asks
	// another peer instead of replaying the history from it.
	if r := outsider.l.serveCheckpoint(ctx, &syncReq{Network: outsider.l.net.Bytes(), Op: opCheckpoints, Scope: wireScope(scope)}); r.Err != errNotKept {
		t.Fatalf("the grantee answers a request for the scope's checkpoints with %q, %d checkpoints", r.Err, len(r.Checkpoints))
	}
	fresh := openNode(t, newIdent(t), w.genesis)
	ask := func(req *syncReq) (*syncResp, error) { return outsider.l.serveFrom(ctx, req, fresh.self), nil }
	if loaded, err := fresh.scopeCheckpointFrom(ctx, ask, wireScope(scope)); loaded || !errors.Is(err, errNoAnswer) {
		t.Fatalf("a new follower asking the grantee: loaded %v, %v; want no answer", loaded, err)
	}
	draftsBefore := counterValue(outsider.l.met.scopeDrafts)
	followers = append(followers, outsider)
	announce(60, 80)
	ck2 := proposeNow()
	adopted(followers[:len(followers)-1], ck2)
	time.Sleep(3 * askEvery) // the keepers adopted it within one: the grantee would have too
	if cks, err := outsider.l.CheckpointChain(ctx, scope); err != nil || len(cks) != 1 || cks[0].cid != ck.cid {
		t.Fatalf("the grantee's checkpoints of the scope: %v, %v; want only the one it loaded, %s", cks, err, ck.cid)
	}
	if d := counterValue(outsider.l.met.scopeDrafts) - draftsBefore; d != 0 {
		t.Fatalf("the grantee drafted %v checkpoints of the scope", d)
	}
	announce(80, 85) // and it still follows the scope's entries
}

// TestProposeAt: the group's first member a node reaches proposes at the
// count; every other member at twice it, so a proposer with automatic
// checkpoints off (or failing) does not leave the owner's scopes without.
func TestProposeAt(t *testing.T) {
	var ids []peer.ID
	for range 4 {
		ids = append(ids, newIdent(t).id)
	}
	slices.Sort(ids)
	up := func(down ...peer.ID) func(peer.ID) bool {
		return func(p peer.ID) bool { return !slices.Contains(down, p) }
	}
	for _, c := range []struct {
		name      string
		self      peer.ID
		connected func(peer.ID) bool
		need      int
		first     peer.ID
	}{
		{"the first member", ids[0], up(), 100, ids[0]},
		{"the second, the first reachable", ids[1], up(), 200, ids[0]},
		{"the last, the first reachable", ids[3], up(), 200, ids[0]},
		{"the second, the first unreachable", ids[1], up(ids[0]), 100, ids[1]},
		{"the third, the first two unreachable", ids[2], up(ids[0], ids[1]), 100, ids[2]},
		{"the third, only the second reachable", ids[2], up(ids[0]), 200, ids[1]},
	} {
		need, first := proposeAt(ids, c.self, c.connected, 100)
		if need != c.need || first != c.first {
			t.Errorf("%s: proposes at %d (first %s), want %d (first %s)", c.name, need, first, c.need, c.first)
		}
	}
}
