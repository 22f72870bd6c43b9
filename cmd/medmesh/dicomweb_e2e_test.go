package main

import (
	"bytes"
	"encoding/json"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

// TestDICOMwebViewer is the DICOMweb "done when", through the real
// binary: a node configured with `medmesh config set dicomweb.cors_origins`
// answers a browser viewer's preflight, QIDO-RS /series and /instances
// from the root, a lower-case fuzzy name search, frames, a 406 for a
// transfer syntax it cannot produce and a transcoded part for one it can.
func TestDICOMwebViewer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon")
	}
	dir := t.TempDir()
	c := &cli{t: t, repo: filepath.Join(dir, "node")}
	c.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0")
	c.must("network", "create", "--name", "e2e-dicomweb")
	c.must("config", "set", "dicomweb.cors_origins", "https://viewer.example.org")
	if _, errs, code := c.run("config", "set", "dicomweb.cors_origins", "viewer.example.org/path", "--json"); code != exitInvalid || !strings.Contains(errs, "origin") {
		t.Fatalf("a bad origin: exit %d %s", code, errs)
	}
	d := c.startDaemon()
	defer func() { d.Process.Signal(syscall.SIGTERM); d.Wait() }()

	src := filepath.Join(dir, "study")
	files, err := dicomtest.WriteStudy(src, dicomtest.Options{SeriesPerStudy: 2, InstancesPerSeries: 3, Rows: 32, Cols: 32, Modality: "CT", Seed: 14})
	if err != nil {
		t.Fatal(err)
	}
	var jpegFile string
	if td := dicomTestdata(t); td != "" {
		jpegFile = filepath.Join(td, "valid", "us_ybr_30frame_jpeg_baseline.dcm")
		files = append(files, jpegFile)
	}
	imp := decode[api.DicomImportResult](t, c.must(append([]string{"dicom", "import", "--json"}, files...)...))
	if len(imp.Rejected) != 0 {
		t.Fatalf("import: %+v", imp)
	}
	first, err := dicom.ParseFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	cl, err := api.ClientForRepo(c.repo)
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string, h map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", cl.Base+"/dicomweb"+path, nil)
		req.Header.Set("Authorization", "Bearer "+cl.Token)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	jsonList := func(path string) []map[string]any {
		t.Helper()
		resp := get(path, nil)
		b, _ := io.ReadAll(resp.Body)
		var out []map[string]any
		if resp.StatusCode != 200 || json.Unmarshal(b, &out) != nil {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return out
	}

	// A browser viewer's preflight, without the token.
	req, _ := http.NewRequest("OPTIONS", cl.Base+"/dicomweb/studies", nil)
	req.Header.Set("Origin", "https://viewer.example.org")
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "authorization, accept")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://viewer.example.org" {
		t.Fatalf("CORS preflight: %d %v", resp.StatusCode, resp.Header)
	}
	req.Header.Set("Origin", "https://other.example.org")
	if resp, _ := http.DefaultClient.Do(req); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("CORS preflight from another origin: %d", resp.StatusCode)
	}

	// QIDO-RS from the root; a lower-case fuzzy name search.
	want := 6
	if jpegFile != "" {
		want++
	}
	if got := jsonList("/instances"); len(got) != want {
		t.Fatalf("/instances: %d, want %d", len(got), want)
	}
	if got := jsonList("/series?StudyInstanceUID=" + first.StudyInstanceUID); len(got) != 2 {
		t.Fatalf("/series: %d", len(got))
	}
	fuzzy := strings.ToLower(strings.Split(first.PatientName, "^")[1]) // "patient1"
	if got := jsonList("/studies?PatientName=" + fuzzy + "&fuzzymatching=true"); len(got) != 1 {
		t.Fatalf("fuzzy %q: %v", fuzzy, got)
	}

	// Frames.
	inst := "/studies/" + first.StudyInstanceUID + "/series/" + first.SeriesInstanceUID + "/instances/" + first.SOPInstanceUID
	resp = get(inst+"/frames/1", map[string]string{"Accept": `multipart/related; type="application/octet-stream"`})
	frames := multipartBodies(t, resp)
	if len(frames) != 1 || len(frames[0]) != 32*32*2 {
		t.Fatalf("frames: %d parts", len(frames))
	}
	if resp := get(inst+"/rendered", nil); resp.StatusCode != 200 {
		t.Fatalf("rendered: %d", resp.StatusCode)
	} else if _, err := png.Decode(resp.Body); err != nil {
		t.Fatalf("rendered: %v", err)
	}

	// Transfer syntaxes: a transcoded part, and 406 for a compressed one.
	resp = get(inst, map[string]string{"Accept": `multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2`})
	parts := multipartBodies(t, resp)
	if len(parts) != 1 {
		t.Fatalf("transcoded: %d parts", len(parts))
	}
	tin, err := dicom.ParseReader(bytes.NewReader(parts[0]), int64(len(parts[0])))
	if err != nil || tin.TransferSyntax != dicom.ImplicitVRLittleEndian || tin.SOPInstanceUID != first.SOPInstanceUID {
		t.Fatalf("transcoded part: %+v %v", tin, err)
	}
	if jpegFile != "" {
		us, err := dicom.ParseFile(jpegFile)
		if err != nil {
			t.Fatal(err)
		}
		resp := get("/studies/"+us.StudyInstanceUID, map[string]string{"Accept": `multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1`})
		if resp.StatusCode != http.StatusNotAcceptable {
			t.Fatalf("JPEG study as Explicit VR Little Endian: %d, want 406", resp.StatusCode)
		}
		resp = get("/studies/"+us.StudyInstanceUID+"/series/"+us.SeriesInstanceUID+"/instances/"+us.SOPInstanceUID+"/frames/2,29",
			map[string]string{"Accept": `multipart/related; type="image/jpeg"`})
		if fr := multipartBodies(t, resp); len(fr) != 2 || !bytes.HasPrefix(fr[1], []byte{0xFF, 0xD8}) {
			t.Fatalf("JPEG frames: %d", len(fr))
		}
	}
}

