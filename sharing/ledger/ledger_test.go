package ledger

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestEntryRoundTrip(t *testing.T) {
	w := newWorld(t, 1)
	e, err := DecodeEntry(w.genesis)
	if err != nil {
		t.Fatal(err)
	}
	if e.CID() != w.netID || e.Author != w.admin.id || e.Type != TypeGenesis {
		t.Fatalf("decoded genesis mismatch: %+v", e)
	}
	// Flip every byte in turn: each must fail to decode or change the CID.
	for i := range w.genesis {
		b := append([]byte(nil), w.genesis...)
		b[i] ^= 0x01
		if e2, err := DecodeEntry(b); err == nil && e2.CID() == e.CID() {
			t.Fatalf("byte %d flip accepted with same CID", i)
		} else if err == nil {
			t.Fatalf("byte %d flip accepted: signature must fail", i)
		}
	}
	if _, err := DecodeEntry(append(append([]byte(nil), w.genesis...), 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 3)
	dir := t.TempDir()
	l, st := openAt(t, dir, w.admin, w.genesis)
	sub, cancel := l.Subscribe()
	defer cancel()
	w.setup(t, l)
	owner, grantee := w.members[1], w.members[2]
	rec := recordPayload(t, owner, "b").Record
	if info, ok := l.Record(rec); !ok || info.Owner != owner.id || info.Version != 1 {
		t.Fatalf("record: %+v %v", info, ok)
	}
	if !l.IsMember(grantee.id) || !l.IsAdmin(w.admin.id) || l.IsAdmin(owner.id) || len(l.Members()) != 3 {
		t.Fatal("membership wrong")
	}
	if k, ok := l.KEMKey(grantee.id); !ok || !bytes.Equal(k, grantee.kem.Public()) {
		t.Fatal("kem key wrong")
	}
	g := as(t, l, owner, TypeGrant, GrantPayload{Record: rec, Grantee: grantee.id, Envelope: envelopeFor(t, grantee, "g"),
		Expires: testEpoch.Add(48 * time.Hour), Purpose: PurposeTreatment})
	if gs := l.Grants(rec); len(gs) != 1 || gs[0].Entry != g.CID() || gs[0].Grantee != grantee.id || gs[0].KeyID != grantee.kem.ID() {
		t.Fatalf("grants: %+v", gs)
	}
	as(t, l, grantee, TypeAccess, AccessPayload{Record: rec, Version: 1, Purpose: PurposeTreatment, Time: testEpoch, Grant: g.CID()})
	as(t, l, w.admin, TypeReceipt, ReceiptPayload{Record: rec, Status: "held"})
	as(t, l, w.admin, TypeReceipt, ReceiptPayload{Record: rec, Status: "released", Reason: "disk full"})
	if a := l.Access(rec); len(a) != 1 || a[0].Reader != grantee.id || a[0].Grant != g.CID() {
		t.Fatalf("access: %+v", a)
	}
	if r := l.Receipts(rec); len(r) != 1 || r[0].Status != "released" || r[0].Holder != w.admin.id {
		t.Fatalf("receipts: %+v", r)
	}
	v2 := recordPayload(t, owner, "b2")
	v2.Prev, v2.Version = rec, 2
	as(t, l, owner, TypeRecordAnnounce, v2)
	if vs := l.Versions(rec); len(vs) != 2 || vs[1].ID != v2.Record {
		t.Fatalf("versions: %+v", vs)
	}
	if vs := l.Versions(v2.Record); len(vs) != 2 || vs[0].ID != rec {
		t.Fatalf("versions from v2: %+v", vs)
	}
	// Key rotation: later grants must use the new key.
	newKem := newIdent(t).kem
	as(t, l, grantee, TypeKeyAnnounce, KeyAnnouncePayload{Public: newKem.Public()})
	if len(l.Keys(grantee.id)) != 2 {
		t.Fatal("key history lost")
	}
	stale := forge(t, l, owner, TypeGrant, GrantPayload{Record: rec, Grantee: grantee.id, Envelope: envelopeFor(t, grantee, "old"), Purpose: PurposeResearch}, nil)
	if err := l.Ingest(ctx, stale.raw); !errors.As(err, new(*RejectError)) {
		t.Fatalf("grant to rotated-out key accepted: %v", err)
	}
	as(t, l, owner, TypeRevoke, RevokePayload{Record: rec, Grantee: grantee.id})
	if gs := l.Grants(rec); len(gs) != 0 {
		t.Fatalf("grant survived revoke: %+v", gs)
	}
	logAll, err := l.Log(ctx, "", 0)
	if err != nil || len(logAll) != 16 {
		t.Fatalf("log: %d %v", len(logAll), err)
	}
	if logAll[len(logAll)-1].CID() != w.netID {
		t.Fatal("log not newest first")
	}
	if lg, _ := l.Log(ctx, TypeGrant, 5); len(lg) != 1 || lg[0].CID() != g.CID() {
		t.Fatalf("typed log: %v", lg)
	}
	for i := 0; i < 15; i++ { // genesis is applied before Subscribe
		select {
		case <-sub:
		case <-time.After(5 * time.Second):
			t.Fatalf("subscription delivered only %d entries", i)
		}
	}
	if err := l.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	digest, heads := l.Digest(), l.Heads()
	// Restart: only heads and state are loaded, nothing is lost.
	l.Close()
	st.Close()
	l2, st2 := openAt(t, dir, w.admin, w.genesis)
	defer func() { l2.Close(); st2.Close() }()
	if !bytes.Equal(l2.Digest(), digest) || !equalCids(l2.Heads(), heads) {
		t.Fatal("state changed across restart")
	}
	e, err := l2.Append(ctx, TypeKeyAnnounce, KeyAnnouncePayload{Public: newIdent(t).kem.Public()})
	if err != nil || !equalCids(e.Parents, heads) {
		t.Fatalf("append after restart: %v", err)
	}
}

func equalCids(a, b []cid.Cid) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRejections(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 3)
	reg := prometheus.NewRegistry()
	var nodes []*Ledger
	var setup []*Entry
	for i := 0; i < 3; i++ {
		l := openNode(t, w.members[i], w.genesis)
		l.met = newMetrics(reg)
		nodes = append(nodes, l)
		if i == 0 {
			setup = w.setup(t, l)
		} else {
			ingestAll(t, l, setup)
		}
	}
	l0 := nodes[0]
	owner, grantee, outsider := w.members[1], w.members[2], newIdent(t)
	rec := recordPayload(t, owner, "b").Record
	good := forge(t, l0, owner, TypeGrant, GrantPayload{Record: rec, Grantee: grantee.id, Envelope: envelopeFor(t, grantee, "x"), Purpose: PurposeTreatment}, nil)

	forged := append([]byte(nil), good.raw...)
	forged[len(forged)-3] ^= 0xff // inside the signature
	removed := newIdent(t)

	cases := []struct {
		name, reason string
		raw          func() []byte
	}{
		{"forged signature", "bad-signature", func() []byte { return forged }},
		{"non-member author", "not-member", func() []byte {
			return forge(t, l0, outsider, TypeAccess, AccessPayload{Record: rec, Version: 1, Purpose: PurposeTreatment}, nil).raw
		}},
		{"non-owner grant", "unauthorized", func() []byte {
			return forge(t, l0, grantee, TypeGrant, GrantPayload{Record: rec, Grantee: grantee.id, Envelope: envelopeFor(t, grantee, "x"), Purpose: PurposeTreatment}, nil).raw
		}},
		{"envelope for another key", "unauthorized", func() []byte {
			return forge(t, l0, owner, TypeGrant, GrantPayload{Record: rec, Grantee: grantee.id, Envelope: envelopeFor(t, owner, "x"), Purpose: PurposeTreatment}, nil).raw
		}},
		{"non-admin member.add", "unauthorized", func() []byte {
			return forge(t, l0, owner, TypeMemberAdd, MemberAddPayload{Peer: outsider.id}, nil).raw
		}},
		{"emergency grant without expiry", "invalid-payload", func() []byte {
			return forge(t, l0, grantee, TypeGrant, GrantPayload{Record: rec, Grantee: grantee.id, Envelope: envelopeFor(t, grantee, "x"), Purpose: PurposeEmergency}, nil).raw
		}},
		{"oversized entry", "oversize", func() []byte { return make([]byte, MaxEntrySize+1) }},
		{"malformed bytes", "malformed", func() []byte { return []byte{0xa1, 0x01} }},
		{"wrong parents clock", "bad-clock", func() []byte {
			pl, _ := encodePayload(l0.core.types, TypeAccess, AccessPayload{Record: rec, Version: 1, Purpose: PurposeTreatment})
			e, _ := signEntry(owner.key, l0.net, TypeAccess, pl, l0.Heads(), HLC{Wall: 1})
			return e.raw
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := c.raw()
			before := counterValue(l0.met.rejected.WithLabelValues(c.reason))
			for _, l := range nodes {
				d := l.Digest()
				err := l.Ingest(ctx, raw)
				if err == nil || errors.Is(err, ErrPending) {
					t.Fatalf("accepted: %v", err)
				}
				if !bytes.Equal(d, l.Digest()) {
					t.Fatal("digest changed on rejection")
				}
			}
			if got := counterValue(l0.met.rejected.WithLabelValues(c.reason)) - before; got != 3 {
				t.Fatalf("rejected{reason=%q} grew by %v, want 3", c.reason, got)
			}
		})
	}

	t.Run("removed member's later entry", func(t *testing.T) {
		add := forge(t, l0, w.admin, TypeMemberAdd, MemberAddPayload{Peer: removed.id}, nil)
		ingestAll(t, l0, []*Entry{add})
		rm := as(t, l0, w.admin, TypeMemberRemove, MemberRemovePayload{Peer: removed.id})
		for _, l := range nodes[1:] {
			ingestAll(t, l, []*Entry{add, rm})
		}
		late := forge(t, l0, removed, TypeAccess, AccessPayload{Record: rec, Version: 1, Purpose: PurposeTreatment}, nil)
		for _, l := range nodes {
			d := l.Digest()
			if err := l.Ingest(ctx, late.raw); !errors.As(err, new(*RejectError)) {
				t.Fatalf("removed member's entry: %v", err)
			}
			if !bytes.Equal(d, l.Digest()) {
				t.Fatal("digest changed")
			}
		}
	})
	t.Run("replay", func(t *testing.T) {
		for _, l := range nodes {
			if err := l.Ingest(ctx, good.raw); err != nil {
				t.Fatal(err)
			}
			d := l.Digest()
			if err := l.Ingest(ctx, good.raw); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(d, l.Digest()) || len(l.Grants(rec)) != 1 {
				t.Fatal("replay had an effect")
			}
		}
	})
	for _, l := range nodes[1:] {
		if !bytes.Equal(l.Digest(), l0.Digest()) {
			t.Fatal("nodes diverged")
		}
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
