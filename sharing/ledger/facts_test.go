package ledger

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// TestFactsAndLabel: a grant's sealed label reaches state and the
// grantee; a label beyond MaxGrantLabel is refused; GrantOf, RevokeOf,
// AccessOf and ServedOf decode what the entries say, and nothing of
// another type.
func TestFactsAndLabel(t *testing.T) {
	w := newWorld(t, 3)
	l := openNode(t, w.admin, w.genesis)
	w.setup(t, l)
	owner, grantee := w.members[1], w.members[2]
	rec := recordPayload(t, owner, "b").Record
	label := bytes.Repeat([]byte{7}, 60)
	exp := testEpoch.Add(72 * time.Hour)
	g := as(t, l, owner, TypeGrant, GrantPayload{Record: rec, Grantee: grantee.id, Envelope: envelopeFor(t, grantee, "l"),
		Expires: exp, Purpose: PurposeResearch, Label: label})
	if gs := l.Grants(rec); len(gs) != 1 || !bytes.Equal(gs[0].Label, label) {
		t.Fatalf("grants: %+v", gs)
	}
	gf, ok := GrantOf(g)
	if !ok || gf.Record != rec || gf.Grantee != grantee.id || gf.Grantor != owner.id || gf.Purpose != PurposeResearch ||
		!gf.Expires.Equal(exp) || !bytes.Equal(gf.Label, label) || gf.Entry != g.CID() {
		t.Fatalf("GrantOf: %+v %v", gf, ok)
	}
	long := forge(t, l, owner, TypeGrant, GrantPayload{Record: rec, Grantee: grantee.id, Envelope: envelopeFor(t, grantee, "l2"),
		Purpose: PurposeTreatment, Label: make([]byte, MaxGrantLabel+1)}, nil)
	if err := l.Ingest(context.Background(), long.raw); !errors.As(err, new(*RejectError)) {
		t.Fatalf("grant with a %d-byte label: %v", MaxGrantLabel+1, err)
	}

	a := as(t, l, grantee, TypeAccess, AccessPayload{Record: rec, Version: 1, Purpose: PurposeResearch, Time: testEpoch, Grant: g.CID()})
	if af, ok := AccessOf(a); !ok || af.Record != rec || af.Reader != grantee.id || af.Grant != g.CID() || af.Purpose != PurposeResearch || af.Entry != a.CID() {
		t.Fatalf("AccessOf: %+v %v", af, ok)
	}
	s := as(t, l, owner, TypeServed, ServedPayload{Record: rec, Reader: grantee.id, Grant: g.CID(), Reads: 2, Blocks: 5, First: testEpoch, Last: testEpoch})
	if sf, ok := ServedOf(s); !ok || sf.Server != owner.id || sf.Reader != grantee.id || sf.Reads != 2 || sf.Blocks != 5 || sf.Grant != g.CID() {
		t.Fatalf("ServedOf: %+v %v", sf, ok)
	}
	r := as(t, l, owner, TypeRevoke, RevokePayload{Record: rec, Grantee: grantee.id})
	if rf, ok := RevokeOf(r); !ok || rf.Record != rec || rf.Grantee != grantee.id {
		t.Fatalf("RevokeOf: %+v %v", rf, ok)
	}
	if _, ok := GrantOf(r); ok {
		t.Error("GrantOf decoded a revoke")
	}
	if _, ok := RevokeOf(g); ok {
		t.Error("RevokeOf decoded a grant")
	}
	if _, ok := AccessOf(s); ok {
		t.Error("AccessOf decoded an attestation")
	}
	if _, ok := ServedOf(a); ok {
		t.Error("ServedOf decoded a claim")
	}
}
