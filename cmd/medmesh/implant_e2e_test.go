package main

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/fhir/fhirtest"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

// retryJSON runs a command with --json until it exits with code and ready
// accepts its stdout (ledger entries take a moment to reach a node).
func (c *cli) retryJSON(code int, ready func(out string) bool, args ...string) (string, string) {
	c.t.Helper()
	args = append(args, "--json")
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, errs, got := c.run(args...)
		if got == code && (ready == nil || ready(out)) {
			return out, errs
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("medmesh %v: exit %d (want %d)\nstdout: %s\nstderr: %s", args, got, code, out, errs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// grepTree reports the files under dir whose bytes contain s.
func grepTree(t *testing.T, dir, s string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(s)) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// TestImplantTraceabilityAndFHIRCLI is issue #17's implant story through the real
// binary on three real daemons (distributor, hospital, another clinic): a
// UDI with a wrong check digit is refused; the distributor registers and
// transfers a device to the hospital; the other clinic cannot transfer it;
// the hospital implants it into P-4711 and cannot implant it twice; the
// distributor's recall of the lot makes `implant recalls --json` on the
// hospital name P-4711, while the clinic's recall list, its ledger and its
// whole repo (badger files, uncompressed) never contain P-4711, and the
// hospital's repo has it only sealed. Then the FHIR side (checkFHIR).
func TestImplantTraceabilityAndFHIRCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three daemons")
	}
	dir := t.TempDir()
	dist := &cli{t: t, repo: filepath.Join(dir, "distributor")}
	dist.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--org", "Spine Supply")
	dist.must("network", "create", "--name", "e2e-implants")
	stop := map[*cli]func(){}
	dd := dist.startDaemon()
	stop[dist] = func() { dd.Process.Signal(syscall.SIGTERM); dd.Wait() }
	t.Cleanup(stop[dist])
	hosp := dist.invite(t, dir, "hospital", "St Mary Hospital")
	clinic := dist.invite(t, dir, "clinic", "Other Clinic")
	for _, c := range []*cli{hosp, clinic} {
		d := c.startDaemon()
		stop[c] = func() { d.Process.Signal(syscall.SIGTERM); d.Wait() }
		t.Cleanup(stop[c])
	}
	hospID, clinicID := hosp.peerID(t), clinic.peerID(t)

	// A wrong check digit: exit 2, one JSON error naming it.
	_, errs, code := dist.run("implant", "register", "--udi", "(01)09506000134353(17)301231(10)LOT42(21)SN0001", "--json")
	if code != exitInvalid || !strings.Contains(errs, "check digit") {
		t.Fatalf("wrong check digit: exit %d: %s", code, errs)
	}
	var dev api.ImplantDevice
	if err := json.Unmarshal([]byte(dist.must("implant", "register", "--udi", "(01)09506000134352(17)301231(10)LOT42(21)SN0001", "--json")), &dev); err != nil {
		t.Fatal(err)
	}
	// The hospital must be a member on the distributor's ledger first.
	dist.retryJSON(0, nil, "implant", "transfer", dev.Device, "--to", hospID)

	// The other clinic, once it sees the device, cannot move it.
	_, errs = clinic.retryJSON(exitForbidden, nil, "implant", "transfer", dev.Device, "--to", clinicID)
	if !strings.Contains(errs, "custodian") {
		t.Fatalf("clinic's transfer: %s", errs)
	}
	out, _ := hosp.retryJSON(0, nil, "implant", "use", dev.Device, "--patient", "P-4711", "--procedure", "L4-L5 posterior fusion")
	if !strings.Contains(out, `"patient": "P-4711"`) {
		t.Fatalf("use: %s", out)
	}
	_, errs, code = hosp.run("implant", "use", dev.Device, "--patient", "P-4711", "--procedure", "again", "--json")
	if code != exitConflict || !strings.Contains(errs, "implanted once") {
		t.Fatalf("second use: exit %d: %s", code, errs)
	}

	// The distributor (once it sees the use) recalls the lot.
	dist.retryJSON(0, func(out string) bool { return strings.Contains(out, `"status": "implanted"`) }, "implant", "history", dev.Device)
	dist.must("implant", "recall", "--gtin", "09506000134352", "--lot", "LOT42", "--reason", "FSCA-2026-017: screw fracture")

	recalled := func(out string) bool { return strings.Contains(out, "FSCA-2026-017") }
	out, _ = hosp.retryJSON(0, recalled, "implant", "recalls", "--mine")
	var rs []api.ImplantRecall
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || len(rs[0].Devices) != 1 || rs[0].Devices[0].Patient != "P-4711" || rs[0].Devices[0].Device != dev.Device {
		t.Fatalf("hospital's recalls: %s", out)
	}
	out, _ = clinic.retryJSON(0, recalled, "implant", "recalls")
	if strings.Contains(out, "P-4711") || !strings.Contains(out, dev.Device) {
		t.Fatalf("clinic's recalls: %s", out)
	}
	log := clinic.must("ledger", "log", "--limit", "0", "--json")
	if strings.Contains(log, "P-4711") || !strings.Contains(log, "implant.use") {
		t.Fatalf("the clinic's ledger log has P-4711, or lacks the use:\n%s", log)
	}

	checkFHIR(t, dir, hosp, clinic, dev.Device)

	// The whole of the clinic's repo, and the hospital's, once their
	// daemons are down: the patient appears in neither in clear (the
	// recall's reason, on the ledger in clear, shows the grep sees it).
	stop[clinic]()
	stop[hosp]()
	for _, c := range []*cli{clinic, hosp} {
		if hits := grepTree(t, c.repo, "P-4711"); len(hits) > 0 {
			t.Fatalf("P-4711 in clear in %v", hits)
		}
		if hits := grepTree(t, c.repo, "FSCA-2026-017"); len(hits) == 0 {
			t.Fatalf("%s: the recall's reason is nowhere in the repo: the grep sees nothing", c.repo)
		}
	}
}

// fhirGet sends an authenticated GET to the node's FHIR facade and returns
// the status and body.
func (c *cli) fhirGet(path string) (int, []byte) {
	c.t.Helper()
	cl, err := api.ClientForRepo(c.repo)
	if err != nil {
		c.t.Fatal(err)
	}
	req, err := http.NewRequest("GET", cl.Base+"/fhir"+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cl.Token)
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		c.t.Fatalf("GET /fhir%s: Content-Type %q", path, ct)
	}
	return resp.StatusCode, b
}

