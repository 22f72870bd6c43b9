package research

import (
	"bytes"
	"context"
	"encoding/csv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/dataset"
)

type testNode struct {
	s   *Service
	img *fakeImaging
	rec *fakeRecords
	id  peer.ID
}

// newNode is a node of world w: a research service over a real ledger
// (consents) and the world's fake records and imaging.
func newNode(t *testing.T, w *world, member bool) *testNode {
	t.Helper()
	key, id := newKey(t)
	rec := &fakeRecords{w: w, self: id}
	img := newFakeImaging(rec)
	s, err := New(Config{Ledger: fakeLedger{newLedger(t, key, w.now), w}, Records: rec, Imaging: img, Self: id, Identity: key,
		Local: dssync.MutexWrap(datastore.NewMapDatastore()), Now: w.now})
	if err != nil {
		t.Fatal(err)
	}
	if member {
		w.members[id] = true
		w.keys[id] = []byte("kem key of " + id)
	}
	return &testNode{s: s, img: img, rec: rec, id: id}
}

// must(f())(t) is f's value, or t fails with f's error.
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// TestDatasetLifecycle drives the service end to end over fakes: consent
// selection and every exclusion reason, grants (studies before the
// manifest), listing by readability, a verified, resumable fetch with its
// progress and audit, and a second version after a consent revocation
// that reuses the unchanged study, carries the grant and revokes the
// dropped study.
func TestDatasetLifecycle(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	w := newWorld(clk.now)
	C, R, X := newNode(t, w, true), newNode(t, w, true), newNode(t, w, true)
	keyless := newNode(t, w, true)
	delete(w.keys, keyless.id)
	outsider := newNode(t, w, false)

	p1 := must(C.img.importStudy(ctx, 1, "PID-1", [3]string{"MR", "LSPINE", "p1 mr"}, [3]string{"CT", "LSPINE", "p1 ct"}))(t)
	p2 := must(C.img.importStudy(ctx, 2, "PID-2", [3]string{"MR", "LSPINE", "p2 mr"}))(t)
	must(C.img.importStudy(ctx, 3, "PID-3", [3]string{"MR", "KNEE", "p3 mr"}))(t)
	must(C.img.importStudy(ctx, 4, "PID-4", [3]string{"MR", "LSPINE", "BURNED p4"}))(t)
	for _, c := range []api.ConsentRequest{{Patient: "PID-1", Modality: "MR"}, {Patient: "PID-2"}, {Patient: "PID-4"}, {Patient: "PID-3", Purpose: "treatment"}} {
		must(C.s.AddConsent(ctx, c))(t)
	}

	// Version 1, by query: P1's CT series does not match, P3 has no
	// research consent, P4's instances are all excluded by
	// de-identification.
	v1 := must(C.s.CreateDataset(ctx, api.DatasetCreateRequest{Name: "spine", Query: "modality=MR"}))(t)
	if v1.Version != 1 || len(v1.Studies) != 2 || v1.Counts[dataset.ReasonNoMatch] != 1 || v1.Counts[dataset.ReasonNoConsent] != 1 ||
		v1.Counts[dataset.ReasonNotDeidable] != 1 || len(v1.Excluded) != 3 {
		t.Fatalf("version 1: %+v", v1)
	}
	for _, st := range v1.Studies {
		if !strings.HasPrefix(st.Patient, "ANON-") || st.Instances != 1 || st.Reused {
			t.Fatalf("study: %+v", st)
		}
	}

	// By records: none qualifies, each for its reason, and nothing is
	// published.
	file := must(C.rec.Add(ctx, records.AddRequest{Name: "report.pdf", Kind: "file", Class: "report", Files: []records.FileSource{{Path: "r", Open: func() (io.Reader, error) { return strings.NewReader("%PDF"), nil }}}}))(t)
	theirs := must(X.img.importStudy(ctx, 9, "PID-9", [3]string{"MR", "LSPINE", "x"}))(t)
	deidOut, _ := cid.Decode(v1.Studies[0].Record)
	before := len(w.order)
	res, err := C.s.CreateDataset(ctx, api.DatasetCreateRequest{Name: "none", Records: []string{file.ID.String(), theirs.String(), deidOut.String()}})
	if !fault.Is(err, fault.Invalid) || res == nil || res.Counts[dataset.ReasonNotStudy] != 2 || res.Counts[dataset.ReasonNotOwned] != 1 || len(w.order) != before {
		t.Fatalf("create from non-sources: %+v, %v", res, err)
	}
	for _, req := range []api.DatasetCreateRequest{
		{Name: "a/b", Query: "modality=MR"},
		{Name: "x"},
		{Name: "x", Query: "modality=MR", Records: []string{p1.String()}},
		{Name: "x", Records: []string{"not-a-cid"}},
		{Name: "x", Query: "colour=blue"},
		{Name: "x", Query: "modality=MR", ProjectKeyFile: "/nonexistent"},
	} {
		if _, err := C.s.CreateDataset(ctx, req); !fault.Is(err, fault.Invalid) {
			t.Errorf("create %+v: %v, want invalid", req, err)
		}
	}

	// Grants: the studies, then the manifest; only members with a key;
	// only the publisher.
	gs := must(C.s.GrantDatasets(ctx, "spine", api.DatasetGrantRequest{To: R.id.String()}))(t)
	if len(gs) != 1 || gs[0].Records != 3 || gs[0].Dataset != v1.ID || gs[0].Grantee != R.id.String() {
		t.Fatalf("grant: %+v", gs)
	}
	v1id, _ := cid.Decode(v1.ID)
	if len(w.granted) != 3 || w.granted[2] != v1id {
		t.Fatalf("granted %v: the manifest must come last", w.granted)
	}
	for _, st := range v1.Studies {
		sid, _ := cid.Decode(st.Record)
		if len(w.grants[sid]) != 1 || w.grants[sid][0].Purpose != "research" {
			t.Fatalf("study %s not granted with the manifest: %+v", sid, w.grants[sid])
		}
	}
	for _, c := range []struct {
		n    *testNode
		ref  string
		to   string
		kind fault.Kind
	}{
		{C, "spine", outsider.id.String(), fault.Invalid},
		{C, "spine", keyless.id.String(), fault.Conflict},
		{C, "spine", "not-a-peer", fault.Invalid},
		{C, "unknown", R.id.String(), fault.NotFound},
		{R, "spine", X.id.String(), fault.Forbidden},
	} {
		if _, err := c.n.s.GrantDatasets(ctx, c.ref, api.DatasetGrantRequest{To: c.to}); fault.KindOf(err) != c.kind {
			t.Errorf("grant %s to %s: %v, want %v", c.ref, c.to, err, c.kind)
		}
	}
	if _, err := C.s.GrantDatasets(ctx, "spine", api.DatasetGrantRequest{To: X.id.String(), Expires: "-1h"}); !fault.Is(err, fault.Invalid) {
		t.Errorf("negative lifetime: %v", err)
	}

	// Listing: the publisher and the grantee see it, nobody else does.
	if ls := C.s.ListDatasets(ctx); len(ls) != 1 || !ls[0].Mine || ls[0].Studies != 2 || ls[0].Instances != 2 {
		t.Fatalf("publisher's list: %+v", ls)
	}
	if ls := R.s.ListDatasets(ctx); len(ls) != 1 || ls[0].Mine || ls[0].Owner != C.id.String() || ls[0].Name != "spine" {
		t.Fatalf("grantee's list: %+v", ls)
	}
	if ls := X.s.ListDatasets(ctx); len(ls) != 0 {
		t.Fatalf("non-grantee's list: %+v", ls)
	}
	dir := filepath.Join(t.TempDir(), "out")
	if _, err := X.s.FetchDataset(ctx, api.DatasetFetchRequest{Datasets: []string{"spine"}, Dir: dir}, nil); !fault.Is(err, fault.NotFound) {
		t.Fatalf("non-grantee's fetch by name: %v", err)
	}
	if _, err := X.s.FetchDataset(ctx, api.DatasetFetchRequest{Datasets: []string{v1.ID}, Dir: dir}, nil); !fault.Is(err, fault.Forbidden) {
		t.Fatalf("non-grantee's fetch by ID: %v", err)
	}

	// Fetch: every instance verified and written, a manifest.csv, the
	// progress under its job name, and every study's read counted.
	var calls int
	fr := must(R.s.FetchDataset(ctx, api.DatasetFetchRequest{Datasets: []string{"spine", v1.ID}, Dir: dir, Job: "j1"},
		func(api.DatasetProgress) { calls++ }))(t)
	if fr.Studies != 2 || fr.StudiesDone != 2 || fr.Instances != 2 || fr.Fetched != 2 || fr.Skipped != 0 || !fr.Done || len(fr.Datasets) != 1 || calls != 2 {
		t.Fatalf("fetch: %+v", fr)
	}
	if p, ok := R.s.FetchProgress("j1"); !ok || !p.Done || p.Fetched != 2 {
		t.Fatalf("progress: %+v %v", p, ok)
	}
	if _, ok := C.s.FetchProgress("j1"); ok {
		t.Fatal("another node's service sees the job")
	}
	f, err := os.Open(fr.CSV)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 3 || rows[0][6] != "path" || rows[1][9] != "spine" {
		t.Fatalf("manifest.csv: %v %v", rows, err)
	}
	for _, row := range rows[1:] {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(row[6])))
		if err != nil || !bytes.HasPrefix(b, []byte("DEID ")) || row[0] == "PID-1" || row[0] == "PID-2" {
			t.Fatalf("%s: %q %v", row[6], b, err)
		}
	}
	if n := w.reads[R.id][v1id]; n != 1 {
		t.Errorf("dataset manifest read counted %d times", n)
	}
	for _, st := range v1.Studies {
		sid, _ := cid.Decode(st.Record)
		if w.reads[R.id][sid] != 1 {
			t.Errorf("study %s read counted %d times", sid, w.reads[R.id][sid])
		}
	}

	// Again: nothing to fetch. A file changed since is fetched again.
	fr = must(R.s.FetchDataset(ctx, api.DatasetFetchRequest{Datasets: []string{"spine"}, Dir: dir}, nil))(t)
	if fr.Skipped != 2 || fr.Fetched != 0 {
		t.Fatalf("resumed fetch: %+v", fr.DatasetProgress)
	}
	changed := filepath.Join(dir, filepath.FromSlash(rows[1][6]))
	if err := os.WriteFile(changed, []byte("DEID tampered"), 0o600); err != nil {
		t.Fatal(err)
	}
	fr = must(R.s.FetchDataset(ctx, api.DatasetFetchRequest{Datasets: []string{"spine"}, Dir: dir}, nil))(t)
	if fr.Skipped != 1 || fr.Fetched != 1 {
		t.Fatalf("fetch after a change: %+v", fr.DatasetProgress)
	}
	// Bytes that do not match the record's manifest are not kept.
	w.corrupt[deidOut] = true
	bad := filepath.Join(t.TempDir(), "bad")
	if _, err := R.s.FetchDataset(ctx, api.DatasetFetchRequest{Datasets: []string{"spine"}, Dir: bad, Parallel: 1}, nil); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("corrupt fetch: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(bad, "*", "*", "*.dcm")); len(m) > 1 {
		t.Fatalf("corrupt fetch left %v", m)
	}
	w.corrupt[deidOut] = false

	// Patient 2 revokes: version 2 leaves their study out, reuses P1's
	// de-identified study, grants itself to R and revokes R's grant of
	// the dropped study.
	must(C.s.RevokeConsent(ctx, api.ConsentRequest{Patient: "PID-2"}))(t)
	deidsP1 := w.deids[p1]
	v2 := must(C.s.CreateDataset(ctx, api.DatasetCreateRequest{Name: "spine", Query: "modality=MR"}))(t)
	if v2.Version != 2 || v2.Prev != v1.ID || len(v2.Studies) != 1 || !v2.Studies[0].Reused || v2.Counts[dataset.ReasonRevoked] != 1 ||
		len(v2.Regranted) != 1 || v2.Regranted[0] != R.id.String() || v2.Revoked != 1 || w.deids[p1] != deidsP1 {
		t.Fatalf("version 2: %+v", v2)
	}
	var dropped cid.Cid
	for _, st := range v1.Studies {
		if st.Record != v2.Studies[0].Record {
			dropped, _ = cid.Decode(st.Record)
		}
	}
	if len(w.grants[dropped]) != 0 {
		t.Fatal("the dropped study is still granted")
	}
	if _, err := R.s.FetchDataset(ctx, api.DatasetFetchRequest{Datasets: []string{"spine"}, Dir: t.TempDir()}, nil); err != nil {
		t.Fatal(err)
	}
	if ls := R.s.ListDatasets(ctx); len(ls) != 1 || ls[0].Version != 2 || ls[0].Prev != v1.ID {
		t.Fatalf("grantee's list after version 2: %+v", ls)
	}
	// The researcher publishing a dataset of its own opens no other
	// node's dataset (each open would be a read claimed on the ledger).
	must(R.img.importStudy(ctx, 5, "PID-5", [3]string{"MR", "LSPINE", "r mr"}))(t)
	must(R.s.AddConsent(ctx, api.ConsentRequest{Patient: "PID-5"}))(t)
	claims := w.claims[R.id]
	if own := must(R.s.CreateDataset(ctx, api.DatasetCreateRequest{Name: "spine", Query: "modality=MR"}))(t); own.Version != 1 || len(own.Studies) != 1 {
		t.Fatalf("researcher's own dataset: %+v", own)
	}
	if w.claims[R.id] != claims {
		t.Fatalf("creating its own dataset, the researcher opened %d of other nodes' records", w.claims[R.id]-claims)
	}
	_ = p2
}
