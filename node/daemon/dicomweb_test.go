package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/devnet"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

func dwReq(t *testing.T, nd *devnet.Node, method, path, ctype string, body io.Reader) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, nd.API.Base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+nd.API.Token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// stowBody is a multipart/related STOW-RS body of the given parts.
func stowBody(t *testing.T, parts [][]byte) (string, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		w, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p)
	}
	mw.Close()
	return `multipart/related; type="application/dicom"; boundary=` + mw.Boundary(), &buf
}

func dwJSON(t *testing.T, resp *http.Response, wantCode int) []map[string]any {
	t.Helper()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantCode {
		t.Fatalf("%s: status %d, want %d: %s", resp.Request.URL.Path, resp.StatusCode, wantCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/dicom+json") {
		t.Fatalf("%s: Content-Type %q", resp.Request.URL.Path, ct)
	}
	var out []map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		var one map[string]any
		if err2 := json.Unmarshal(b, &one); err2 != nil {
			t.Fatalf("%s: not DICOM JSON: %v: %s", resp.Request.URL.Path, err, b)
		}
		out = []map[string]any{one}
	}
	return out
}

func dsVal(ds map[string]any, tag string) any {
	a, _ := ds[tag].(map[string]any)
	v, _ := a["Value"].([]any)
	if len(v) == 0 {
		return nil
	}
	return v[0]
}

// wadoParts reads a WADO-RS multipart/related response.
func wadoParts(t *testing.T, resp *http.Response) [][]byte {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("WADO-RS %s: %d: %s", resp.Request.URL.Path, resp.StatusCode, b)
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" || params["type"] != "application/dicom" {
		t.Fatalf("WADO-RS Content-Type %q", resp.Header.Get("Content-Type"))
	}
	var out [][]byte
	mr := multipart.NewReader(resp.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("WADO-RS body: %v", err)
		}
		if ct := p.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/dicom") {
			t.Errorf("part Content-Type %q", ct)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
}

