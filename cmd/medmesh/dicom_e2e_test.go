package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
	lib "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// dicomTestdata returns the shared DICOM test data directory, or "" (with a
// log line saying so) when it is absent.
func dicomTestdata(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("MEDMESH_DICOM_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "testdata", "dicom")
	}
	abs, err := filepath.Abs(dir)
	if err == nil {
		if _, err = os.Stat(filepath.Join(abs, "MANIFEST.md")); err == nil {
			return abs
		}
	}
	t.Logf("shared DICOM test data not found at %s (set MEDMESH_DICOM_TESTDATA): using synthetic files only", dir)
	return ""
}

// conformantUID is PS3.5 9.1, written independently of storage/dicom.
var uidRE = regexp.MustCompile(`^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$`)

func conformantUID(s string) bool { return len(s) <= 64 && uidRE.MatchString(s) }

// dicomNode is one initialised node with a running daemon.
func dicomNode(t *testing.T) *cli {
	t.Helper()
	c := &cli{t: t, repo: filepath.Join(t.TempDir(), "node")}
	c.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0")
	c.must("network", "create", "--name", "e2e-dicom")
	d := c.startDaemon()
	t.Cleanup(func() { d.Process.Signal(syscall.SIGTERM); d.Wait() })
	return c
}

// dicomweb sends an authenticated request to the node's DICOMweb API.
func (c *cli) dicomweb(path, accept string) *http.Response {
	c.t.Helper()
	cl, err := api.ClientForRepo(c.repo)
	if err != nil {
		c.t.Fatal(err)
	}
	req, err := http.NewRequest("GET", cl.Base+"/dicomweb"+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cl.Token)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// dcmdumpOK checks that dcmtk's dcmdump parses the file without an error.
func dcmdumpOK(t *testing.T, path string) {
	t.Helper()
	bin, err := exec.LookPath("dcmdump")
	if err != nil {
		t.Logf("dcmdump not installed (apt-get install dcmtk): %s not checked with dcmtk", path)
		return
	}
	out, err := exec.Command(bin, "-M", "+L", path).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("E: ")) {
		t.Errorf("dcmdump rejects %s: %v\n%s", path, err, out)
	}
}

func findFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDicomNonConformantUIDsCLI: instances whose UIDs are not conformant
// (64 hex digits as an archive wrote them, too long, leading zeros, letters)
// import with a warning per instance, and then export (byte for byte),
// deidentify (to conformant UIDs) and DICOMweb (QIDO-RS, WADO-RS) work on
// them, through the real CLI and daemon.
func TestDicomNonConformantUIDsCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	// The source instance: a real CT from the shared test data, or a
	// synthetic one.
	base := ""
	if td := dicomTestdata(t); td != "" {
		base = filepath.Join(td, "valid", "ct_small_explicit_le.dcm")
	} else {
		ps, err := dicomtest.WriteStudy(filepath.Join(dir, "synth"), dicomtest.Options{Rows: 8, Cols: 8})
		if err != nil {
			t.Fatal(err)
		}
		base = ps[0]
	}
	const hexStudy = "3f9a0c1e2b4d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8" // 64 hex digits
	const hexSeries = "0e5d4c3b2a19f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a392817060"
	sops := []string{
		"aa0c1e2b4d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9", // hex
		"1.2.840.99999." + strings.Repeat("1234567890", 7),                 // 84 characters
		"1.2.0003.004.5", // leading zeros
		"1.2.3.4.5a",     // a letter
	}
	var paths []string
	for i, sop := range sops {
		p := filepath.Join(src, "I"+string(rune('1'+i))+".dcm")
		if err := dicomtest.RewriteUIDs(base, p, hexStudy, hexSeries, sop); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	// One UID no file system or URL can carry is refused with a clear error.
	bad := filepath.Join(dir, "bad.dcm")
	if err := dicomtest.RewriteUIDs(base, bad, "1.2.3/../../etc", "", "1.2.3.9"); err != nil {
		t.Fatal(err)
	}

	c := dicomNode(t)

	// Import: exit 0, a warning per instance, nothing rejected.
	out, errs, code := c.run("dicom", "import", src, "--json")
	if code != 0 {
		t.Fatalf("dicom import: exit %d: %s", code, errs)
	}
	var imp struct {
		api.DicomImportResult
		Warnings []struct {
			Path    string `json:"path"`
			Warning string `json:"warning"`
		} `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(out), &imp); err != nil {
		t.Fatalf("import --json: %v\n%s", err, out)
	}
	if len(imp.Studies) != 1 || imp.Studies[0].Instances != len(sops) || len(imp.Rejected) != 0 || imp.Studies[0].StudyUID != hexStudy {
		t.Fatalf("import --json: %s", out)
	}
	if len(imp.Warnings) != len(sops) {
		t.Fatalf("import --json: %d warnings, want one per instance (%d): %s", len(imp.Warnings), len(sops), out)
	}
	for _, w := range imp.Warnings {
		if !strings.Contains(w.Warning, "conformant") || w.Path == "" {
			t.Errorf("warning %+v does not say what is wrong", w)
		}
	}
	if _, errs, code := c.run("dicom", "import", src); code != 0 || !strings.Contains(errs, "warning") {
		t.Errorf("plain import again: exit %d, stderr %q: want 0 and the warnings", code, errs)
	}
	out, errs, code = c.run("dicom", "import", bad, "--json")
	if code == 0 || !strings.Contains(out, "rejected") || !strings.Contains(out, "1.2.3/../../etc") {
		t.Errorf("import of a UID with slashes: exit %d, %s %s", code, out, errs)
	}
	id := imp.Studies[0].ID

	// Query lists it.
	var hits []api.DicomStudyHit
	if err := json.Unmarshal([]byte(c.must("dicom", "query", "--study", hexStudy, "--json")), &hits); err != nil || len(hits) != 1 || hits[0].ID != id {
		t.Fatalf("dicom query --study: %+v %v", hits, err)
	}

	// Export: every file byte for byte, under its UIDs.
	exp := filepath.Join(dir, "export")
	var er api.DicomExportResult
	if err := json.Unmarshal([]byte(c.must("dicom", "export", id, "-o", exp, "--json")), &er); err != nil || er.Instances != len(sops) {
		t.Fatalf("dicom export --json: %+v %v", er, err)
	}
	for i, sop := range sops {
		p := filepath.Join(exp, hexStudy, hexSeries, sop+".dcm")
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("exported instance %s: %v", sop, err)
		}
		want, _ := os.ReadFile(paths[i])
		if !bytes.Equal(got, want) {
			t.Errorf("exported %s differs from the imported file", sop)
		}
		dcmdumpOK(t, p) // dcmtk reads such UIDs, as medmesh now does
	}
	if _, _, code := c.run("dicom", "export", id, "-o", filepath.Join(dir, "series"), "--series", hexSeries); code != 0 {
		t.Errorf("dicom export --series %s: exit %d", hexSeries, code)
	}

	// De-identify: conformant new UIDs, dcmtk parses every file.
	var dr api.DicomDeidResult
	if err := json.Unmarshal([]byte(c.must("dicom", "deidentify", id, "--json")), &dr); err != nil || dr.Instances != len(sops) {
		t.Fatalf("dicom deidentify --json: %+v %v", dr, err)
	}
	if !conformantUID(dr.StudyUID) {
		t.Errorf("de-identified study UID %q is not conformant", dr.StudyUID)
	}
	dexp := filepath.Join(dir, "deid")
	c.must("dicom", "export", dr.ID, "-o", dexp)
	files := findFiles(t, dexp)
	if len(files) != len(sops) {
		t.Fatalf("de-identified export: %d files", len(files))
	}
	for _, f := range files {
		in, err := dicom.ParseFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range []string{in.StudyInstanceUID, in.SeriesInstanceUID, in.SOPInstanceUID} {
			if !conformantUID(u) {
				t.Errorf("%s: UID %q is not conformant after de-identification", f, u)
			}
		}
		b, _ := os.ReadFile(f)
		for _, u := range append([]string{hexStudy, hexSeries}, sops...) {
			if bytes.Contains(b, []byte(u)) {
				t.Errorf("%s: original UID %q survives de-identification", f, u)
			}
		}
		dcmdumpOK(t, f)
	}

	// QIDO-RS finds the study and its instances; WADO-RS sends them back.
	resp := c.dicomweb("/studies?StudyInstanceUID="+hexStudy, "")
	var qido []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&qido); err != nil || resp.StatusCode != 200 || len(qido) != 1 {
		t.Fatalf("QIDO-RS studies: %d %v %v", resp.StatusCode, qido, err)
	}
	resp = c.dicomweb("/studies/"+hexStudy+"/series/"+hexSeries+"/instances", "")
	if err := json.NewDecoder(resp.Body).Decode(&qido); err != nil || resp.StatusCode != 200 || len(qido) != len(sops) {
		t.Fatalf("QIDO-RS instances: %d %v %v", resp.StatusCode, qido, err)
	}
	resp = c.dicomweb("/studies/"+hexStudy, `multipart/related; type="application/dicom"`)
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("WADO-RS study: %d %s", resp.StatusCode, b)
	}
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	n := 0
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("WADO-RS body: %v", err)
		}
		b, _ := io.ReadAll(p)
		found := false
		for _, sp := range paths {
			want, _ := os.ReadFile(sp)
			found = found || bytes.Equal(b, want)
		}
		if !found {
			t.Errorf("WADO-RS part %d is none of the imported files", n)
		}
		n++
	}
	if n != len(sops) {
		t.Errorf("WADO-RS sent %d instances, want %d", n, len(sops))
	}
	resp = c.dicomweb("/studies/"+hexStudy+"/series/"+hexSeries+"/instances/"+url.PathEscape(sops[0])+"/metadata", "")
	var meta []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&meta); err != nil || resp.StatusCode != 200 || len(meta) != 1 {
		t.Fatalf("WADO-RS metadata: %d %v %v", resp.StatusCode, meta, err)
	}
}

// contextGroupVersion is the encoding (Explicit VR Little Endian) of a
// Context Group Version (0008,0106) element with value v.
func contextGroupVersion(v string) []byte {
	if len(v)%2 == 1 {
		v += " "
	}
	b := []byte{0x08, 0x00, 0x06, 0x01, 'D', 'T'}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// TestDicomShiftDatesKeepsCodeSetVersionsCLI: `dicom deidentify
// --shift-dates` shifts the patient's timeline (study date) but leaves the
// Context Group Version (0008,0106) of code sequences, a code-set version of
// VR DT, byte for byte as it was. The source is the shared test data's
// TCIA PET (whose code sequences carry it) when present, and a synthetic CT
// with a coded sequence always.
func TestDicomShiftDatesKeepsCodeSetVersionsCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon")
	}
	dir := t.TempDir()
	const version = "20020904000000.000000"
	code := func(value, meaning string) []*lib.Element {
		var out []*lib.Element
		for _, e := range []struct {
			t tag.Tag
			v string
		}{{tag.CodeValue, value}, {tag.CodingSchemeDesignator, "SCT"}, {tag.CodeMeaning, meaning}, {tag.MappingResource, "DCMR"}, {tag.ContextGroupVersion, version}, {tag.ContextIdentifier, "4031"}} {
			el, err := lib.NewElement(e.t, []string{e.v})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, el)
		}
		return out
	}
	anat, err := lib.NewElement(tag.AnatomicRegionSequence, [][]*lib.Element{code("51185008", "Thorax")})
	if err != nil {
		t.Fatal(err)
	}
	synth := filepath.Join(dir, "synth")
	if _, err := dicomtest.WriteStudy(synth, dicomtest.Options{Rows: 8, Cols: 8, Seed: 9, ExtraElements: []*lib.Element{anat}}); err != nil {
		t.Fatal(err)
	}
	sources := []string{synth}
	if td := dicomTestdata(t); td != "" {
		pet := filepath.Join(dir, "pet")
		os.MkdirAll(pet, 0o755)
		b, err := os.ReadFile(filepath.Join(td, "valid", "pet_tcia_acrin_flt_breast.dcm"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(pet, "pet.dcm"), b, 0o644)
		sources = append(sources, pet)
	}

	c := dicomNode(t)
	for _, src := range sources {
		orig := findFiles(t, src)[0]
		ob, _ := os.ReadFile(orig)
		cgv := contextGroupVersion(version)
		nOrig := bytes.Count(ob, cgv)
		if nOrig == 0 {
			t.Fatalf("%s: no Context Group Version %q to check", orig, version)
		}
		in, err := dicom.ParseFile(orig)
		if err != nil {
			t.Fatal(err)
		}
		var imp api.DicomImportResult
		if err := json.Unmarshal([]byte(c.must("dicom", "import", src, "--json")), &imp); err != nil || len(imp.Studies) != 1 {
			t.Fatalf("import %s: %+v %v", src, imp, err)
		}
		var dr api.DicomDeidResult
		if err := json.Unmarshal([]byte(c.must("dicom", "deidentify", imp.Studies[0].ID, "--shift-dates", "--json")), &dr); err != nil || dr.Instances != 1 {
			t.Fatalf("deidentify --shift-dates %s: %+v %v", src, dr, err)
		}
		exp := filepath.Join(dir, "out-"+filepath.Base(src))
		c.must("dicom", "export", dr.ID, "-o", exp)
		files := findFiles(t, exp)
		if len(files) != 1 {
			t.Fatalf("export of the de-identified study: %v", files)
		}
		out, _ := os.ReadFile(files[0])
		if n := bytes.Count(out, cgv); n != nOrig {
			t.Errorf("%s: %d Context Group Version elements are %q byte for byte after --shift-dates, want %d", src, n, version, nOrig)
		}
		got, err := dicom.ParseFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if got.StudyDate == "" || got.StudyDate == in.StudyDate {
			t.Errorf("%s: study date %q -> %q: not shifted", src, in.StudyDate, got.StudyDate)
		}
		dcmdumpOK(t, files[0])
	}
}

