package dicomweb_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"strings"
	"testing"

	"github.com/medmesh/medmesh/node/dicomweb"
	"github.com/medmesh/medmesh/node/httpapi"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/node/imaging/imagingtest"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

// These tests drive DICOMweb over a real imaging service whose records
// live in memory (imagingtest); node/daemon's TestDicomWeb runs the same
// protocol on a real node, and with the npm dicomweb-client.

const token = "dicomweb-test-token"

type server struct {
	t   *testing.T
	url string
	rec *imagingtest.Records
}

func newServer(t *testing.T) *server {
	t.Helper()
	r := imagingtest.New(t)
	svc, err := imaging.New(imaging.Config{Records: r, Ledger: r, Self: r.Self, Identity: r.Identity, DS: r.DS, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(httpapi.New(token, nil, dicomweb.Area{Imaging: svc}))
	t.Cleanup(ts.Close)
	return &server{t: t, url: ts.URL, rec: r}
}

func (s *server) do(method, path string, h map[string]string, body io.Reader) *http.Response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+dicomweb.Prefix+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// part is one STOW-RS part: its Content-Type ("" for none) and bytes.
type part struct {
	ctype string
	data  []byte
}

func (s *server) stow(path string, parts ...part) *http.Response {
	s.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		if p.ctype != "" {
			h.Set("Content-Type", p.ctype)
		}
		w, _ := mw.CreatePart(h)
		w.Write(p.data)
	}
	mw.Close()
	return s.do("POST", path, map[string]string{"Content-Type": `multipart/related; type="application/dicom"; boundary=` + mw.Boundary()}, &buf)
}

func decode(t *testing.T, resp *http.Response, code int) []map[string]any {
	t.Helper()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code {
		t.Fatalf("%s %s: %d %s, want %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, b, code)
	}
	var one map[string]any
	if json.Unmarshal(b, &one) == nil {
		return []map[string]any{one}
	}
	var many []map[string]any
	if err := json.Unmarshal(b, &many); err != nil {
		t.Fatalf("%s: %v in %s", resp.Request.URL.Path, err, b)
	}
	return many
}

func val(ds map[string]any, tag string) any {
	e, _ := ds[tag].(map[string]any)
	vs, _ := e["Value"].([]any)
	if len(vs) == 0 {
		return nil
	}
	return vs[0]
}

func seq(ds map[string]any, tag string) []any {
	e, _ := ds[tag].(map[string]any)
	vs, _ := e["Value"].([]any)
	return vs
}

// study writes a synthetic study and returns its files and parsed headers.
func study(t *testing.T, seriesN, instN int, seed int64) ([][]byte, []*dicom.Instance) {
	t.Helper()
	paths, err := dicomtest.WriteStudy(t.TempDir(), dicomtest.Options{SeriesPerStudy: seriesN, InstancesPerSeries: instN, Rows: 8, Cols: 8, Modality: "MR", Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	var files [][]byte
	var ins []*dicom.Instance
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		in, err := dicom.ParseFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files, ins = append(files, b), append(ins, in)
	}
	return files, ins
}

func dcm(b []byte) part { return part{"application/dicom", b} }

// TestStow: the reasons of each failed part, the status of the whole
// (200 all stored, 202 some, 409 none) and the request-level errors.
func TestStow(t *testing.T) {
	s := newServer(t)
	files, ins := study(t, 1, 3, 1)
	other, _ := study(t, 1, 1, 2)

	res := decode(t, s.stow("/studies", dcm(files[0]), part{"", files[1]}, dcm([]byte("not DICOM")), part{"application/json", []byte("{}")}), http.StatusAccepted)[0]
	if ok := seq(res, "00081199"); len(ok) != 2 {
		t.Errorf("stored %d parts, want 2 (one without a Content-Type): %v", len(ok), res)
	}
	reasons := map[float64]bool{}
	for _, f := range seq(res, "00081198") {
		reasons[val(f.(map[string]any), "00081197").(float64)] = true
	}
	if len(reasons) != 2 || !reasons[0xC000] || !reasons[0x0122] {
		t.Errorf("failure reasons %v, want 0xC000 (not DICOM) and 0x0122 (media type)", reasons)
	}
	if u := val(res, "00081190"); u != s.url+"/dicomweb/studies/"+ins[0].StudyInstanceUID {
		t.Errorf("retrieve URL %v", u)
	}

	// To a study URL: the part of another study is refused, the rest stored.
	res = decode(t, s.stow("/studies/"+ins[0].StudyInstanceUID, dcm(files[2]), dcm(other[0])), http.StatusAccepted)[0]
	if f := seq(res, "00081198"); len(f) != 1 || val(f[0].(map[string]any), "00081197") != float64(0xA900) {
		t.Errorf("study mismatch: %v", res)
	}
	decode(t, s.stow("/studies/1.2.3.4", dcm(other[0])), http.StatusConflict)
	decode(t, s.stow("/studies", dcm(files[0]), dcm(files[1])), http.StatusOK) // stored already: success
	if n := s.rec.Count(); n != 2 {
		t.Errorf("%d records, want the study's two versions", n)
	}

	for _, c := range []struct {
		ctype string
		body  string
		code  int
	}{
		{"application/dicom", "x", http.StatusUnsupportedMediaType},
		{`multipart/related; type="application/json"; boundary=b`, "--b--\r\n", http.StatusUnsupportedMediaType},
		{`multipart/related; type="application/dicom"`, "", http.StatusBadRequest},
		{`multipart/related; type="application/dicom"; boundary=b`, "--b--\r\n", http.StatusBadRequest},
		{`multipart/related; type="application/dicom"; boundary=b`, "--b\r\nContent-Type: application/dicom\r\n\r\nDICM", http.StatusBadRequest},
	} {
		resp := s.do("POST", "/studies", map[string]string{"Content-Type": c.ctype}, strings.NewReader(c.body))
		if resp.StatusCode != c.code {
			b, _ := io.ReadAll(resp.Body)
			t.Errorf("STOW-RS %q %q: %d %s, want %d", c.ctype, c.body, resp.StatusCode, b, c.code)
		}
	}
	if n := s.rec.Count(); n != 2 {
		t.Errorf("%d records after refused requests, want 2", n)
	}
}

// TestQidoWado: queries at each level, paging and warnings; instances back
// byte for byte; 404 and 406; every WADO-RS read counted.
func TestQidoWado(t *testing.T) {
	s := newServer(t)
	files, ins := study(t, 2, 2, 3)
	var parts []part
	for _, f := range files {
		parts = append(parts, dcm(f))
	}
	decode(t, s.stow("/studies", parts...), http.StatusOK)
	st, se := ins[0].StudyInstanceUID, ins[0].SeriesInstanceUID

	resp := s.do("GET", "/studies?PatientName=DEMO*&00100020="+dicomtest.PatientID(1)+"&includefield=all&color=blue", nil, nil)
	if w := resp.Header.Get("Warning"); !strings.Contains(w, "color") {
		t.Errorf("Warning header %q, want the unsupported parameter named", w)
	}
	if got := decode(t, resp, http.StatusOK); len(got) != 1 || val(got[0], "0020000D") != st || val(got[0], "00201208") != float64(4) {
		t.Errorf("QIDO-RS studies: %v", got)
	}
	for q, n := range map[string]int{"limit=0": 0, "offset=1": 0, "StudyDate=20240101-": 1, "StudyDate=-20231231": 0, "ModalitiesInStudy=mr": 1, "PatientName=NOBODY*": 0} {
		if got := decode(t, s.do("GET", "/studies?"+q, nil, nil), http.StatusOK); len(got) != n {
			t.Errorf("QIDO-RS ?%s: %d studies, want %d", q, len(got), n)
		}
	}
	for _, q := range []string{"limit=-1", "StudyDate=2024", "StudyDate=20241345"} {
		decode(t, s.do("GET", "/studies?"+q, nil, nil), http.StatusBadRequest)
	}
	if got := decode(t, s.do("GET", "/studies/"+st+"/series", nil, nil), http.StatusOK); len(got) != 2 {
		t.Errorf("QIDO-RS series: %v", got)
	}
	if got := decode(t, s.do("GET", "/studies/"+st+"/instances?SeriesInstanceUID="+se, nil, nil), http.StatusOK); len(got) != 2 {
		t.Errorf("QIDO-RS study instances of one series: %v", got)
	}
	decode(t, s.do("GET", "/studies/"+st+"/series/1.2.3/instances", nil, nil), http.StatusNotFound)
	decode(t, s.do("GET", "/studies/1.2.3/series", nil, nil), http.StatusNotFound)

	reads := s.rec.Reads()
	resp = s.do("GET", "/studies/"+st+"/series/"+se+"/instances/"+ins[0].SOPInstanceUID, nil, nil)
	got := wadoParts(t, resp)
	if len(got) != 1 || !bytes.Equal(got[0], files[0]) {
		t.Errorf("WADO-RS instance: %d parts, equal %v", len(got), len(got) == 1 && bytes.Equal(got[0], files[0]))
	}
	if n := len(wadoParts(t, s.do("GET", "/studies/"+st, map[string]string{"Accept": "*/*"}, nil))); n != 4 {
		t.Errorf("WADO-RS study: %d parts", n)
	}
	meta := decode(t, s.do("GET", "/studies/"+st+"/series/"+se+"/metadata", nil, nil), http.StatusOK)
	if len(meta) != 2 || val(meta[0], "0020000E") != se {
		t.Errorf("WADO-RS series metadata: %v", meta)
	}
	if got := s.rec.Reads() - reads; got != 3 {
		t.Errorf("%d reads counted, want one per WADO-RS request (3)", got)
	}
	decode(t, s.do("GET", "/studies/"+st, map[string]string{"Accept": "application/json"}, nil), http.StatusNotAcceptable)
	decode(t, s.do("GET", "/studies/"+st+"/series/1.2.3", nil, nil), http.StatusNotFound)
	decode(t, s.do("GET", "/studies/1.2.3/metadata", nil, nil), http.StatusNotFound)
}

func wadoParts(t *testing.T, resp *http.Response) [][]byte {
	t.Helper()
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK || err != nil || mt != "multipart/related" || params["type"] != "application/dicom" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("WADO-RS: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
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
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		if cl := p.Header.Get("Content-Length"); cl != fmt.Sprint(len(b)) {
			t.Errorf("part Content-Length %s, body %d bytes", cl, len(b))
		}
		out = append(out, b)
	}
}
