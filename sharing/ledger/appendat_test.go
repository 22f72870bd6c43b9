package ledger

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// A grantee that read under a grant reports the reads after the revoke
// arrived (a burst's claim): on its current heads the ledger refuses the
// claim (the grant is revoked there), at the position where it read it is
// valid, on its own ledger and on the owner's; a position before the grant
// gains it nothing.
func TestAppendAtEarlierPosition(t *testing.T) {
	t.Run("global", func(t *testing.T) { appendAtEarlierPosition(t) })
	t.Run("scoped", func(t *testing.T) { appendAtEarlierPosition(t, WithScopes()) })
}

func appendAtEarlierPosition(t *testing.T, opts ...GenesisOption) {
	ctx := context.Background()
	w := newWorld(t, 3, opts...)
	l := openNode(t, w.admin, w.genesis)
	es := w.setup(t, l)
	owner, grantee := w.members[1], w.members[2]
	rec := recordPayload(t, owner, "b").Record
	lg := openNode(t, grantee, w.genesis)
	for _, e := range es {
		if err := lg.Ingest(ctx, e.raw); err != nil {
			t.Fatal(err)
		}
	}
	beforeGrant := lg.Position()
	g := as(t, l, owner, TypeGrant, GrantPayload{Record: rec, Grantee: grantee.id, Envelope: envelopeFor(t, grantee, "g"), Purpose: PurposeTreatment})
	if err := lg.Ingest(ctx, g.raw); err != nil {
		t.Fatal(err)
	}
	reading := lg.Position()
	r := as(t, l, owner, TypeRevoke, RevokePayload{Record: rec, Grantee: grantee.id})
	if err := lg.Ingest(ctx, r.raw); err != nil {
		t.Fatal(err)
	}
	claim := AccessPayload{Record: rec, Version: 1, Purpose: PurposeTreatment, Time: time.Now(), Grant: g.CID()}
	if _, err := lg.Append(ctx, TypeAccess, claim); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("a claim on the heads after the revoke: %v, want unauthorized", err)
	}
	if _, err := lg.AppendAt(ctx, TypeAccess, claim, beforeGrant, time.Now()); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("a claim at a position before the grant: %v, want unauthorized", err)
	}
	e, err := lg.AppendAt(ctx, TypeAccess, claim, reading, time.Now())
	if err != nil {
		t.Fatalf("the claim where the grantee read: %v", err)
	}
	if slices.Contains(e.Parents, r.CID()) || (len(opts) > 0) != (e.Scope != "") {
		t.Fatalf("the claim names the revoke as a parent, or is on scope %q", e.Scope)
	}
	if err := l.Ingest(ctx, e.raw); err != nil {
		t.Fatalf("the owner's side refuses the claim: %v", err)
	}
	if got := l.Access(rec); len(got) != 1 || got[0].Entry != e.CID() {
		t.Fatalf("the owner's side has the claims %+v", got)
	}
}
