package records_test

import (
	"bytes"
	"context"
	"errors"
	"github.com/ipfs/go-datastore"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/ledger"
)

func wantKind(t *testing.T, what string, err error, k fault.Kind) {
	t.Helper()
	if err == nil || fault.KindOf(err) != k {
		t.Fatalf("%s: %v (kind %v), want a %v error", what, err, fault.KindOf(err), k)
	}
}

func grant(t *testing.T, from *node, id cid.Cid, to *node, req api.GrantRequest) *api.Grant {
	t.Helper()
	req.To = to.id.String()
	g, err := from.svc.Grant(context.Background(), id, req)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	return g
}

// A record is read by its owner and, once granted, by a grantee: from the
// owner's blocks, through the owner's block filter, which refuses a member
// without a grant. The grantee claims the read; the owner attests it; the
// owner's audit matches the two.
func TestAddGrantRead(t *testing.T) {
	tn := newNet(t, 3)
	a, b, c := tn.nodes[0], tn.nodes[1], tn.nodes[2]
	data := randomBytes(3<<20 + 7) // four chunks
	res := a.add(t, "report.pdf", data)
	if res.Version != 1 || res.Chunks != 4 || res.Size != int64(len(data)) {
		t.Fatalf("add: %+v", res)
	}
	if a.adds.committed != 1 || a.synced == 0 {
		t.Fatalf("add ended %d times committed, synced %d times", a.adds.committed, a.synced)
	}
	// The owner's envelope on the ledger is bound to the record.
	info, ok := b.led.Record(res.ID)
	if !ok || info.Owner != a.id {
		t.Fatalf("the announcement did not reach b: %+v", info)
	}
	if _, err := access.OwnerRecipient(res.ID).Unwrap(a.kem, info.OwnerEnvelope); err != nil {
		t.Fatalf("the owner's envelope: %v", err)
	}

	got, err := a.get(res.ID, 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the owner reads: %v", err)
	}
	_, err = b.get(res.ID, 0)
	wantKind(t, "b reads without a grant", err, fault.Forbidden)
	if !strings.Contains(fault.HintOf(err), "medmesh grant "+res.ID.String()) {
		t.Fatalf("hint %q does not say how to get a grant", fault.HintOf(err))
	}
	chunk := res.Manifest.Files[0].Chunks[1].CID
	if a.svc.Allow(b.id, chunk) || a.svc.Allow(c.id, chunk) {
		t.Fatal("a serves a chunk to members without a grant")
	}

	g := grant(t, a, res.ID, b, api.GrantRequest{})
	if g.Purpose != ledger.PurposeTreatment || !g.Expires.IsZero() {
		t.Fatalf("grant: %+v", g)
	}
	if !a.svc.Allow(b.id, chunk) || a.svc.Allow(c.id, chunk) {
		t.Fatal("the block filter did not follow the grant")
	}
	got, err = b.get(res.ID, 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the grantee reads: %v", err)
	}
	_, err = c.get(res.ID, 0)
	wantKind(t, "c reads", err, fault.Forbidden)

	// The claim is on the ledger when b's claimer flushes, the attestation
	// when a's attestor does (Close flushes what is pending).
	b.svc.Close()
	if claims := a.led.Access(res.ID); len(claims) != 1 || claims[0].Reader != b.id {
		t.Fatalf("claims: %+v", claims)
	}
	a.svc.Close()
	audit, err := a.svc.Audit(res.ID)
	if err != nil || len(audit) != 1 {
		t.Fatalf("audit: %+v %v", audit, err)
	}
	ev := audit[0]
	if ev.Reader != b.id.String() || ev.Count != 1 || ev.ReportedCount != 1 || ev.BlockCount != 4 || !slices.Equal(ev.AttestedBy, []string{a.id.String()}) || ev.Review {
		t.Fatalf("audit line: %+v", ev)
	}
	_, err = b.svc.Audit(res.ID)
	wantKind(t, "the grantee's audit", err, fault.Forbidden)

	list, err := b.svc.List(context.Background())
	if err != nil || len(list) != 1 || list[0].Mine || !list[0].Readable || list[0].Held {
		t.Fatalf("b lists %+v %v", list, err)
	}
}

