package ledger

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestLeaveScopes: a node granted a record of another owner follows the
// owner's scope; once the grant is revoked (and the scope was followed for
// unfollowGrace) it leaves it, no peer's sync hint sends it back, and a new
// grant brings it back.
func TestLeaveScopes(t *testing.T) {
	if testing.Short() {
		t.Skip("networked")
	}
	ctx := context.Background()
	_, _, nodes := newScopedMesh(t, 6)
	owner := nodes[1]
	scope := OwnerScope(owner.who.id)
	var outsider *meshNode
	for _, nd := range nodes {
		if nd != owner && !nd.l.Follows(scope) {
			outsider = nd
		}
	}
	if outsider == nil {
		t.Fatal("every node follows the owner's scope")
	}
	rp := recordPayload(t, owner.who, "leave")
	if _, err := owner.l.Append(ctx, TypeRecordAnnounce, rp); err != nil {
		t.Fatal(err)
	}
	grant := func() {
		t.Helper()
		if _, err := owner.l.Append(ctx, TypeGrant, GrantPayload{Record: rp.Record, Grantee: outsider.who.id,
			Envelope: envelopeFor(t, outsider.who, "g"), Purpose: PurposeTreatment}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for !outsider.l.Follows(scope) || len(outsider.l.Grants(rp.Record)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the grantee does not follow %s or see its grant", scope)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// why says why the outsider stores the owner's scope, and checks its
	// counters against its log.
	why := func() string {
		t.Helper()
		checkStoredByScope(t, outsider.l)
		by, err := outsider.l.StoredByScope(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, ss := range by {
			if ss.Scope == scope {
				if ss.Followed != outsider.l.Follows(scope) {
					t.Fatalf("%s followed %v, Follows %v", scope, ss.Followed, outsider.l.Follows(scope))
				}
				return ss.Why
			}
		}
		return ""
	}
	leave := func() []string {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for len(outsider.l.Behind()) > 0 { // caught up, or it leaves nothing
			if time.Now().After(deadline) {
				t.Fatalf("behind on %v", outsider.l.Behind())
			}
			time.Sleep(50 * time.Millisecond)
		}
		left, err := outsider.l.leaveScopes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return left
	}
	age := func() { // as if followed for longer than unfollowGrace
		t.Helper()
		b, err := outsider.l.store.Batch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Put(pFollow+scope, followedAt(time.Now().Add(-2*unfollowGrace))); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if w := why(); w != "" {
		t.Fatalf("the outsider stores the owner's scope (%s) before any grant", w)
	}
	grant()
	if w := why(); w != WhyGrantee {
		t.Fatalf("the grantee stores the owner's scope as %q", w)
	}
	by, err := owner.l.StoredByScope(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if by[0].Why != WhyGlobal || by[0].Scope != ScopeGlobal {
		t.Fatalf("the owner's scopes do not start with the global scope: %+v", by)
	}
	for _, ss := range by {
		if _, o, _ := ParseScope(ss.Scope); o == owner.who.id && ss.Why != WhyOwn {
			t.Fatalf("the owner stores its own scope %s as %q", ss.Scope, ss.Why)
		}
	}
	for _, nd := range nodes {
		if nd == owner || nd == outsider || !nd.l.Follows(scope) {
			continue
		}
		by, err := nd.l.StoredByScope(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, ss := range by {
			if ss.Scope == scope && ss.Why != WhyGroup {
				t.Fatalf("a group member stores %s as %q", scope, ss.Why)
			}
		}
	}
	if left := leave(); len(left) != 0 {
		t.Fatalf("left %v within the grace", left)
	}
	age()
	if left := leave(); len(left) != 0 {
		t.Fatalf("left %v with a live grant", left)
	}
	if _, err := owner.l.Append(ctx, TypeRevoke, RevokePayload{Record: rp.Record, Grantee: outsider.who.id}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for len(outsider.l.Grants(rp.Record)) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the revoke did not reach the grantee")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if w := why(); w != WhyLeaving {
		t.Fatalf("after the revoke the outsider stores the owner's scope as %q", w)
	}
	if left := leave(); !slices.Equal(left, []string{scope}) || outsider.l.Follows(scope) {
		t.Fatalf("after the revoke: left %v, follows %v", left, outsider.l.Followed())
	}
	if w := why(); w != WhyLeft {
		t.Fatalf("after leaving the outsider stores the owner's scope as %q", w)
	}
	// No peer sends it back: the owner's sync answer names no scope.
	if hint := owner.l.serveFrom(ctx, &syncReq{Network: owner.l.net.Bytes(), Op: opDiff, Max: 1}, outsider.who.id); len(hint.Follow) != 0 {
		t.Fatalf("the owner's sync answer names %v after the revoke", hint.Follow)
	}
	time.Sleep(3 * time.Second) // a few sync intervals
	if outsider.l.Follows(scope) {
		t.Fatal("followed again without a new grant")
	}
	if _, ok := owner.l.hints.get(outsider.who.id, time.Now()); !ok {
		t.Fatal("the owner did not keep its answer's hints for the outsider")
	}
	// A new grant brings it back, and the owner's kept (empty) hints for
	// the outsider are worked out again.
	grant()
	if hint := owner.l.serveFrom(ctx, &syncReq{Network: owner.l.net.Bytes(), Op: opDiff, Max: 1}, outsider.who.id); !slices.Equal(hint.Follow, []string{scope}) {
		t.Fatalf("the owner's sync answer names %v after a new grant", hint.Follow)
	}
}
