package ledger

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/replication"
)

// TestAuthorityPerType signs, for every entry type that confers a right, an
// entry as a member that lacks the authority to confer it, and checks every
// node rejects it as unauthorized, while the same entry signed by one that
// has the authority is applied. "What could a member who signs this alone
// obtain?" — nothing.
func TestAuthorityPerType(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 7)
	l := openNode(t, w.admin, w.genesis)
	w.setup(t, l)
	owner := w.members[1]
	rp := recordPayload(t, owner, "narrow")
	rp.Replicas = 2 // the window is two members wide
	as(t, l, owner, TypeRecordAnnounce, rp)
	rec := rp.Record
	info, _ := l.Record(rec)

	// Rank the members for the record: inWin may hold it, the others not.
	auth := l.HoldAuthority(info)
	var inWin, outWin []*ident
	for _, m := range w.members {
		if m == owner {
			continue
		}
		if auth.MayHold(m.id) {
			inWin = append(inWin, m)
		} else {
			outWin = append(outWin, m)
		}
	}
	if len(inWin) != replication.Window(2) || len(outWin) < 4 {
		t.Fatalf("window: %d in, %d out", len(inWin), len(outWin))
	}
	holder, rogue, grantee, revoked := inWin[0], outWin[0], outWin[1], outWin[2]

	grant := func(to *ident, exp time.Time) *Entry {
		return as(t, l, owner, TypeGrant, GrantPayload{Record: rec, Grantee: to.id, Envelope: envelopeFor(t, to, "g"), Purpose: PurposeTreatment, Expires: exp})
	}
	gLive := grant(grantee, time.Time{})
	gRevoked := grant(revoked, time.Time{})
	as(t, l, owner, TypeRevoke, RevokePayload{Record: rec, Grantee: revoked.id})
	gShort := grant(rogue, testEpoch.Add(time.Hour))

	// want: the entry is rejected with this reason.
	reject := func(name string, who *ident, typ string, pl any, reason string) {
		t.Helper()
		e := forge(t, l, who, typ, pl, nil)
		err := l.Ingest(ctx, e.raw)
		var re *RejectError
		if !errors.As(err, &re) || re.Reason != reason {
			t.Errorf("%s: want rejection %q, got %v", name, reason, err)
		}
	}
	accept := func(name string, who *ident, typ string, pl any) *Entry {
		t.Helper()
		e := forge(t, l, who, typ, pl, nil)
		if err := l.Ingest(ctx, e.raw); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return e
	}
	outsider := newIdent(t)

	// Membership and roles: admins only.
	reject("member.add by a member", rogue, TypeMemberAdd, MemberAddPayload{Peer: outsider.id, Roles: []string{RoleAdmin}}, "unauthorized")
	reject("member.remove by a member", rogue, TypeMemberRemove, MemberRemovePayload{Peer: owner.id}, "unauthorized")
	// Keys: only a member, and only its own (the author is the subject).
	reject("key.announce by a non-member", outsider, TypeKeyAnnounce, KeyAnnouncePayload{Public: outsider.kem.Public()}, "not-member")
	// Records: a new version only by the owner; escrow only to authorities.
	v2 := recordPayload(t, rogue, "v2 by rogue")
	v2.Prev, v2.Version = rec, 2
	reject("new version of another's record", rogue, TypeRecordAnnounce, v2, "unauthorized")
	// Grants and revokes: the owner only (emergency grants need escrow).
	reject("grant by a non-owner", rogue, TypeGrant, GrantPayload{Record: rec, Grantee: rogue.id, Envelope: envelopeFor(t, rogue, "x"), Purpose: PurposeTreatment}, "unauthorized")
	reject("emergency grant without escrow", grantee, TypeGrant, GrantPayload{Record: rec, Grantee: rogue.id, Envelope: envelopeFor(t, rogue, "x"), Purpose: PurposeEmergency, Expires: testEpoch.Add(time.Hour)}, "unauthorized")
	reject("revoke by a non-owner", rogue, TypeRevoke, RevokePayload{Record: rec, Grantee: grantee.id}, "unauthorized")
	reject("grant beyond the longest lifetime", owner, TypeGrant, GrantPayload{Record: rec, Grantee: rogue.id, Envelope: envelopeFor(t, rogue, "x"), Purpose: PurposeTreatment, Expires: testEpoch.Add(MaxGrantLifetime + time.Hour)}, "invalid-payload")

	// Read claims: only under a live grant of the claimant's own.
	claim := func(g *Entry) AccessPayload {
		return AccessPayload{Record: rec, Version: 1, Purpose: PurposeTreatment, Time: testEpoch, Grant: g.CID()}
	}
	reject("claim without a grant", holder, TypeAccess, claim(gLive), "unauthorized")
	reject("claim under a revoked grant", revoked, TypeAccess, claim(gRevoked), "unauthorized")
	late := forge(t, l, rogue, TypeAccess, claim(gShort), nil)
	late, _ = signEntry(rogue.key, l.net, TypeAccess, late.Payload, l.Heads(), HLC{Wall: uint64(testEpoch.Add(3 * time.Hour).UnixMilli())})
	if err := l.Ingest(ctx, late.raw); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("claim under an expired grant: %v", err)
	}
	accept("claim under a live grant", grantee, TypeAccess, claim(gLive))
	// A claim of several reads (a reader's node batches them): 2 or more,
	// the last between the first and the claim; one read has one encoding.
	batch := claim(gLive)
	batch.Reads, batch.Last = 15, testEpoch.Add(10*time.Second)
	accept("a claim of 15 reads under a live grant", grantee, TypeAccess, batch)
	back := batch
	back.Last = testEpoch.Add(-time.Second)
	reject("a batch whose last read is before its first", grantee, TypeAccess, back, "invalid-payload")
	ahead := batch
	ahead.Last = testEpoch.Add(24 * time.Hour)
	reject("a batch whose last read is after the claim", grantee, TypeAccess, ahead, "invalid-payload")
	one := forgeRaw(t, l, grantee, TypeAccess, &accessWire{Record: rec.Bytes(), Version: 1, Purpose: PurposeTreatment, Time: testEpoch.UnixMilli(), Grant: gLive.CID().Bytes(), Reads: 1, Last: testEpoch.UnixMilli()})
	if err := l.Ingest(ctx, one.raw); err == nil {
		t.Error("a claim of one read spelled as a batch was accepted")
	}

	// Replica receipts: "held" only from a member placement allows.
	held := ReceiptPayload{Record: rec, Status: replication.StatusHeld}
	reject("held by a member outside the window", rogue, TypeReceipt, held, "unauthorized")
	reject("held by a grantee", grantee, TypeReceipt, held, "unauthorized")
	reject("held by a revoked grantee", revoked, TypeReceipt, held, "unauthorized")
	accept("declined by anyone", rogue, TypeReceipt, ReceiptPayload{Record: rec, Status: replication.StatusDeclined, Reason: "full"})
	accept("held in the window", holder, TypeReceipt, held)

	// Attested reads: only by the owner or a holder, about a grantee.
	served := ServedPayload{Record: rec, Reader: grantee.id, Grant: gLive.CID(), Reads: 1, First: testEpoch, Last: testEpoch}
	reject("served by a non-holder", rogue, TypeServed, served, "unauthorized")
	badReader := served
	badReader.Reader = rogue.id
	reject("served to a reader without that grant", holder, TypeServed, badReader, "unauthorized")
	accept("served by a holder", holder, TypeServed, served)
	accept("served by the owner", owner, TypeServed, served)

	// Named holders: only the owner names, never a grantee.
	another := outWin[3]
	reject("assign by a non-owner", rogue, TypeAssign, AssignPayload{Record: rec, Holders: []peer.ID{another.id}}, "unauthorized")
	reject("assign of a grantee", owner, TypeAssign, AssignPayload{Record: rec, Holders: []peer.ID{grantee.id}}, "invalid-payload")
	reject("held before it is named", another, TypeReceipt, held, "unauthorized")
	accept("assign by the owner", owner, TypeAssign, AssignPayload{Record: rec, Holders: []peer.ID{another.id}})
	accept("held once named", another, TypeReceipt, held)

	if err := l.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	if s := l.Served(rec); len(s) != 2 || s[0].Reader != grantee.id {
		t.Fatalf("served: %+v", s)
	}
}
