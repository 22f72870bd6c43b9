package daemon_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/daemon"
	"github.com/medmesh/medmesh/node/devnet"
	"github.com/medmesh/medmesh/node/research"
	"github.com/medmesh/medmesh/sharing/dataset"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

// writeCohort writes one MR study per patient (2 series x 2 instances)
// and patches identities and body parts in place (same lengths): prefix
// replaces "DEMO" in names and IDs, bodyParts[p-1] replaces "CHEST ".
// It returns the paths and the identifying values to look for in outputs.
func writeCohort(t testing.TB, dir string, seed int64, prefix string, bodyParts []string) ([]string, []string) {
	t.Helper()
	paths, err := dicomtest.WriteStudy(dir, dicomtest.Options{Patients: len(bodyParts), SeriesPerStudy: 2, InstancesPerSeries: 2, Rows: 16, Cols: 16, Modality: "MR", Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for p := 1; p <= len(bodyParts); p++ {
		name := strings.Replace(dicomtest.PatientName(p), "DEMO", prefix, 1)
		pid := strings.Replace(dicomtest.PatientID(p), "DEMO", prefix, 1)
		ids = append(ids, name, pid, fmt.Sprintf("19%02d0101", 40+p%50), fmt.Sprintf("ACC%06d", p),
			dicomtest.UID(seed, "study", p), dicomtest.UID(seed, "for", p))
		for s := 1; s <= 2; s++ {
			ids = append(ids, dicomtest.UID(seed, "series", p, s))
			for i := 1; i <= 2; i++ {
				ids = append(ids, dicomtest.UID(seed, "sop", p, s, i))
				path := filepath.Join(dir, fmt.Sprintf("P%d", p), fmt.Sprintf("S%d", s), fmt.Sprintf("I%d.dcm", i))
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				b = bytes.ReplaceAll(b, []byte("DEMO^PATIENT"), []byte(prefix+"^PATIENT"))
				b = bytes.ReplaceAll(b, []byte(dicomtest.PatientID(p)), []byte(pid))
				b = bytes.ReplaceAll(b, []byte("CHEST "), []byte(bodyParts[p-1]))
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return paths, ids
}

func consent(t testing.TB, nd *devnet.Node, path string, req api.ConsentRequest) {
	t.Helper()
	var out map[string]any
	if err := nd.API.Do(context.Background(), "POST", api.Prefix+path, req, &out); err != nil {
		t.Fatalf("%s on %s: %v", path, nd.Name, err)
	}
}

func createDataset(t testing.TB, nd *devnet.Node, req api.DatasetCreateRequest) api.DatasetCreateResult {
	t.Helper()
	var res api.DatasetCreateResult
	if err := nd.API.Do(context.Background(), "POST", api.Prefix+"/datasets", req, &res); err != nil {
		t.Fatalf("dataset create on %s: %v", nd.Name, err)
	}
	return res
}

func grantDataset(t testing.TB, nd *devnet.Node, ds string, to *devnet.Node) {
	t.Helper()
	var out []api.DatasetGrantResult
	if err := nd.API.Do(context.Background(), "POST", api.Prefix+"/datasets/"+ds+"/grants", api.DatasetGrantRequest{To: to.ID.String()}, &out); err != nil {
		t.Fatalf("dataset grant on %s: %v", nd.Name, err)
	}
}

// TestDatasetFiveNodes: two clinics each publish their part of dataset
// "spine" (federated: only a study's owner can check its patient's consent
// and de-identify it); the researcher fetches both parts by name into one
// folder. Checks consent exclusion, no identifying value in any output,
// resume after interruption, audit with purpose research, a non-grantee
// getting nothing, and a new version after a consent revocation.
func TestDatasetFiveNodes(t *testing.T) {
	ctx := context.Background()
	n, err := devnet.Start(ctx, t.TempDir(), []string{"clinicA", "clinicB", "radiology", "replica", "researcher"},
		devnet.Options{Daemon: daemon.Options{FetchTimeout: 15 * time.Second, StallTimeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	A, B, rad, R := n.Nodes[0], n.Nodes[1], n.Nodes[2], n.Nodes[4]
	data := t.TempDir()
	pa, idsA := writeCohort(t, filepath.Join(data, "a"), 101, "CLNA", []string{"LSPINE", "LSPINE", "LSPINE"})
	pb, idsB := writeCohort(t, filepath.Join(data, "b"), 202, "CLNB", []string{"LSPINE", "KNEE  "})
	identifying := append(append(append([]string{}, idsA...), idsB...), "DEMO GENERAL HOSPITAL", "DEMO^REFERRER")
	// The search below can fail: every value is in the source files.
	var src []byte
	for _, p := range append(append([]string{}, pa...), pb...) {
		b, _ := os.ReadFile(p)
		src = append(src, b...)
	}
	for _, v := range identifying {
		if !bytes.Contains(src, []byte(v)) {
			t.Fatalf("identifying value %q is not in the source files", v)
		}
	}
	if r := dicomImport(t, A, pa...); len(r.Studies) != 3 {
		t.Fatalf("clinic A imported %d studies", len(r.Studies))
	}
	if r := dicomImport(t, B, pb...); len(r.Studies) != 2 {
		t.Fatalf("clinic B imported %d studies", len(r.Studies))
	}
	// A: patient 1 consents (MR only), patient 2 never, patient 3 consents
	// (revoked later). B: both consent; patient 2's knee is out of the query.
	consent(t, A, "/consents", api.ConsentRequest{Patient: "CLNA0001", Purpose: "research", Modality: "MR"})
	consent(t, A, "/consents", api.ConsentRequest{Patient: "CLNA0003", Purpose: "research", Expires: "8760h"})
	consent(t, A, "/consents", api.ConsentRequest{Patient: "CLNA0002", Purpose: "treatment"})
	consent(t, B, "/consents", api.ConsentRequest{Patient: "CLNB0001", Purpose: "research", BodyPart: "LSPINE"})
	consent(t, B, "/consents", api.ConsentRequest{Patient: "CLNB0002", Purpose: "research"})

	q := "modality=MR bodypart=LSPINE"
	ra := createDataset(t, A, api.DatasetCreateRequest{Name: "spine", Query: q})
	if len(ra.Studies) != 2 || ra.Counts[dataset.ReasonNoConsent] != 1 || len(ra.Excluded) != 1 {
		t.Fatalf("clinic A dataset: %+v", ra)
	}
	rb := createDataset(t, B, api.DatasetCreateRequest{Name: "spine", Query: q})
	if len(rb.Studies) != 1 || rb.Counts[dataset.ReasonNoMatch] != 1 {
		t.Fatalf("clinic B dataset: %+v", rb)
	}
	grantDataset(t, A, "spine", R)
	grantDataset(t, B, "spine", R)
	if err := n.WaitLedgerSync(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	// Interrupted fetch: cancel after 3 instances, then resume.
	out := filepath.Join(t.TempDir(), "out")
	fctx, cancel := context.WithCancel(ctx)
	_, err = R.Daemon.Research.FetchDataset(fctx, api.DatasetFetchRequest{Datasets: []string{"spine"}, Dir: out, Parallel: 2}, func(p api.DatasetProgress) {
		if p.Fetched >= 3 {
			cancel()
		}
	})
	cancel()
	if err == nil {
		t.Fatal("interrupted fetch reported success")
	}
	st, _ := os.ReadFile(filepath.Join(out, research.DatasetStateFile))
	verified := bytes.Count(st, []byte("\n"))
	if verified < 3 || verified >= 12 {
		t.Fatalf("%d instances verified before the interruption", verified)
	}
	var res api.DatasetFetchResult
	if err := R.API.Do(ctx, "POST", api.Prefix+"/datasets/fetch", api.DatasetFetchRequest{Datasets: []string{"spine"}, Dir: out}, &res); err != nil {
		t.Fatal(err)
	}
	if res.Studies != 3 || res.Instances != 12 || int(res.Skipped) != verified || res.Fetched != 12-int64(verified) || len(res.Datasets) != 2 {
		t.Fatalf("resumed fetch: %+v (verified before: %d)", res.DatasetProgress, verified)
	}

	// Outputs: 12 instances that parse as 3 de-identified studies, a
	// 13-line manifest.csv, and no identifying value in any byte.
	var files int
	filepath.WalkDir(out, func(path string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range identifying {
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("%s contains identifying value %q", path, v)
			}
		}
		if strings.HasSuffix(path, ".dcm") {
			files++
		}
		return nil
	})
	if files != 12 {
		t.Fatalf("%d DICOM files written", files)
	}
	sdirs, _ := filepath.Glob(filepath.Join(out, "2.25.*"))
	studies, err := dicom.Scan(ctx, sdirs, func(r dicom.Reject) { t.Errorf("output %s rejected: %v", r.Path, r.Err) })
	if err != nil || len(studies) != 3 {
		t.Fatalf("scan output: %d studies, %v", len(studies), err)
	}
	for _, s := range studies {
		if !strings.HasPrefix(s.PatientID, "ANON-") || s.Series[0].BodyPart != "LSPINE" {
			t.Errorf("output study: patient %q, body part %q", s.PatientID, s.Series[0].BodyPart)
		}
	}
	f, _ := os.Open(filepath.Join(out, "manifest.csv"))
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 13 {
		t.Fatalf("manifest.csv: %d rows, %v", len(rows), err)
	}

	// Every study read is audited with purpose research.
	for _, rr := range []struct {
		nd  *devnet.Node
		res api.DatasetCreateResult
	}{{A, ra}, {B, rb}} {
		for _, s := range rr.res.Studies {
			id, _ := cid.Decode(s.Record)
			eventually(t, "audit of "+s.Record, func() error {
				for _, ev := range rr.nd.Daemon.Ledger.Access(id) {
					if ev.Reader == R.ID && ev.Purpose == "research" {
						return nil
					}
				}
				return fmt.Errorf("no research access by the researcher on %s", rr.nd.Name)
			})
		}
	}

	// The radiology department has no grant: nothing by name or by ID.
	radOut := filepath.Join(t.TempDir(), "rad")
	if _, err := rad.Daemon.Research.FetchDataset(ctx, api.DatasetFetchRequest{Datasets: []string{"spine"}, Dir: radOut}, nil); err == nil {
		t.Fatal("non-grantee fetched the dataset by name")
	}
	if _, err := rad.Daemon.Research.FetchDataset(ctx, api.DatasetFetchRequest{Datasets: []string{ra.ID}, Dir: radOut}, nil); err == nil {
		t.Fatal("non-grantee fetched the dataset by ID")
	}
	if m, _ := filepath.Glob(filepath.Join(radOut, "*", "*", "*.dcm")); len(m) != 0 {
		t.Fatalf("non-grantee wrote %d files", len(m))
	}

	// Patient 3 revokes; version 2 of A's part leaves them out, the
	// researcher's grants carry over and the dropped study is revoked.
	consent(t, A, "/consents/revoke", api.ConsentRequest{Patient: "CLNA0003", Purpose: "research"})
	ra2 := createDataset(t, A, api.DatasetCreateRequest{Name: "spine", Query: q})
	if ra2.Version != 2 || ra2.Prev != ra.ID || len(ra2.Studies) != 1 || ra2.Counts[dataset.ReasonRevoked] != 1 || ra2.Revoked == 0 || len(ra2.Regranted) != 1 {
		t.Fatalf("version 2: %+v", ra2)
	}
	if !ra2.Studies[0].Reused {
		t.Error("unchanged study was de-identified again")
	}
	var dropped string
	for _, s := range ra.Studies {
		if s.Record != ra2.Studies[0].Record {
			dropped = s.Record
		}
	}
	if err := n.WaitLedgerSync(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(t.TempDir(), "out2")
	res2, err := R.Daemon.Research.FetchDataset(ctx, api.DatasetFetchRequest{Datasets: []string{"spine"}, Dir: out2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Studies != 2 || res2.Instances != 8 {
		t.Fatalf("version 2 fetch: %+v", res2.DatasetProgress)
	}
	csv2, _ := os.ReadFile(filepath.Join(out2, "manifest.csv"))
	for _, s := range ra.Studies {
		if s.Record == dropped && bytes.Contains(csv2, []byte(s.StudyUID)) {
			t.Fatal("revoked patient's study is in version 2's output")
		}
	}
	did, _ := cid.Decode(dropped)
	if _, _, _, _, err := R.Daemon.Records.Open(ctx, did, 0); err == nil {
		t.Fatal("researcher can still open the revoked patient's study")
	}
}