// A revoked grantee can read no more, and the owner's filter refuses it
// at once (the revoke drops the record's cached decision); an expired
// grant ends at its expiry plus the clock-skew margin.
func TestRevokeAndExpiry(t *testing.T) {
	tn := newNet(t, 3)
	a, b, c := tn.nodes[0], tn.nodes[1], tn.nodes[2]
	res := a.add(t, "x", randomBytes(10_000))
	grant(t, a, res.ID, b, api.GrantRequest{})
	grant(t, a, res.ID, c, api.GrantRequest{Expires: "1h"})
	chunk := res.Manifest.Files[0].Chunks[0].CID
	for _, nd := range []*node{b, c} {
		if _, err := nd.get(res.ID, 0); err != nil {
			t.Fatal(err)
		}
	}
	n, err := a.svc.Revoke(context.Background(), res.ID, b.id)
	if err != nil || n != 1 {
		t.Fatalf("revoke: %d %v", n, err)
	}
	if a.svc.Allow(b.id, chunk) {
		t.Fatal("a revoked grantee is served")
	}
	_, err = b.get(res.ID, 0)
	wantKind(t, "a revoked grantee reads", err, fault.Forbidden)
	_, err = a.svc.Revoke(context.Background(), res.ID, b.id)
	wantKind(t, "revoke again", err, fault.NotFound)

	tn.clock.Advance(time.Hour + ledger.ClockSkew - time.Second)
	if !a.svc.Allow(c.id, chunk) {
		t.Fatal("a grant is refused before its expiry and margin")
	}
	tn.clock.Advance(2 * time.Second)
	if a.svc.Allow(c.id, chunk) {
		t.Fatal("an expired grant is still served")
	}
	_, err = c.get(res.ID, 0)
	wantKind(t, "an expired grantee reads", err, fault.Forbidden)
	gs, err := a.svc.ListGrants(res.ID)
	if err != nil || len(gs) != 1 || !gs[0].Expired {
		t.Fatalf("grants: %+v %v", gs, err)
	}
}

// A new version is wrapped to the owner and the live grantees only; a
// reader gets the newest version it may read, or the one it asks for.
func TestUpdate(t *testing.T) {
	tn := newNet(t, 3)
	a, b, c := tn.nodes[0], tn.nodes[1], tn.nodes[2]
	v1 := randomBytes(2000)
	res1 := a.add(t, "x", v1, func(r *records.AddRequest) { r.Class = ledger.ClassImaging })
	grant(t, a, res1.ID, b, api.GrantRequest{Purpose: ledger.PurposeResearch})
	grant(t, a, res1.ID, c, api.GrantRequest{Expires: "1m"})
	tn.clock.Advance(time.Minute + ledger.ClockSkew + time.Second)

	v2 := randomBytes(3000)
	res2, err := a.svc.Update(context.Background(), records.AddRequest{Prev: res1.ID, Name: "x",
		Files: []records.FileSource{{Path: "x", Open: func() (io.Reader, error) { return bytes.NewReader(v2), nil }}}})
	if err != nil || res2.Version != 2 {
		t.Fatalf("update: %+v %v", res2, err)
	}
	info2, _ := a.led.Record(res2.ID)
	if info2.Class != ledger.ClassImaging || info2.Prev != res1.ID {
		t.Fatalf("v2 is %+v", info2)
	}
	gs := a.led.Grants(res2.ID)
	if len(gs) != 1 || gs[0].Grantee != b.id || gs[0].Purpose != ledger.PurposeResearch {
		t.Fatalf("v2's grants: %+v", gs)
	}
	if got := a.svc.LatestVersion(res1.ID); got.ID != res2.ID {
		t.Fatalf("latest version of v1: %s, want %s", got.ID, res2.ID)
	}
	for _, c := range []struct {
		version int
		want    []byte
	}{{0, v2}, {2, v2}, {1, v1}} {
		if got, err := b.get(res1.ID, c.version); err != nil || !bytes.Equal(got, c.want) {
			t.Fatalf("b reads version %d: %v", c.version, err)
		}
	}
	_, err = b.get(res1.ID, 3)
	wantKind(t, "version 3", err, fault.NotFound)
	_, err = c.get(res2.ID, 0)
	wantKind(t, "an expired grantee reads v2", err, fault.Forbidden)
	_, err = b.svc.Update(context.Background(), records.AddRequest{Prev: res1.ID, Files: []records.FileSource{{Path: "x", Open: func() (io.Reader, error) { return bytes.NewReader(v2), nil }}}})
	wantKind(t, "b updates a's record", err, fault.Forbidden)
}

