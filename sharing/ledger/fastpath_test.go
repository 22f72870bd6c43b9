package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// fastPathStream builds a stream of valid and invalid entries of every
// built-in type on src: mostly on src's heads (the fast path), some on older
// heads (concurrent, the slow path). It returns the entries, the peers and
// records they touch.
func fastPathStream(t *testing.T) ([]*Entry, *world, []peer.ID, []cid.Cid) {
	t.Helper()
	ctx := context.Background()
	w := newWorld(t, 4)
	src := openNode(t, w.admin, w.genesis)
	admin, a, b, c := w.members[0], w.members[1], w.members[2], w.members[3]
	outsider := newIdent(t)
	var out []*Entry
	step := func(who *ident, typ string, pl any, parents []cid.Cid) *Entry {
		e := forge(t, src, who, typ, pl, parents)
		if err := src.Ingest(ctx, e.raw); err != nil && !isReject(err) {
			t.Fatalf("%s: %v", typ, err)
		}
		out = append(out, e)
		return e
	}
	on := func(who *ident, typ string, pl any) *Entry { return step(who, typ, pl, nil) }
	oldKeyC := newIdent(t)
	recA := recordPayload(t, a, "a")
	recA.Escrow = []EscrowEnvelope{{Authority: b.id, Envelope: envelopeFor(t, b, "escrow a")}}
	recBad := recordPayload(t, a, "bad")
	recBad.Escrow = []EscrowEnvelope{{Authority: c.id, Envelope: envelopeFor(t, c, "escrow bad")}}
	recA2 := recordPayload(t, a, "a2")
	recA2.Prev, recA2.Version = recA.Record, 2
	recC2 := recordPayload(t, c, "c2")
	recC2.Prev, recC2.Version = recA.Record, 2
	grant := func(who, to *ident, rec cid.Cid, env []byte, purpose string, exp time.Time) GrantPayload {
		return GrantPayload{Record: rec, Grantee: to.id, Envelope: env, Purpose: purpose, Expires: exp}
	}
	access := AccessPayload{Record: recA.Record, Version: 1, Purpose: PurposeTreatment, Time: testEpoch} // names no grant

	on(admin, TypeMemberAdd, MemberAddPayload{Peer: a.id, Org: "clinic a"})
	on(admin, TypeMemberAdd, MemberAddPayload{Peer: b.id, Org: "clinic b", Roles: []string{RoleEmergency}})
	on(admin, TypeMemberAdd, MemberAddPayload{Peer: c.id, Org: "clinic c"})
	on(a, TypeMemberAdd, MemberAddPayload{Peer: outsider.id}) // non-admin
	for _, m := range []*ident{admin, a, b} {
		on(m, TypeKeyAnnounce, KeyAnnouncePayload{Public: m.kem.Public()})
	}
	on(c, TypeKeyAnnounce, KeyAnnouncePayload{Public: oldKeyC.kem.Public()})
	on(c, TypeKeyAnnounce, KeyAnnouncePayload{Public: c.kem.Public()}) // rotation
	on(outsider, TypeAccess, access)                                   // not a member
	on(a, TypeRecordAnnounce, recA)
	on(a, TypeRecordAnnounce, recBad)                                                                       // escrow to a non-authority
	on(c, TypeRecordAnnounce, recordPayload(t, c, "a"))                                                     // ID already announced
	on(c, TypeRecordAnnounce, recC2)                                                                        // new version of another's record
	on(a, TypeRecordAnnounce, recA2)                                                                        // new version by the owner
	on(c, TypeAccess, access)                                                                               // before any grant
	on(a, TypeGrant, grant(a, c, recA.Record, envelopeFor(t, oldKeyC, "g"), PurposeTreatment, time.Time{})) // old key
	gC := on(a, TypeGrant, grant(a, c, recA.Record, envelopeFor(t, c, "g"), PurposeTreatment, time.Time{}))
	claimC := AccessPayload{Record: recA.Record, Version: 1, Purpose: PurposeTreatment, Time: testEpoch, Grant: gC.CID()}
	on(c, TypeAccess, claimC)                                                                                     // under its grant
	on(b, TypeAccess, AccessPayload{Record: recA.Record, Version: 1, Purpose: PurposeTreatment, Grant: gC.CID()}) // someone else's grant
	on(c, TypeAccess, AccessPayload{Record: recA.Record, Version: 2, Purpose: PurposeTreatment, Grant: gC.CID()}) // wrong version
	on(a, TypeAccess, AccessPayload{Record: recA.Record, Version: 1, Purpose: PurposeTreatment, Grant: gC.CID()}) // the owner
	on(c, TypeReceipt, ReceiptPayload{Record: recA.Record, Status: "held"})                                       // a grantee never holds
	on(a, TypeReceipt, ReceiptPayload{Record: recA.Record, Status: "held"})                                       // nor the owner
	on(b, TypeReceipt, ReceiptPayload{Record: recA.Record, Status: "declined", Reason: "disk full"})              // any member may decline
	on(b, TypeReceipt, ReceiptPayload{Record: recA.Record, Status: "held"})                                       // in the window
	served := ServedPayload{Record: recA.Record, Reader: c.id, Grant: gC.CID(), Reads: 2, Blocks: 5, First: testEpoch, Last: testEpoch}
	on(b, TypeServed, served)                                                                                                             // a holder
	on(admin, TypeServed, served)                                                                                                         // not a holder
	on(b, TypeServed, ServedPayload{Record: recA.Record, Reader: admin.id, Grant: gC.CID(), Reads: 1, First: testEpoch, Last: testEpoch}) // not the grantee
	on(a, TypeAssign, AssignPayload{Record: recA.Record, Holders: []peer.ID{admin.id}})
	on(c, TypeAssign, AssignPayload{Record: recA.Record, Holders: []peer.ID{admin.id}})                              // not the owner
	on(a, TypeAssign, AssignPayload{Record: recA.Record, Holders: []peer.ID{c.id}})                                  // a grantee
	on(a, TypeGrant, grant(a, outsider, recA.Record, envelopeFor(t, outsider, "g"), PurposeTreatment, time.Time{}))  // non-member grantee
	on(b, TypeGrant, grant(b, c, recA.Record, envelopeFor(t, c, "e"), PurposeEmergency, testEpoch.Add(time.Hour)))   // escrowed authority
	on(c, TypeGrant, grant(c, c, recA.Record, envelopeFor(t, c, "e"), PurposeEmergency, testEpoch.Add(time.Hour)))   // not an authority
	on(b, TypeGrant, grant(b, c, recA2.Record, envelopeFor(t, c, "e2"), PurposeEmergency, testEpoch.Add(time.Hour))) // not escrowed to b
	on(c, TypeRevoke, RevokePayload{Record: recA.Record, Grantee: c.id})                                             // non-owner
	on(a, TypeRevoke, RevokePayload{Record: recA.Record, Grantee: c.id})
	on(b, TypeReceipt, ReceiptPayload{Record: recA.Record, Status: "held"})
	on(b, TypeReceipt, ReceiptPayload{Record: recA.Record, Status: "lost"}) // bad status
	on(admin, TypeMemberRemove, MemberRemovePayload{Peer: c.id})
	on(c, TypeAccess, claimC) // removed (and revoked)
	on(admin, TypeMemberAdd, MemberAddPayload{Peer: c.id, Org: "clinic c", Roles: []string{RoleEmergency}})
	on(c, TypeAccess, claimC) // re-admitted, still revoked
	gB := on(a, TypeGrant, grant(a, b, recA2.Record, envelopeFor(t, b, "gb"), PurposeResearch, testEpoch.Add(time.Hour)))
	claimB := AccessPayload{Record: recA2.Record, Version: 2, Purpose: PurposeResearch, Time: testEpoch, Grant: gB.CID()}
	// Concurrent entries: on heads that are no longer current.
	fork := src.Heads()
	on(admin, TypeMemberRemove, MemberRemovePayload{Peer: b.id})
	step(b, TypeAccess, claimB, fork)                                             // did not see its removal: valid
	step(a, TypeRevoke, RevokePayload{Record: recA2.Record, Grantee: b.id}, fork) // concurrent with the claim
	step(b, TypeServed, served, fork)                                             // a holder that did not see its removal
	step(a, TypeKeyAnnounce, KeyAnnouncePayload{Public: outsider.kem.Public()}, fork)
	step(c, TypeRecordAnnounce, recordPayload(t, c, "c"), fork)
	on(b, TypeAccess, claimB)                                                                                 // saw its removal
	on(admin, TypeGrant, grant(admin, a, recA.Record, envelopeFor(t, a, "x"), PurposeTreatment, time.Time{})) // non-owner
	on(a, TypeGrant, grant(a, a, recA.Record, envelopeFor(t, a, "x"), PurposeTreatment, time.Time{}))         // a's key rotated concurrently
	on(a, TypeGrant, grant(a, a, recA.Record, envelopeFor(t, outsider, "x"), PurposeTreatment, time.Time{}))
	on(c, TypeGrant, grant(c, admin, recordPayload(t, c, "c").Record, envelopeFor(t, admin, "y"), PurposeResearch, time.Time{}))
	on(c, TypeRecordAnnounce, recordPayload(t, c, "c")) // announced concurrently, now in the past
	on(admin, TypeMemberAdd, MemberAddPayload{Peer: b.id, Roles: []string{RoleAdmin, RoleEmergency}})
	on(b, TypeMemberAdd, MemberAddPayload{Peer: outsider.id}) // b is an admin now
	on(outsider, TypeKeyAnnounce, KeyAnnouncePayload{Public: outsider.kem.Public()})

	peers := []peer.ID{admin.id, a.id, b.id, c.id, outsider.id, oldKeyC.id}
	recs := []cid.Cid{recA.Record, recA2.Record, recBad.Record, recC2.Record, recordPayload(t, c, "c").Record}
	return out, w, peers, recs
}

