package ledger

import (
	"bytes"
	"context"
	"fmt"
	"github.com/libp2p/go-libp2p/core/network"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/medmesh/medmesh/sharing/replication"
)

// newScopedMesh starts n ledgers of a scoped network on a mocknet with
// real GossipSub, after node 0 admitted every member and every key was
// announced (global entries only).
func newScopedMesh(t *testing.T, n int) (*world, mocknet.Mocknet, []*meshNode) {
	t.Helper()
	return newScopedMeshOpts(t, n, nil)
}

// newScopedMeshOpts is newScopedMesh with node i's ledger options changed
// by ledgerOpts(i, &o) (ledgerOpts may be nil).
func newScopedMeshOpts(t *testing.T, n int, ledgerOpts func(int, *Options)) (*world, mocknet.Mocknet, []*meshNode) {
	t.Helper()
	w := newWorld(t, n, WithScopes())
	mn, nodes := startMeshOpts(t, w, n, 11000, 3*time.Minute, 500*time.Millisecond, func(l *Ledger) {
		for i, m := range w.members {
			if i > 0 {
				as(t, l, w.admin, TypeMemberAdd, MemberAddPayload{Peer: m.id, Org: fmt.Sprintf("clinic %d", i)})
			}
		}
		for _, m := range w.members {
			as(t, l, m, TypeKeyAnnounce, KeyAnnouncePayload{Public: m.kem.Public()})
		}
	}, nil, ledgerOpts)
	return w, mn, nodes
}

