package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

// TestDatasetCLI drives the research-dataset flow through the real CLI and
// two real daemons, as an operator would (scripts/bench-dataset.sh does the
// same, but only as a benchmark, as root, and is not run by `go test`): a
// clinic (network admin) invites a researcher; the clinic imports synthetic
// studies, records research consent for some patients, publishes a dataset
// and grants it; the researcher lists it, fetches it, and fetches it again
// (resume: nothing refetched; a damaged file is refetched alone). It checks
// that the consent check left out the patient without consent, that the
// fetched files and manifest.csv agree with each other, that no identifying
// value of the source files reaches the researcher, and that fetching an
// unknown dataset fails clearly and writes nothing.
func TestDatasetCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two daemons")
	}
	dir := t.TempDir()
	clinic := &cli{t: t, repo: filepath.Join(dir, "clinic")}
	res := &cli{t: t, repo: filepath.Join(dir, "researcher")}

	// Network: the clinic creates it, invites the researcher, who joins.
	clinic.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--org", "clinic")
	clinic.must("network", "create", "--name", "e2e-dataset")
	cd := clinic.startDaemon()
	defer func() { cd.Process.Signal(syscall.SIGTERM); cd.Wait() }()
	res.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--org", "lab")
	var rid api.IDInfo
	if err := json.Unmarshal([]byte(res.must("id", "--json")), &rid); err != nil || rid.Peer == "" {
		t.Fatalf("researcher id --json: %+v %v", rid, err)
	}
	var inv api.InviteResult
	if err := json.Unmarshal([]byte(clinic.must("network", "invite", "--peer", rid.Peer, "--org", "lab", "--json")), &inv); err != nil || inv.Token == "" {
		t.Fatalf("network invite --json: %+v %v", inv, err)
	}
	res.must("network", "join", inv.Token)
	rd := res.startDaemon()
	defer func() { rd.Process.Signal(syscall.SIGTERM); rd.Wait() }()

	// Data: three synthetic patients, one MR study each; research consent
	// for patients 1 and 2 only.
	const patients, perStudy = 3, 3
	src := filepath.Join(dir, "modality-out")
	files, err := dicomtest.WriteStudy(src, dicomtest.Options{Patients: patients, InstancesPerSeries: perStudy, Rows: 32, Cols: 32, Modality: "MR", Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	identifying := []string{"DEMO GENERAL HOSPITAL", "DEMO^REFERRER"}
	for p := 1; p <= patients; p++ {
		identifying = append(identifying, dicomtest.PatientName(p), dicomtest.PatientID(p), dicomtest.UID(11, "study", p), dicomtest.UID(11, "series", p, 1))
	}
	var srcBytes []byte
	for _, f := range files {
		b, _ := os.ReadFile(f)
		srcBytes = append(srcBytes, b...)
	}
	for _, v := range identifying { // so that their absence below means something
		if !bytes.Contains(srcBytes, []byte(v)) {
			t.Fatalf("identifying value %q is not in the source files", v)
		}
	}
	for p := 1; p <= 2; p++ {
		var ci api.ConsentInfo
		if err := json.Unmarshal([]byte(clinic.must("consent", "add", "--patient", dicomtest.PatientID(p), "--purpose", "research", "--json")), &ci); err != nil || ci.Purpose != "research" || ci.Entry == "" {
			t.Fatalf("consent add --json: %+v %v", ci, err)
		}
	}
	var imp api.DicomImportResult
	if err := json.Unmarshal([]byte(clinic.must("dicom", "import", src, "--json")), &imp); err != nil || len(imp.Studies) != patients || len(imp.Rejected) != 0 {
		t.Fatalf("dicom import --json: %+v %v", imp, err)
	}
	var ids []string
	for _, s := range imp.Studies {
		ids = append(ids, s.ID)
	}

	// Publish: the study without consent is left out.
	const name = "e2e-cohort"
	var created api.DatasetCreateResult
	if err := json.Unmarshal([]byte(clinic.must("dataset", "create", name, "--records", strings.Join(ids, ","), "--json")), &created); err != nil {
		t.Fatalf("dataset create --json: %v", err)
	}
	if created.Name != name || created.Version != 1 || created.ID == "" || len(created.Studies) != 2 || len(created.Excluded) != 1 {
		t.Fatalf("dataset create: want 2 studies and 1 left out (no consent), got %+v", created)
	}
	wantInstances := 2 * perStudy

	// Grant: the clinic may not know the researcher's key-wrapping key until
	// the researcher's announcement reached its ledger; retry until then.
	var grants []api.DatasetGrantResult
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, errs, code := clinic.run("dataset", "grant", name, "--to", rid.Peer, "--json")
		if code == 0 {
			if err := json.Unmarshal([]byte(out), &grants); err != nil {
				t.Fatalf("dataset grant --json: %v\n%s", err, out)
			}
			break
		}
		if !strings.Contains(errs, "has not announced a key-wrapping key") || time.Now().After(deadline) {
			t.Fatalf("dataset grant: exit %d: %s", code, errs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(grants) != 1 || grants[0].Dataset != created.ID || grants[0].Grantee != rid.Peer || grants[0].Records != 3 {
		t.Fatalf("dataset grant: %+v", grants)
	}

	// The researcher sees it once the grant reached its ledger.
	var seen api.DatasetInfo
	deadline = time.Now().Add(15 * time.Second)
	for seen.ID == "" {
		var ds []api.DatasetInfo
		if err := json.Unmarshal([]byte(res.must("dataset", "ls", "--json")), &ds); err != nil {
			t.Fatalf("dataset ls --json: %v", err)
		}
		for _, d := range ds {
			if d.Name == name {
				seen = d
			}
		}
		if seen.ID == "" {
			if time.Now().After(deadline) {
				t.Fatalf("researcher's dataset ls never showed %q: %+v", name, ds)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if seen.ID != created.ID || seen.Mine || seen.Studies != 2 || seen.Instances != wantInstances || seen.Version != 1 {
		t.Fatalf("researcher's dataset ls: %+v", seen)
	}

	// Fetch.
	out := filepath.Join(dir, "fetched")
	fetch := func() api.DatasetFetchResult {
		t.Helper()
		var fr api.DatasetFetchResult
		if err := json.Unmarshal([]byte(res.must("dataset", "fetch", name, "-o", out, "--json")), &fr); err != nil {
			t.Fatalf("dataset fetch --json: %v", err)
		}
		if !fr.Done || fr.Studies != 2 || fr.StudiesDone != 2 || fr.Instances != int64(wantInstances) || fr.Dir != out || fr.CSV != filepath.Join(out, "manifest.csv") {
			t.Fatalf("dataset fetch: %+v", fr)
		}
		return fr
	}
	if fr := fetch(); fr.Fetched != int64(wantInstances) || fr.Skipped != 0 || fr.BytesFetched != seen.Size {
		t.Fatalf("first fetch: want %d fetched, 0 skipped, %d bytes; got %+v", wantInstances, seen.Size, fr)
	}

	// manifest.csv lists every instance; each listed file is there with
	// the listed size and SHA-256.
	f, err := os.Open(filepath.Join(out, "manifest.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	wantHeader := "patient,study_uid,series_uid,sop_instance_uid,modality,body_part,path,size,sha256,dataset,version"
	if len(rows) == 0 || strings.Join(rows[0], ",") != wantHeader {
		t.Fatalf("manifest.csv header: %v", rows)
	}
	if len(rows)-1 != wantInstances {
		t.Fatalf("manifest.csv lists %d instances, want %d", len(rows)-1, wantInstances)
	}
	listed := map[string]bool{}
	sops := map[string]bool{}
	for _, r := range rows[1:] {
		path, size, sum := r[6], r[7], r[8]
		if r[9] != name || r[10] != "1" || r[4] != "MR" || r[2] == "" || r[1] == "" {
			t.Errorf("manifest.csv row: %v", r)
		}
		if want := filepath.ToSlash(filepath.Join(r[1], r[2], r[3]+".dcm")); path != want {
			t.Errorf("manifest.csv path %s, want %s", path, want)
		}
		sops[r[3]] = true
		b, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(path)))
		if err != nil {
			t.Errorf("listed file: %v", err)
			continue
		}
		h := sha256.Sum256(b)
		if hex.EncodeToString(h[:]) != sum || size != strconv.Itoa(len(b)) {
			t.Errorf("%s: size %d sha256 %x, manifest.csv says %s %s", path, len(b), h, size, sum)
		}
		if len(b) < 132 || string(b[128:132]) != "DICM" {
			t.Errorf("%s is not a DICOM Part 10 file", path)
		}
		listed[path] = true
	}
	if len(sops) != wantInstances {
		t.Errorf("manifest.csv: %d distinct SOP Instance UIDs, want %d", len(sops), wantInstances)
	}
	// Every .dcm in the folder is listed; no fetched byte (files, manifest,
	// state) carries an identifying value of the sources.
	var dcm []string
	err = filepath.WalkDir(out, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		if strings.HasSuffix(p, ".dcm") {
			dcm = append(dcm, rel)
			if !listed[filepath.ToSlash(rel)] {
				t.Errorf("%s is not in manifest.csv", rel)
			}
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, v := range identifying {
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("%s contains identifying value %q", rel, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dcm) != wantInstances {
		t.Fatalf("%d .dcm files fetched, want %d: %v", len(dcm), wantInstances, dcm)
	}

	// Fetch again into the same folder: every file verified, none fetched.
	if fr := fetch(); fr.Fetched != 0 || fr.Skipped != int64(wantInstances) || fr.BytesFetched != 0 {
		t.Fatalf("second fetch: want 0 fetched, %d skipped; got %+v", wantInstances, fr)
	}
	// A damaged file is refetched, and only it.
	damaged := filepath.Join(out, dcm[0])
	good, _ := os.ReadFile(damaged)
	os.WriteFile(damaged, good[:len(good)/2], 0o600)
	if fr := fetch(); fr.Fetched != 1 || fr.Skipped != int64(wantInstances-1) {
		t.Fatalf("fetch after damaging %s: want 1 fetched, %d skipped; got %+v", dcm[0], wantInstances-1, fr)
	}
	if b, _ := os.ReadFile(damaged); !bytes.Equal(b, good) {
		t.Fatalf("%s was not restored by the refetch", dcm[0])
	}

	// An unknown dataset: a clear error, exit 4 (not found), nothing written.
	nowhere := filepath.Join(dir, "nowhere")
	_, errs, code := res.run("dataset", "fetch", "no-such-dataset", "-o", nowhere)
	if code != exitNotFound || !strings.Contains(errs, `no readable dataset named "no-such-dataset"`) {
		t.Fatalf("fetch of an unknown dataset: exit %d: %s", code, errs)
	}
	if strings.Contains(errs, "again to resume") {
		t.Fatalf("a refusal must not suggest retrying: %s", errs)
	}
	if _, err := os.Stat(nowhere); !os.IsNotExist(err) {
		t.Fatalf("fetch of an unknown dataset created %s (%v)", nowhere, err)
	}
}