func verdict(err error) string {
	switch {
	case err == nil:
		return "applied"
	case errors.Is(err, ErrPending):
		return "pending"
	default:
		return reasonOf(err)
	}
}

// compareViews checks that the current-state view (the fast path) answers
// every question exactly as the causal view over all applied entries.
func compareViews(t *testing.T, l *Ledger, peers []peer.ID, recs []cid.Cid) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	ctx := context.Background()
	fast := &causalView{ctx: ctx, d: l.core.d, t: l.core.d.t, cur: true}
	slow := &causalView{ctx: ctx, d: l.core.d, t: l.core.d.t}
	for _, p := range peers {
		if f, s := fast.IsMember(p), slow.IsMember(p); f != s {
			t.Fatalf("IsMember(%s): fast %v, slow %v", p, f, s)
		}
		for _, r := range []string{RoleAdmin, RoleEmergency} {
			if f, s := fast.HasRole(p, r), slow.HasRole(p, r); f != s {
				t.Fatalf("HasRole(%s, %s): fast %v, slow %v", p, r, f, s)
			}
		}
		fp, fid, fok := fast.KEMKey(p)
		sp, sid, sok := slow.KEMKey(p)
		if !bytes.Equal(fp, sp) || fid != sid || fok != sok {
			t.Fatalf("KEMKey(%s) differs", p)
		}
	}
	for _, r := range recs {
		fi, fok := fast.Record(r)
		si, sok := slow.Record(r)
		if fok != sok || !reflect.DeepEqual(fi, si) {
			t.Fatalf("Record(%s): fast %+v %v, slow %+v %v", r, fi, fok, si, sok)
		}
		if f, s := fast.GrantsOf(r), slow.GrantsOf(r); !reflect.DeepEqual(f, s) {
			t.Fatalf("GrantsOf(%s): fast %+v, slow %+v", r, f, s)
		}
		if f, s := fast.Receipts(r), slow.Receipts(r); !reflect.DeepEqual(f, s) {
			t.Fatalf("Receipts(%s): fast %+v, slow %+v", r, f, s)
		}
		if f, s := fast.Named(r), slow.Named(r); !reflect.DeepEqual(f, s) {
			t.Fatalf("Named(%s): fast %v, slow %v", r, f, s)
		}
	}
	if f, s := fast.Members(), slow.Members(); !reflect.DeepEqual(f, s) {
		t.Fatalf("Members: fast %+v, slow %+v", f, s)
	}
	if fast.err != nil || slow.err != nil {
		t.Fatal(fast.err, slow.err)
	}
}