// Break-glass: a record added with Emergency is escrowed to the network's
// emergency authority, which can grant it (purpose emergency, at most a
// day) without its owner; the owner's audit flags the read for review.
func TestEmergency(t *testing.T) {
	tn := newNet(t, 3, nil, nil, []string{ledger.RoleEmergency})
	a, b, auth := tn.nodes[0], tn.nodes[1], tn.nodes[2]
	plain := a.add(t, "plain", randomBytes(100))
	data := randomBytes(5000)
	res := a.add(t, "er", data, func(r *records.AddRequest) { r.Emergency = true })
	info, _ := auth.led.Record(res.ID)
	if _, ok := info.EscrowFor(auth.id); !ok {
		t.Fatal("the record is not escrowed to the authority")
	}

	_, err := auth.svc.Grant(context.Background(), plain.ID, api.GrantRequest{To: b.id.String(), Purpose: ledger.PurposeEmergency})
	wantKind(t, "emergency grant of a record not escrowed", err, fault.Forbidden)
	_, err = b.svc.Grant(context.Background(), res.ID, api.GrantRequest{To: b.id.String(), Purpose: ledger.PurposeEmergency})
	wantKind(t, "emergency grant by a non-authority", err, fault.Forbidden)
	_, err = auth.svc.Grant(context.Background(), res.ID, api.GrantRequest{To: b.id.String(), Purpose: ledger.PurposeEmergency, Expires: "25h"})
	wantKind(t, "an emergency grant of 25h", err, fault.Invalid)

	g := grant(t, auth, res.ID, b, api.GrantRequest{Purpose: ledger.PurposeEmergency})
	if !g.Expires.Equal(tn.clock.Now().Add(ledger.MaxEmergencyGrant)) {
		t.Fatalf("emergency grant expires %v", g.Expires)
	}
	if got, err := b.get(res.ID, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("b reads under the emergency grant: %v", err)
	}
	a.svc.Close()
	audit, err := a.svc.Audit(res.ID)
	if err != nil || len(audit) != 1 || !audit[0].Emergency || !audit[0].Review {
		t.Fatalf("audit: %+v %v", audit, err)
	}
}

func TestEmergencyWithoutAuthority(t *testing.T) {
	tn := newNet(t, 1)
	_, err := tn.nodes[0].svc.Add(context.Background(), records.AddRequest{Emergency: true, Files: []records.FileSource{{Path: "x", Open: func() (io.Reader, error) { return strings.NewReader("x"), nil }}}})
	wantKind(t, "emergency add without an authority", err, fault.Conflict)
}

// An add that fails stores nothing: it ends uncommitted (the garbage
// collector's protocol rolls its blocks back) and announces nothing.
func TestAddFailsCleanly(t *testing.T) {
	tn := newNet(t, 2)
	a, b := tn.nodes[0], tn.nodes[1]
	ctx := context.Background()
	broken := errors.New("disk on fire")
	_, err := a.svc.Add(ctx, records.AddRequest{Files: []records.FileSource{
		{Path: "one", Open: func() (io.Reader, error) { return bytes.NewReader(randomBytes(2 << 20)), nil }},
		{Path: "two", Open: func() (io.Reader, error) { return nil, broken }},
	}})
	if !errors.Is(err, broken) {
		t.Fatalf("add: %v", err)
	}
	if a.adds.rolled != 1 || a.adds.committed != 0 || len(a.led.Records()) != 0 {
		t.Fatalf("rolled back %d, committed %d, records %d", a.adds.rolled, a.adds.committed, len(a.led.Records()))
	}
	if n := len(a.svc.IndexedBlocks()); n != 0 {
		t.Fatalf("%d blocks indexed", n)
	}

	for _, c := range []struct {
		what string
		req  records.AddRequest
		kind fault.Kind
	}{
		{"no files", records.AddRequest{}, fault.Invalid},
		{"unknown class", records.AddRequest{Class: "secret", Files: []records.FileSource{{Path: "x"}}}, fault.Invalid},
		{"unknown prev", records.AddRequest{Prev: a.add(t, "p", []byte("p")).Manifest.Files[0].Chunks[0].CID, Files: []records.FileSource{{Path: "x"}}}, fault.NotFound},
	} {
		_, err := a.svc.Add(ctx, c.req)
		wantKind(t, c.what, err, c.kind)
	}
	theirs := b.add(t, "theirs", []byte("b's"))
	_, err = a.svc.Add(ctx, records.AddRequest{Prev: theirs.ID, Files: []records.FileSource{{Path: "x"}}})
	wantKind(t, "a new version of another's record", err, fault.Forbidden)

	// A node not (yet) admitted cannot add.
	genesis, err := a.led.Entry(ctx, a.led.NetworkID())
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	out := tn.addNode(key, genesis.Bytes())
	out.start()
	_, err = out.svc.Add(ctx, records.AddRequest{Files: []records.FileSource{{Path: "x"}}})
	wantKind(t, "a non-member adds", err, fault.Conflict)
}