// TestDicomQueryModalityCaseInsensitiveCLI: `dicom query --modality ct`
// finds CT studies, QIDO-RS ModalitiesInStudy too; a modality the node has
// never seen is an empty answer, not an error (modalities are open-ended).
func TestDicomQueryModalityCaseInsensitiveCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon")
	}
	dir := t.TempDir()
	if _, err := dicomtest.WriteStudy(dir, dicomtest.Options{Rows: 8, Cols: 8, Modality: "CT", Seed: 5}); err != nil {
		t.Fatal(err)
	}
	c := dicomNode(t)
	var imp api.DicomImportResult
	if err := json.Unmarshal([]byte(c.must("dicom", "import", dir, "--json")), &imp); err != nil || len(imp.Studies) != 1 {
		t.Fatalf("import: %+v %v", imp, err)
	}
	for _, m := range []string{"CT", "ct", "Ct"} {
		var hits []api.DicomStudyHit
		if err := json.Unmarshal([]byte(c.must("dicom", "query", "--modality", m, "--json")), &hits); err != nil || len(hits) != 1 || hits[0].ID != imp.Studies[0].ID {
			t.Errorf("dicom query --modality %s: %+v %v", m, hits, err)
		}
		resp := c.dicomweb("/studies?ModalitiesInStudy="+m, "")
		var qido []map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&qido); err != nil || resp.StatusCode != 200 || len(qido) != 1 {
			t.Errorf("QIDO-RS ModalitiesInStudy=%s: %d %v %v", m, resp.StatusCode, qido, err)
		}
	}
	out, errs, code := c.run("dicom", "query", "--modality", "zz", "--json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("dicom query --modality zz: exit %d, %q %s: want 0 and []", code, out, errs)
	}
	if _, errs, code := c.run("dicom", "query", "--modality", "zz"); code != 0 || !strings.Contains(errs, "not a DICOM defined term") {
		t.Errorf("plain dicom query --modality zz: exit %d, stderr %q: want 0 and a hint about the defined terms", code, errs)
	}
	if out := c.must("dicom", "query", "--modality", "mr"); strings.Contains(out, imp.Studies[0].ID) {
		t.Errorf("dicom query --modality mr lists the CT study:\n%s", out)
	}
}