// TestDicomWeb drives STOW-RS, QIDO-RS and WADO-RS on a real node with our
// own HTTP requests, then with the npm dicomweb-client when Node is there.
func TestDicomWeb(t *testing.T) {
	n, _ := startNet(t, "w")
	w := n.Nodes[0]
	dir := t.TempDir()
	paths, err := dicomtest.WriteStudy(dir, dicomtest.Options{SeriesPerStudy: 2, InstancesPerSeries: 2, Rows: 16, Cols: 16, Modality: "MR", Seed: 777})
	if err != nil {
		t.Fatal(err)
	}
	var files [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	first, err := dicom.ParseFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	study, series := first.StudyInstanceUID, first.SeriesInstanceUID

	// STOW-RS: four instances and one part that is not DICOM.
	ct, body := stowBody(t, append(append([][]byte{}, files...), []byte("not a DICOM file")))
	res := dwJSON(t, dwReq(t, w, "POST", "/dicomweb/studies", ct, body), http.StatusAccepted)[0]
	ok, _ := res["00081199"].(map[string]any)["Value"].([]any)
	failed, _ := res["00081198"].(map[string]any)["Value"].([]any)
	if len(ok) != 4 || len(failed) != 1 {
		t.Fatalf("STOW-RS: %d stored, %d failed, want 4 and 1: %v", len(ok), len(failed), res)
	}
	if r := dsVal(failed[0].(map[string]any), "00081197"); r != float64(0xC000) {
		t.Errorf("failure reason %v, want 0xC000", r)
	}
	// Sending the same instances again stores nothing new and succeeds.
	ct, body = stowBody(t, files[:2])
	again := dwJSON(t, dwReq(t, w, "POST", "/dicomweb/studies", ct, body), http.StatusOK)[0]
	if a, _ := again["00081199"].(map[string]any)["Value"].([]any); len(a) != 2 {
		t.Errorf("STOW-RS again: %v", again)
	}
	// A part for another study than the URL names is refused.
	ct, body = stowBody(t, files[:1])
	dwJSON(t, dwReq(t, w, "POST", "/dicomweb/studies/1.2.3.4", ct, body), http.StatusConflict)
	if r := dwReq(t, w, "POST", "/dicomweb/studies", "application/json", strings.NewReader("{}")); r.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("STOW-RS with JSON body: %d, want 415", r.StatusCode)
	}

	// QIDO-RS.
	studies := dwJSON(t, dwReq(t, w, "GET", "/dicomweb/studies?PatientID="+dicomtest.PatientID(1)+"&StudyDate=20240101-20240131", "", nil), http.StatusOK)
	if len(studies) != 1 || dsVal(studies[0], "0020000D") != study || dsVal(studies[0], "00201208") != float64(4) || dsVal(studies[0], "00080061") != "MR" {
		t.Fatalf("QIDO-RS studies: %v", studies)
	}
	for _, q := range []string{"PatientID=NOBODY", "StudyDate=20240116-", "00080061=CT", "StudyInstanceUID=1.2.3", "offset=1"} {
		if got := dwJSON(t, dwReq(t, w, "GET", "/dicomweb/studies?"+q, "", nil), http.StatusOK); len(got) != 0 {
			t.Errorf("QIDO-RS %s: %d studies, want 0", q, len(got))
		}
	}
	if got := dwJSON(t, dwReq(t, w, "GET", "/dicomweb/studies?PatientID=DEMO*&limit=1", "", nil), http.StatusOK); len(got) != 1 {
		t.Errorf("QIDO-RS wildcard with limit: %d", len(got))
	}
	if r := dwReq(t, w, "GET", "/dicomweb/studies?StudyDate=2024", "", nil); r.StatusCode != http.StatusBadRequest {
		t.Errorf("QIDO-RS bad date: %d, want 400", r.StatusCode)
	}
	ser := dwJSON(t, dwReq(t, w, "GET", "/dicomweb/studies/"+study+"/series", "", nil), http.StatusOK)
	if len(ser) != 2 || dsVal(ser[0], "00201209") != float64(2) {
		t.Errorf("QIDO-RS series: %v", ser)
	}
	insts := dwJSON(t, dwReq(t, w, "GET", "/dicomweb/studies/"+study+"/series/"+series+"/instances", "", nil), http.StatusOK)
	if len(insts) != 2 {
		t.Fatalf("QIDO-RS instances: %v", insts)
	}

	// WADO-RS: the study, one series, one instance, byte for byte.
	want := map[string]bool{}
	for _, f := range files {
		want[string(f)] = true
	}
	all := wadoParts(t, dwReq(t, w, "GET", "/dicomweb/studies/"+study, "", nil))
	if len(all) != 4 {
		t.Fatalf("WADO-RS study: %d parts", len(all))
	}
	for _, p := range all {
		if !want[string(p)] {
			t.Errorf("WADO-RS returned %d bytes that match no stored file", len(p))
		}
	}
	if got := wadoParts(t, dwReq(t, w, "GET", "/dicomweb/studies/"+study+"/series/"+series, "", nil)); len(got) != 2 {
		t.Errorf("WADO-RS series: %d parts", len(got))
	}
	one := wadoParts(t, dwReq(t, w, "GET", "/dicomweb/studies/"+study+"/series/"+series+"/instances/"+first.SOPInstanceUID, "", nil))
	if len(one) != 1 || !bytes.Equal(one[0], files[0]) {
		t.Errorf("WADO-RS instance differs from the file sent")
	}
	meta := dwJSON(t, dwReq(t, w, "GET", "/dicomweb/studies/"+study+"/metadata", "", nil), http.StatusOK)
	if len(meta) != 4 || dsVal(meta[0], "0020000D") != study {
		t.Errorf("WADO-RS metadata: %d entries", len(meta))
	}
	if r := dwReq(t, w, "GET", "/dicomweb/studies/1.2.3.4", "", nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("WADO-RS unknown study: %d, want 404", r.StatusCode)
	}
	req, _ := http.NewRequest("GET", w.API.Base+"/dicomweb/studies", nil)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusUnauthorized {
		t.Errorf("QIDO-RS without the token: %v %v", r, err)
	}

	t.Run("dicomweb-client interop", func(t *testing.T) {
		nodeBin, err := exec.LookPath("node")
		if err != nil {
			t.Skip("node not installed: the interop test with the npm dicomweb-client needs Node.js 20 and `npm ci` in scripts/dicomweb-interop")
		}
		script, _ := filepath.Abs(filepath.Join("..", "..", "scripts", "dicomweb-interop"))
		if _, err := os.Stat(filepath.Join(script, "node_modules", "dicomweb-client")); err != nil {
			t.Skipf("dicomweb-client not installed: run `npm ci` in %s", script)
		}
		idir := t.TempDir()
		ipaths, err := dicomtest.WriteStudy(idir, dicomtest.Options{Patients: 1, SeriesPerStudy: 2, InstancesPerSeries: 2, Rows: 16, Cols: 16, Modality: "CT", Seed: 9090})
		if err != nil {
			t.Fatal(err)
		}
		in, err := dicom.ParseFile(ipaths[0])
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, nodeBin, append([]string{filepath.Join(script, "interop.js"), in.StudyInstanceUID, in.PatientID}, ipaths...)...)
		cmd.Env = append(os.Environ(), "MEDMESH_DICOMWEB="+w.API.Base+"/dicomweb", "MEDMESH_TOKEN="+w.API.Token)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dicomweb-client interop failed: %v\n%s", err, out)
		}
		t.Logf("dicomweb-client: %s", bytes.TrimSpace(out))
		if !bytes.Contains(out, []byte(fmt.Sprintf(`"wado_identical":%d`, len(ipaths)))) {
			t.Errorf("interop output: %s", out)
		}
	})
}