// fhirBundle GETs a search and returns the bundle, its raw JSON and its
// resources' types.
func (c *cli) fhirBundle(path string) ([]byte, []map[string]any) {
	c.t.Helper()
	code, b := c.fhirGet(path)
	if code != http.StatusOK {
		c.t.Fatalf("GET /fhir%s: %d\n%s", path, code, b)
	}
	var bundle struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil || bundle.ResourceType != "Bundle" || bundle.Type != "searchset" {
		c.t.Fatalf("GET /fhir%s: not a searchset Bundle: %v\n%s", path, err, b)
	}
	var rs []map[string]any
	for _, e := range bundle.Entry {
		rs = append(rs, e.Resource)
	}
	return b, rs
}

// checkFHIR: the FHIR side of the story. On the hospital, /fhir/metadata,
// /fhir/Device?udi-di=..., and after a DICOM import
// /fhir/ImagingStudy?patient=... answer with resources that are not empty
// and validate against the R4 JSON schema, as does `fhir export`'s
// collection Bundle; the other clinic serves the device without the
// patient and knows no Patient P-4711.
func checkFHIR(t *testing.T, dir string, hosp, clinic *cli, device string) {
	var produced [][]byte
	code, md := hosp.fhirGet("/metadata")
	if code != http.StatusOK || !strings.Contains(string(md), `"CapabilityStatement"`) || !strings.Contains(string(md), `"udi-di"`) {
		t.Fatalf("metadata: %d\n%s", code, md)
	}
	produced = append(produced, md)

	b, devs := hosp.fhirBundle("/Device?udi-di=09506000134352")
	if len(devs) != 1 || devs[0]["id"] != device || devs[0]["patient"] == nil || devs[0]["lotNumber"] != "LOT42" {
		t.Fatalf("hospital Device?udi-di: %s", b)
	}
	produced = append(produced, b)
	b, procs := hosp.fhirBundle("/Procedure?patient=P-4711")
	if len(procs) != 1 || !strings.Contains(string(b), "Device/"+device) {
		t.Fatalf("hospital Procedure?patient: %s", b)
	}
	produced = append(produced, b)

	study := filepath.Join(dir, "study")
	if _, err := dicomtest.WriteStudy(study, dicomtest.Options{InstancesPerSeries: 2, SeriesPerStudy: 2, Rows: 16, Cols: 16, Modality: "MR", Seed: 17}); err != nil {
		t.Fatal(err)
	}
	hosp.must("dicom", "import", study)
	b, studies := hosp.fhirBundle("/ImagingStudy?patient=" + dicomtest.PatientID(1))
	if len(studies) != 1 || studies[0]["series"] == nil || !strings.Contains(string(b), "urn:dicom:uid") {
		t.Fatalf("ImagingStudy?patient: %s", b)
	}
	produced = append(produced, b)
	if _, ms := hosp.fhirBundle("/ImagingStudy?modality=mr&patient=Patient/" + dicomtest.PatientID(1)); len(ms) != 1 {
		t.Fatal("ImagingStudy?modality=mr found nothing")
	}
	code, ep := hosp.fhirGet("/Endpoint/dicomweb")
	if code != http.StatusOK || !strings.Contains(string(ep), "/dicomweb") {
		t.Fatalf("Endpoint: %d %s", code, ep)
	}
	produced = append(produced, ep)

	out := filepath.Join(dir, "bundle.json")
	var r fhirExportResult
	if err := json.Unmarshal([]byte(hosp.must("fhir", "export", "--patient", "P-4711", "-o", out, "--json")), &r); err != nil || r.EntryCount < 3 {
		t.Fatalf("fhir export: %+v %v", r, err)
	}
	exp, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"collection"`, `"Patient"`, `"Device"`, `"Procedure"`} {
		if !strings.Contains(string(exp), want) {
			t.Fatalf("the export lacks %s:\n%s", want, exp)
		}
	}
	produced = append(produced, exp)

	// The other clinic: the device, never the patient.
	b, devs = clinic.fhirBundle("/Device?udi-di=09506000134352")
	if len(devs) != 1 || devs[0]["patient"] != nil || strings.Contains(string(b), "P-4711") {
		t.Fatalf("clinic Device?udi-di: %s", b)
	}
	produced = append(produced, b)
	if code, b := clinic.fhirGet("/Patient/P-4711"); code != http.StatusNotFound {
		t.Fatalf("clinic Patient/P-4711: %d %s", code, b)
	}
	if _, errs, code := clinic.run("fhir", "export", "--patient", "P-4711", "-o", filepath.Join(dir, "x.json"), "--json"); code != exitNotFound || !strings.Contains(errs, "not known") {
		t.Fatalf("clinic fhir export: exit %d %s", code, errs)
	}

	if ok, why := fhirtest.Available(); !ok {
		t.Logf("FHIR answers not validated against the R4 JSON schema: %s", why)
		return
	}
	res := fhirtest.Validate(t, produced...)
	t.Logf("FHIR: %d answers validated against the R4 JSON schema (%d devices, %d studies)", len(res), len(devs), len(studies))
}