// The block index maps each stored block to its record, survives a
// restart (it is in the local datastore), and forgets what gc removes.
func TestBlockIndex(t *testing.T) {
	tn := newNet(t, 1)
	a := tn.nodes[0]
	ctx := context.Background()
	res := a.add(t, "x", randomBytes(3<<20))
	bs := res.Manifest.Blocks(res.ID)
	for _, blk := range bs {
		if rec, ok := a.svc.RecordOf(blk); !ok || rec != res.ID {
			t.Fatalf("block %s: record %s %v", blk, rec, ok)
		}
	}
	if got := a.svc.BlocksOf(res.ID); len(got) != len(bs)+1 { // and the block list
		t.Fatalf("BlocksOf: %d, want %d", len(got), len(bs)+1)
	}
	if !a.svc.Owns(ctx, res.ID) {
		t.Fatal("the owner does not own its record")
	}
	if owned, err := a.svc.Owned(ctx); err != nil || len(owned) != 1 || owned[0] != res.ID {
		t.Fatalf("Owned: %v %v", owned, err)
	}
	if err := a.svc.Unindex(ctx, bs[1]); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.svc.RecordOf(bs[1]); ok {
		t.Fatal("an unindexed block is still indexed")
	}
	if a.svc.Allow(a.id, bs[1]) {
		t.Fatal("a block of no known record is served")
	}

	// A restart reads the index back.
	a.svc.Close()
	a.start()
	idx := a.svc.IndexedBlocks()
	if len(idx) != len(bs) || idx[bs[0]] != res.ID {
		t.Fatalf("after a restart the index has %d blocks", len(idx))
	}
	if err := a.svc.Forget(ctx, res.ID); err != nil {
		t.Fatal(err)
	}
	a.svc.Close()
	a.start()
	if n := len(a.svc.IndexedBlocks()); n != 0 {
		t.Fatalf("%d blocks indexed after Forget and a restart", n)
	}
	if owned, _ := a.svc.Owned(ctx); len(owned) != 0 {
		t.Fatalf("the forgotten record's key is kept: %v", owned)
	}
}