// TestDicomWebNonConformantUIDs: STOW-RS stores an instance whose UIDs are
// 64 hex digits (as archives hold them) with a Warning header, and QIDO-RS
// and WADO-RS serve it back byte for byte under those UIDs.
func TestDicomWebNonConformantUIDs(t *testing.T) {
	n, _ := startNet(t, "w")
	w := n.Nodes[0]
	dir := t.TempDir()
	paths, err := dicomtest.WriteStudy(dir, dicomtest.Options{Rows: 8, Cols: 8, Seed: 778})
	if err != nil {
		t.Fatal(err)
	}
	const study = "3f9a0c1e2b4d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"
	const series = "0e5d4c3b2a19f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a392817060"
	const sop = "aa0c1e2b4d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
	p := filepath.Join(dir, "hex.dcm")
	if err := dicomtest.RewriteUIDs(paths[0], p, study, series, sop); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	ct, body := stowBody(t, [][]byte{file})
	resp := dwReq(t, w, "POST", "/dicomweb/studies", ct, body)
	if warn := resp.Header.Get("Warning"); !strings.Contains(warn, "not conformant") {
		t.Errorf("STOW-RS Warning header %q", warn)
	}
	res := dwJSON(t, resp, http.StatusOK)[0]
	if ok, _ := res["00081199"].(map[string]any)["Value"].([]any); len(ok) != 1 {
		t.Fatalf("STOW-RS: %v", res)
	}
	if got := dwJSON(t, dwReq(t, w, "GET", "/dicomweb/studies/"+study+"/series/"+series+"/instances", "", nil), http.StatusOK); len(got) != 1 || dsVal(got[0], "00080018") != sop {
		t.Fatalf("QIDO-RS instances: %v", got)
	}
	parts := wadoParts(t, dwReq(t, w, "GET", "/dicomweb/studies/"+study+"/series/"+series+"/instances/"+sop, "", nil))
	if len(parts) != 1 || !bytes.Equal(parts[0], file) {
		t.Fatalf("WADO-RS instance: %d parts, equal %v", len(parts), len(parts) == 1 && bytes.Equal(parts[0], file))
	}
}