// scopeCounts counts the entries a ledger stores per scope.
func scopeCounts(t *testing.T, l *Ledger) map[string]int {
	t.Helper()
	out := map[string]int{}
	err := l.EachEntry(context.Background(), func(c cid.Cid) error {
		l.mu.Lock()
		n, err := l.core.d.get(context.Background(), c)
		l.mu.Unlock()
		if err != nil || n == nil {
			return fmt.Errorf("entry %s: %v", c, err)
		}
		out[scopeName(n.scope)]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitScope waits until the nodes hold the same entries of scope s and
// reach the same ScopeDigest.
func waitScope(t *testing.T, s string, nodes []*meshNode, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d0, n0, err := nodes[0].l.ScopeDigest(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		same := true
		var last string
		for _, nd := range nodes[1:] {
			d, n, err := nd.l.ScopeDigest(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			if n != n0 || !bytes.Equal(d, d0) {
				same, last = false, fmt.Sprintf("%s: %d entries here, %d on %s", s, n, n0, nodes[0].who.id)
				break
			}
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("scope did not converge: %s", last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestScopesSixNodes: six ledgers of a scoped network. One owner announces
// records, grants some to a member of its replica group, which reads them.
// The node outside the owner's group, neither grantee nor holder, stores
// none of the owner's entries; the global heads and digest are the same on
// all six; the owner scope's followers (the group, the grantee) reach the
// same scope digest, the audit scope's (owner and group) too, with every
// claim; a node granted a record later follows the owner scope from then
// on and catches it up.
func TestScopesSixNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("networked")
	}
	ctx := context.Background()
	w, mn, nodes := newScopedMesh(t, 6)
	owner := nodes[1]
	var rms []replication.Member
	for _, m := range owner.l.Members() {
		rms = append(rms, replication.Member{Peer: m.Peer, Org: m.Org})
	}
	group := replication.Group(owner.who.id, rms)
	var grantee, outsider *meshNode
	var followers []*meshNode
	for _, nd := range nodes {
		switch {
		case nd == owner:
		case replication.Has(group, nd.who.id):
			followers = append(followers, nd)
			if grantee == nil {
				grantee = nd
			}
		default:
			outsider = nd
		}
	}
	if grantee == nil || outsider == nil || len(followers) != replication.GroupSize {
		t.Fatalf("group %v of 5: want %d", group, replication.GroupSize)
	}
	ownerScope, auditScope := OwnerScope(owner.who.id), AuditScope(owner.who.id)
	for _, nd := range append(followers, owner) {
		if !nd.l.Follows(ownerScope) || !nd.l.Follows(auditScope) {
			t.Fatalf("%s does not follow %s's scopes: %v", nd.who.id, owner.who.id, nd.l.Followed())
		}
	}
	if outsider.l.Follows(ownerScope) {
		t.Fatalf("the outsider follows %s", ownerScope)
	}
	const records, reads = 12, 20
	var grants []*Entry
	for i := 0; i < records; i++ {
		rp := recordPayload(t, owner.who, fmt.Sprintf("o%d", i))
		if _, err := owner.l.Append(ctx, TypeRecordAnnounce, rp); err != nil {
			t.Fatal(err)
		}
		if i < 3 {
			g, err := owner.l.Append(ctx, TypeGrant, GrantPayload{Record: rp.Record, Grantee: grantee.who.id,
				Envelope: envelopeFor(t, grantee.who, "g"), Purpose: PurposeTreatment})
			if err != nil {
				t.Fatal(err)
			}
			grants = append(grants, g)
		}
	}
	waitScope(t, ownerScope, append([]*meshNode{owner}, followers...), time.Minute)
	for i := 0; i < reads; i++ {
		rec := recordPayload(t, owner.who, fmt.Sprintf("o%d", i%3)).Record
		if _, err := grantee.l.Append(ctx, TypeAccess, AccessPayload{Record: rec, Version: 1, Purpose: PurposeTreatment,
			Time: testEpoch, Grant: grants[i%3].CID()}); err != nil {
			t.Fatal(err)
		}
	}
	// The audit scope reaches the owner and its group: every claim.
	waitScope(t, auditScope, append([]*meshNode{owner}, followers...), time.Minute)
	if got := scopeCounts(t, owner.l)[auditScope]; got != reads {
		t.Fatalf("owner holds %d claims, want %d", got, reads)
	}
	// The global scope: the same heads and digest everywhere.
	waitConverged(t, nodes, time.Minute)
	ownerEntries := records + len(grants) + reads
	counts := scopeCounts(t, outsider.l)
	if got := counts[ownerScope] + counts[auditScope]; got*5 >= ownerEntries {
		t.Fatalf("the outsider stores %d of the owner's %d entries: %v", got, ownerEntries, counts)
	}
	t.Logf("owner's entries %d; outsider stores %v", ownerEntries, counts)
	// A sync of the owner's scope started on a node that does not follow
	// it (one under way as a change of membership moved it out of the
	// group, or one a peer joining the scope's topic triggers) brings
	// nothing.
	if n := outsider.l.tr.Load(); n != nil {
		if err := outsider.l.syncScope(ctx, n.h, owner.who.id, wireScope(ownerScope)); err != nil {
			t.Fatal(err)
		}
	}
	if after := scopeCounts(t, outsider.l); after[ownerScope] != counts[ownerScope] || after[auditScope] != counts[auditScope] {
		t.Fatalf("a sync of a scope the outsider does not follow stored entries: %v, before %v", after, counts)
	}

	// The outsider is granted a record while it misses its inbox (as if it
	// were offline): the next global sync's answer names the owner scope
	// (syncResp.Follow), so it follows the scope and catches it up.
	if n := outsider.l.tr.Load(); n != nil {
		name := InboxTopicName(outsider.l.net, outsider.who.id)
		n.topicMu.Lock()
		n.mu.Lock()
		if tp := n.topics[name]; tp != nil && tp.sub != nil {
			tp.sub.Cancel()
			tp.sub = nil
			_ = n.ps.UnregisterTopicValidator(name)
			tp.validator = false
		}
		n.mu.Unlock()
		n.topicMu.Unlock()
	}
	// Nor is it connected to the owner: the owner's announce dials it.
	if err := mn.DisconnectPeers(owner.who.id, outsider.who.id); err != nil {
		t.Fatal(err)
	}
	rec := recordPayload(t, owner.who, "o5").Record
	if _, err := owner.l.Append(ctx, TypeGrant, GrantPayload{Record: rec, Grantee: outsider.who.id,
		Envelope: envelopeFor(t, outsider.who, "g"), Purpose: PurposeTreatment}); err != nil {
		t.Fatal(err)
	}
	if hint := owner.l.serveFrom(ctx, &syncReq{Network: owner.l.net.Bytes(), Op: opDiff, Max: 1}, outsider.who.id); len(hint.Follow) != 1 || hint.Follow[0] != ownerScope {
		t.Fatalf("the owner's sync answer to the outsider names %v", hint.Follow)
	}
	deadline := time.Now().Add(time.Minute)
	for !outsider.l.Follows(ownerScope) {
		if time.Now().After(deadline) {
			t.Fatalf("the outsider does not follow %s after a grant: %v", ownerScope, outsider.l.Followed())
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitScope(t, ownerScope, []*meshNode{owner, outsider, grantee}, time.Minute)
	if gs := outsider.l.Grants(rec); len(gs) != 1 || gs[0].Grantee != outsider.who.id {
		t.Fatalf("the outsider sees grants %v", gs)
	}
	_ = w

}

// TestScopeTopicValidator: the GossipSub validator of a scope's topic
// rejects an entry of another scope (a sender that publishes on the wrong
// topic is penalized), ignores one of a scope this node does not follow,
// and rejects a forged one on a followed scope as on the global topic.
func TestScopeTopicValidator(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 3, WithScopes())
	l := openNode(t, w.admin, w.genesis)
	as(t, l, w.admin, TypeKeyAnnounce, KeyAnnouncePayload{Public: w.admin.kem.Public()})
	as(t, l, w.admin, TypeMemberOrg, MemberOrgPayload{Peer: w.admin.id, Org: "admin"})
	for i, m := range w.members[1:] {
		as(t, l, w.admin, TypeMemberAdd, MemberAddPayload{Peer: m.id, Org: fmt.Sprintf("clinic %d", i)})
		as(t, l, m, TypeKeyAnnounce, KeyAnnouncePayload{Public: m.kem.Public()})
	}
	owner, other := w.members[1], w.members[2]
	rec := as(t, l, owner, TypeRecordAnnounce, recordPayload(t, owner, "v"))
	if rec.Scope != OwnerScope(owner.id) {
		t.Fatalf("announcement on scope %q", rec.Scope)
	}
	msg := func(e *Entry) *pubsub.Message { return &pubsub.Message{Message: &pb.Message{Data: e.Bytes()}} }
	grant := forge(t, l, owner, TypeGrant, GrantPayload{Record: recordPayload(t, owner, "v").Record, Grantee: other.id,
		Envelope: envelopeFor(t, other, "g"), Purpose: PurposeTreatment}, nil)
	if got := l.validate(ctx, other.id, msg(grant), "", false); got != pubsub.ValidationReject {
		t.Fatalf("an owner-scope entry on the global topic: %v", got)
	}
	if got := l.validate(ctx, other.id, msg(grant), AuditScope(owner.id), false); got != pubsub.ValidationReject {
		t.Fatalf("an owner-scope entry on an audit topic: %v", got)
	}
	// This node (the admin) is in the owner's group in a three-member
	// network: it follows owner/<owner>.
	if !l.Follows(OwnerScope(owner.id)) {
		t.Fatalf("follows %v", l.Followed())
	}
	forged := forge(t, l, other, TypeGrant, GrantPayload{Record: recordPayload(t, owner, "v").Record, Grantee: other.id,
		Envelope: envelopeFor(t, other, "g"), Purpose: PurposeTreatment}, nil)
	if forged.Scope != OwnerScope(owner.id) {
		t.Fatalf("forged grant on %q", forged.Scope)
	}
	if got := l.validate(ctx, other.id, msg(forged), OwnerScope(owner.id), false); got != pubsub.ValidationReject {
		t.Fatalf("a grant by a non-owner on the owner's topic: %v", got)
	}
	if got := l.validate(ctx, other.id, msg(grant), OwnerScope(owner.id), false); got != pubsub.ValidationAccept {
		t.Fatalf("the owner's grant on its topic: %v", got)
	}
	// A scope this node does not follow: ignored, not stored. Among
	// enough members, some owner's replica group leaves the admin out.
	var outside *ident
	for i := 0; outside == nil; i++ {
		if i > 50 {
			t.Fatal("the admin is in every owner's replica group")
		}
		m := newIdent(t)
		as(t, l, w.admin, TypeMemberAdd, MemberAddPayload{Peer: m.id, Org: fmt.Sprintf("org %d", i)})
		as(t, l, m, TypeKeyAnnounce, KeyAnnouncePayload{Public: m.kem.Public()})
		if _, _, err := l.refreshFollow(ctx); err != nil {
			t.Fatal(err)
		}
		if len(l.Members()) > replication.GroupSize+2 && !l.Follows(OwnerScope(m.id)) {
			outside = m
		}
	}
	e := forge(t, l, outside, TypeRecordAnnounce, recordPayload(t, outside, "x"), nil)
	if got := l.validate(ctx, outside.id, msg(e), OwnerScope(outside.id), false); got != pubsub.ValidationIgnore {
		t.Fatalf("an entry of a scope this node does not follow: %v", got)
	}
	if ok, _ := l.core.Has(ctx, e.CID()); ok {
		t.Fatal("stored an entry of a scope it does not follow")
	}
}

// TestAnnounceRetries: an announce to a peer that cannot be reached at
// the moment (the only prompt a grantee gets to follow its grantor's
// scope, besides a sync hint that may take minutes in a large network) is
// tried again, and succeeds once the peer is reachable; a burst of them
// to one peer runs one at a time.
func TestAnnounceRetries(t *testing.T) {
	if testing.Short() {
		t.Skip("networked")
	}
	_, mn, nodes := newScopedMesh(t, 3)
	a, b := nodes[0], nodes[1]
	if err := mn.UnlinkPeers(a.h.ID(), b.h.ID()); err != nil {
		t.Fatal(err)
	}
	if err := mn.DisconnectPeers(a.h.ID(), b.h.ID()); err != nil {
		t.Fatal(err)
	}
	n := a.l.tr.Load()
	scope := wireScope(OwnerScope(a.who.id))
	if err := a.l.announce(n, b.who.id, scope); err == nil {
		t.Fatal("an announce to an unreachable peer succeeded")
	}
	done := make(chan error, 1)
	go func() { done <- a.l.announceRetrying(n, b.who.id, scope) }()
	// A burst of entries for the unreachable peer: one announce runs at a
	// time, and one more after it carries what the burst added.
	for range 20 {
		a.l.announceLater(n, b.who.id, scope, "test")
	}
	n.mu.Lock()
	pending, again := len(n.announcing), n.announcing[syncKey{b.who.id, scope}]
	n.mu.Unlock()
	if pending != 1 || !again {
		t.Fatalf("a burst of 20 announces to one peer: %d in flight (again %v), want 1 and one more", pending, again)
	}
	time.Sleep(1500 * time.Millisecond)
	if _, err := mn.LinkPeers(a.h.ID(), b.h.ID()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the announce after the peer became reachable: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the announce was not retried")
	}
	deadline := time.Now().Add(time.Minute)
	for {
		n.mu.Lock()
		pending = len(n.announcing)
		n.mu.Unlock()
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the burst's announces did not end once the peer was reachable")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFollowerKeepsTheOwnerConnected: a follower of a scope that lost its
// connection to the scope's owner, while still connected to other
// followers, connects to the owner again: the owner links every follower
// into one topic mesh (followers joined only through one another would
// see the owner's entries only when a sync happened to cross over).
func TestFollowerKeepsTheOwnerConnected(t *testing.T) {
	if testing.Short() {
		t.Skip("networked")
	}
	_, mn, nodes := newScopedMesh(t, 6)
	owner := nodes[1]
	scope := OwnerScope(owner.who.id)
	var f *meshNode
	others := 0
	for _, nd := range nodes {
		if nd != owner && nd.l.Follows(scope) {
			if f == nil {
				f = nd
			} else {
				others++
			}
		}
	}
	if f == nil || others == 0 {
		t.Fatalf("want two followers of %s besides its owner", scope)
	}
	// Drop the connection; the follower stays connected to the other
	// followers. It must dial the owner again: a connection that was not
	// there before the drop.
	var old []network.Conn
	deadline := time.Now().Add(30 * time.Second)
	for len(old) == 0 && time.Now().Before(deadline) {
		old = f.h.Network().ConnsToPeer(owner.who.id)
		time.Sleep(50 * time.Millisecond)
	}
	if len(old) == 0 {
		t.Fatal("the follower never connected to the owner")
	}
	if err := mn.DisconnectPeers(f.who.id, owner.who.id); err != nil {
		t.Fatal(err)
	}
	// The sync loop runs every 500 ms here.
	deadline = time.Now().Add(10 * time.Second)
	for {
		fresh := false
		for _, c := range f.h.Network().ConnsToPeer(owner.who.id) {
			if !slices.Contains(old, c) {
				fresh = true
			}
		}
		if fresh {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a follower of %s connected to %d other followers did not reconnect to the owner in 10 s", scope, others)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