func TestReadFilesNoSuchFile(t *testing.T) {
	tn := newNet(t, 1)
	a := tn.nodes[0]
	res := a.add(t, "x", []byte("hello"))
	_, m, key, _, err := a.svc.Open(context.Background(), res.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = a.svc.ReadFiles(context.Background(), m, key, []int{1}, io.Discard)
	wantKind(t, "file 1 of a one-file record", err, fault.NotFound)
	_, err = a.get(res.Manifest.Files[0].Chunks[0].CID, 0)
	wantKind(t, "a chunk read as a record", err, fault.NotFound)
}

// TestRestoreOwnedKeys: a node restored from a backup (keys, no datastore)
// knows what it owns again from the owner envelopes on the ledger, and
// reads its records with them.
func TestRestoreOwnedKeys(t *testing.T) {
	tn := newNet(t, 1)
	a := tn.nodes[0]
	ctx := context.Background()
	data := randomBytes(100 << 10)
	res := a.add(t, "x", data)
	if err := a.local.Delete(ctx, datastore.NewKey("/keys/"+res.ID.String())); err != nil {
		t.Fatal(err)
	}
	if owned, _ := a.svc.Owned(ctx); len(owned) != 0 {
		t.Fatalf("owned without key rows: %v", owned)
	}
	if n, err := a.svc.RestoreOwnedKeys(ctx); err != nil || n != 1 {
		t.Fatalf("RestoreOwnedKeys: %d %v", n, err)
	}
	if owned, err := a.svc.Owned(ctx); err != nil || len(owned) != 1 || owned[0] != res.ID {
		t.Fatalf("Owned after restore: %v %v", owned, err)
	}
	if n, _ := a.svc.RestoreOwnedKeys(ctx); n != 0 {
		t.Fatalf("a second restore wrote %d rows", n)
	}
	if got, err := a.get(res.ID, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the record does not read back with the restored key: %v", err)
	}
}

// A grant carries the record's name sealed for the grantee: the grantee's
// node shows it before any read (Label makes no claim and fetches
// nothing), a member without a grant sees nothing, and a revoke takes it
// away with the grant.
func TestGrantLabel(t *testing.T) {
	tn := newNet(t, 3)
	a, b, c := tn.nodes[0], tn.nodes[1], tn.nodes[2]
	res := a.add(t, "Discharge summary.pdf", randomBytes(1000), func(r *records.AddRequest) { r.MediaType = "application/pdf" })
	ctx := context.Background()
	info, _ := a.led.Record(res.ID)
	want := access.Label{Name: "Discharge summary.pdf", MediaType: "application/pdf"}
	if l, ok := a.svc.Label(ctx, info); !ok || l != want {
		t.Fatalf("the owner's label: %+v %v", l, ok)
	}
	if l, ok := b.svc.Label(ctx, info); ok {
		t.Fatalf("b sees %+v without a grant", l)
	}
	grant(t, a, res.ID, b, api.GrantRequest{Purpose: ledger.PurposeResearch, Expires: "24h"})
	gs := b.led.Grants(res.ID)
	if len(gs) != 1 || len(gs[0].Label) == 0 || bytes.Contains(gs[0].Label, []byte("Discharge")) {
		t.Fatalf("the grant's label on the ledger: %+v", gs)
	}
	if l, ok := b.svc.Label(ctx, info); !ok || l != want {
		t.Fatalf("the grantee's label: %+v %v", l, ok)
	}
	if l, ok := c.svc.Label(ctx, info); ok {
		t.Fatalf("c sees %+v without a grant", l)
	}
	if claims := a.led.Access(res.ID); len(claims) != 0 {
		t.Fatalf("showing a label claimed a read: %+v", claims)
	}
	// A new version re-grants to the live grantees (GrantVersion): the
	// re-grant carries the new version's label too.
	res2, err := a.svc.Update(ctx, records.AddRequest{Prev: res.ID, Name: "Discharge summary (corrected).pdf", MediaType: "application/pdf",
		Files: []records.FileSource{{Path: "x", Open: func() (io.Reader, error) { return bytes.NewReader(randomBytes(500)), nil }}}})
	if err != nil {
		t.Fatal(err)
	}
	info2, _ := b.led.Record(res2.ID)
	if l, ok := b.svc.Label(ctx, info2); !ok || l.Name != "Discharge summary (corrected).pdf" {
		t.Fatalf("the grantee's label of the re-granted version 2: %+v %v", l, ok)
	}
	if _, err := a.svc.Revoke(ctx, res.ID, b.id); err != nil {
		t.Fatal(err)
	}
	for _, i := range []ledger.RecordInfo{info, info2} {
		if l, ok := b.svc.Label(ctx, i); ok {
			t.Fatalf("b still sees %+v after the revoke", l)
		}
	}
}

// TestClaimsBatched: a grantee's reads of a record in one interval are one
// claim counting them (issue #16: claims are most of the ledger's volume),
// and the owner's audit counts each read once.
func TestClaimsBatched(t *testing.T) {
	tn := newNet(t, 2)
	a, b := tn.nodes[0], tn.nodes[1]
	res := a.add(t, "x", randomBytes(10_000))
	grant(t, a, res.ID, b, api.GrantRequest{})
	for range 5 {
		if _, err := b.get(res.ID, 0); err != nil {
			t.Fatal(err)
		}
	}
	b.svc.Close() // claims what it counted
	// One claim, or two if the first read's claim went out alone
	// (attestLead) before the others were read.
	claims, n := a.led.Access(res.ID), 0
	for _, c := range claims {
		n += c.Reads
		if c.Last.Before(c.Time) {
			t.Fatalf("claim: %+v", c)
		}
	}
	if len(claims) > 2 || n != 5 {
		t.Fatalf("%d claims of %d reads: %+v", len(claims), n, claims)
	}
	a.svc.Close()
	wantAuditedExactly(t, a, res.ID, 5)
}

// wantAuditedExactly checks that the owner's audit of id is one line of n
// reads, all attested and all reported, none flagged.
func wantAuditedExactly(t *testing.T, owner *node, id cid.Cid, n int) {
	t.Helper()
	audit, err := owner.svc.Audit(id)
	if err != nil || len(audit) != 1 || audit[0].Count != n || audit[0].ReportedCount != n || audit[0].Review {
		t.Fatalf("audit: %+v %v", audit, err)
	}
}

// TestClaimAfterRevoke: the reads of a burst are claimed when it ends; a
// revoke of their grant that arrives first does not lose them: the claim
// goes in at the ledger position where the burst began, and the owner's
// audit shows every read reported, none flagged.
func TestClaimAfterRevoke(t *testing.T) {
	ctx := context.Background()
	tn := newNet(t, 2)
	a, b := tn.nodes[0], tn.nodes[1]
	res := a.add(t, "x", randomBytes(10_000))
	grant(t, a, res.ID, b, api.GrantRequest{})
	for range 5 { // the first claimed at once, the other four pending
		if _, err := b.get(res.ID, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.svc.Revoke(ctx, res.ID, b.id); err != nil {
		t.Fatal(err)
	}
	if _, err := b.get(res.ID, 0); !fault.Is(err, fault.Forbidden) {
		t.Fatalf("a read after the revoke: %v", err)
	}
	b.svc.Close() // claims the pending reads, after the revoke
	n := 0
	for _, c := range a.led.Access(res.ID) {
		n += c.Reads
	}
	if n != 5 {
		t.Fatalf("the owner's ledger has claims of %d reads, want 5: %+v", n, a.led.Access(res.ID))
	}
	a.svc.Close()
	wantAuditedExactly(t, a, res.ID, 5)
}

// TestQuietClaimAfterRevoke: a read resolves its grant, the revoke
// arrives while it fetches the manifest, then the read is claimed (a quiet
// read's claim goes out at once): the claim goes in where the read
// resolved its grant, so the owner's ledger has it.
func TestQuietClaimAfterRevoke(t *testing.T) {
	ctx := context.Background()
	tn := newNet(t, 2)
	a, b := tn.nodes[0], tn.nodes[1]
	res := a.add(t, "x", randomBytes(1000))
	grant(t, a, res.ID, b, api.GrantRequest{})
	info, _ := b.led.Record(res.ID)
	var g ledger.Grant
	for _, gr := range b.led.Grants(res.ID) {
		if gr.Grantee == b.id {
			g = gr
		}
	}
	resolved := b.led.Position() // the read resolves its grant
	if _, err := a.svc.Revoke(ctx, res.ID, b.id); err != nil {
		t.Fatal(err)
	}
	b.svc.CountRead(info, &g, resolved) // the manifest came: claimed
	if got := a.led.Access(res.ID); len(got) != 1 || got[0].Reader != b.id || got[0].Reads != 1 {
		t.Fatalf("the owner's ledger has the claims %+v, want b's one read", got)
	}
}

// TestReadEndsWhenErased: a read waiting for blocks that no node serves
// any more ends with "erased" (not found) as soon as its record's erasure
// is known, not with "could not be found on the network" when the fetch
// times out; a read of a record already erased says so at once.
func TestReadEndsWhenErased(t *testing.T) {
	tn := newNet(t, 2)
	a, b := tn.nodes[0], tn.nodes[1]
	res := a.add(t, "note.txt", randomBytes(1<<20+3))
	grant(t, a, res.ID, b, api.GrantRequest{})
	for _, c := range append(res.Manifest.Blocks(res.ID), res.ID) {
		if err := a.store.DeleteBlock(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	b.waits = true
	done := make(chan error, 1)
	go func() {
		_, err := b.get(res.ID, 0)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the read ended before the erasure: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	tn.erase(res.ID)
	err := <-done
	wantKind(t, "a read in progress when its record is erased", err, fault.NotFound)
	if !strings.Contains(err.Error(), "erased") {
		t.Fatalf("the read ended with %v, not erased", err)
	}
	_, err = b.get(res.ID, 0)
	wantKind(t, "a read of an erased record", err, fault.NotFound)
}