func multipartBodies(t *testing.T, resp *http.Response) [][]byte {
	t.Helper()
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != 200 || err != nil || mt != "multipart/related" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: %d %q %s", resp.Request.URL.Path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	var out [][]byte
	mr := multipart.NewReader(resp.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		out = append(out, b)
	}
}

// orthancDicomWebPlugin is where Debian's orthanc-dicomweb puts the plugin.
const orthancDicomWebPlugin = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"

// TestDICOMwebOrthanc: Orthanc's DICOMweb plugin as a client of the node
// (a DICOMweb client we did not write): QIDO-RS at every level, WADO-RS
// retrieval of a study into Orthanc (the data sets the node stores), and
// STOW-RS from Orthanc into the node.
func TestDICOMwebOrthanc(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon and Orthanc")
	}
	needTools(t, "Orthanc")
	if _, err := os.Stat(orthancDicomWebPlugin); err != nil {
		t.Skip("orthanc-dicomweb not installed (apt-get install orthanc-dicomweb): skipping")
	}
	dir := t.TempDir()
	c := &cli{t: t, repo: filepath.Join(dir, "node")}
	apiAddr := "127.0.0.1:" + freePort(t)
	c.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", apiAddr)
	c.must("network", "create", "--name", "e2e-orthanc-dicomweb")
	d := c.startDaemon()
	defer func() { d.Process.Signal(syscall.SIGTERM); d.Wait() }()
	files, err := dicomtest.WriteStudy(filepath.Join(dir, "study"), dicomtest.Options{SeriesPerStudy: 2, InstancesPerSeries: 3, Rows: 32, Cols: 32, Modality: "MR", Seed: 31})
	if err != nil {
		t.Fatal(err)
	}
	imp := decode[api.DicomImportResult](t, c.must(append([]string{"dicom", "import", "--json"}, files...)...))
	first, err := dicom.ParseFile(files[0])
	if err != nil || len(imp.Studies) != 1 {
		t.Fatalf("import: %+v %v", imp, err)
	}
	tok, err := os.ReadFile(filepath.Join(c.repo, "api.token"))
	if err != nil {
		t.Fatal(err)
	}
	o := startOrthancWith(t, dir, "MEDMESH", "127.0.0.1:1", map[string]any{
		"Plugins": []string{orthancDicomWebPlugin},
		"DicomWeb": map[string]any{"Enable": true, "Root": "/dicom-web/", "Servers": map[string]any{
			"medmesh": map[string]any{"Url": "http://" + apiAddr + "/dicomweb/", "HttpHeaders": map[string]string{"Authorization": "Bearer " + strings.TrimSpace(string(tok))}},
		}},
	})

	// QIDO-RS at every level, from Orthanc.
	for _, q := range []struct {
		uri  string
		args map[string]string
		want int
	}{
		{"/studies", map[string]string{"PatientName": "demo*"}, 1},
		{"/series", map[string]string{"StudyInstanceUID": first.StudyInstanceUID}, 2},
		{"/instances", map[string]string{"StudyInstanceUID": first.StudyInstanceUID}, 6},
		{"/studies/" + first.StudyInstanceUID + "/series/" + first.SeriesInstanceUID + "/instances", map[string]string{}, 3},
	} {
		var got []map[string]any
		o.post(t, "/dicom-web/servers/medmesh/qido", map[string]any{"Uri": q.uri, "Arguments": q.args}, &got)
		if len(got) != q.want {
			t.Errorf("Orthanc's QIDO-RS %s %v: %d results, want %d", q.uri, q.args, len(got), q.want)
		}
	}

	// WADO-RS: Orthanc retrieves the study; it holds the data sets the
	// node stores.
	o.post(t, "/dicom-web/servers/medmesh/retrieve", map[string]any{"Resources": []map[string]string{{"Study": first.StudyInstanceUID}}, "Synchronous": true}, nil)
	c.must("dicom", "export", imp.Studies[0].ID, "-o", filepath.Join(dir, "stored"))
	sameSets(t, "Orthanc's WADO-RS retrieve", o.dataSets(t), dataSets(t, filepath.Join(dir, "stored")))

	// STOW-RS: a study uploaded to Orthanc, sent by Orthanc to the node.
	other, err := dicomtest.WriteStudy(filepath.Join(dir, "other"), dicomtest.Options{InstancesPerSeries: 2, Rows: 16, Cols: 16, Modality: "CT", Seed: 32})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, f := range other {
		b, _ := os.ReadFile(f)
		var r struct{ ID string }
		o.postRaw(t, "/instances", b, &r)
		ids = append(ids, r.ID)
	}
	o.post(t, "/dicom-web/servers/medmesh/stow", map[string]any{"Resources": ids, "Synchronous": true}, nil)
	if hits := decode[[]api.DicomStudyHit](t, c.must("dicom", "query", "--modality", "CT", "--json")); len(hits) != 1 || hits[0].Instances != 2 {
		t.Fatalf("after Orthanc's STOW-RS: %+v", hits)
	}
}