// TestFastPathMatchesSlowPath runs the same entries through a ledger that
// validates entries on the current heads against the materialized state and
// one that always walks the causal view: verdicts and digests must agree
// after every entry, one at a time and in one batch.
func TestFastPathMatchesSlowPath(t *testing.T) {
	ctx := context.Background()
	es, w, peers, recs := fastPathStream(t)
	fast := openNode(t, w.admin, w.genesis)
	slow := openNode(t, w.admin, w.genesis)
	slow.core.slowPathOnly = true
	onHeads, rejected := 0, 0
	for i, e := range es {
		fast.mu.Lock()
		if fast.core.parentsAreHeads(e) {
			onHeads++
		}
		fast.mu.Unlock()
		vf, vs := verdict(fast.Ingest(ctx, e.raw)), verdict(slow.Ingest(ctx, e.raw))
		if vf != vs {
			t.Fatalf("entry %d (%s): fast path %s, slow path %s", i, e.Type, vf, vs)
		}
		if vf != "applied" {
			rejected++
		}
		if !bytes.Equal(fast.Digest(), slow.Digest()) {
			t.Fatalf("entry %d (%s): digests differ", i, e.Type)
		}
		compareViews(t, fast, peers, recs)
	}
	if onHeads < len(es)/2 || onHeads == len(es) || rejected < 10 {
		t.Fatalf("stream does not exercise both paths: %d of %d on heads, %d rejected", onHeads, len(es), rejected)
	}

	// One batch: later entries see the batch's uncommitted writes.
	bf := openNode(t, w.admin, w.genesis)
	bs := openNode(t, w.admin, w.genesis)
	bs.core.slowPathOnly = true
	rf, err := bf.ingest(ctx, es)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := bs.ingest(ctx, es)
	if err != nil {
		t.Fatal(err)
	}
	for i := range es {
		if vf, vs := verdict(rf.Results[i].Err), verdict(rs.Results[i].Err); vf != vs {
			t.Fatalf("batch entry %d (%s): fast path %s, slow path %s", i, es[i].Type, vf, vs)
		}
	}
	if d := fast.Digest(); !bytes.Equal(bf.Digest(), d) || !bytes.Equal(bs.Digest(), d) {
		t.Fatal("batch digests differ from one-at-a-time digests")
	}
	compareViews(t, bf, peers, recs)
	for _, l := range []*Ledger{fast, slow, bf, bs} {
		checkStoredHeads(t, l)
	}
}

// checkStoredHeads compares the heads and clock a restart would load with
// the ledger's in memory.
func checkStoredHeads(t *testing.T, l *Ledger) {
	t.Helper()
	rows, err := newTxn(l.store).list(context.Background(), pHeads)
	if err != nil {
		t.Fatal(err)
	}
	var stored []cid.Cid
	for _, r := range rows {
		c, err := cid.Decode(lastSeg(r.Key))
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, c)
	}
	if !equalCids(sortedCids(stored), l.Heads()) {
		t.Fatalf("stored heads %v, in memory %v", stored, l.Heads())
	}
	v, ok, err := newTxn(l.store).get(context.Background(), "/c/clock")
	if err != nil || !ok || len(v) != 12 {
		t.Fatalf("stored clock: %x %v %v", v, ok, err)
	}
	if c := (HLC{binary.BigEndian.Uint64(v), binary.BigEndian.Uint32(v[8:])}); c != l.core.clock {
		t.Fatalf("stored clock %v, in memory %v", c, l.core.clock)
	}
}
