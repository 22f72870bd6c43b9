package dicomweb_test

import (
	"bytes"
	"image"
	_ "image/jpeg"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medmesh/medmesh/node/dicomweb"
	"github.com/medmesh/medmesh/node/httpapi"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/node/imaging/imagingtest"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

func testdata(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("MEDMESH_DICOM_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "testdata", "dicom")
	}
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST.md")); err != nil {
		t.Skipf("shared DICOM test data not found at %s (set MEDMESH_DICOM_TESTDATA)", dir)
	}
	return dir
}

// parts reads a multipart/related response: each part's Content-Type and
// bytes; the response's type parameter.
func parts(t *testing.T, resp *http.Response) (string, []string, [][]byte) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK || err != nil || mt != "multipart/related" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: %d %q %s", resp.Request.URL.Path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	var types []string
	var out [][]byte
	mr := multipart.NewReader(resp.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return params["type"], types, out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		types = append(types, p.Header.Get("Content-Type"))
		out = append(out, b)
	}
}

type pixelFixture struct {
	s                            *server
	ct, us, ctRLE, be, jl        *dicom.Instance
	synthStudy                   string
	synth                        []*dicom.Instance
	ctFile                       []byte
	urlOf                        func(in *dicom.Instance) string
	nStudies, nSeries, nInstance int
}

func newPixelFixture(t *testing.T) *pixelFixture {
	td := testdata(t)
	f := &pixelFixture{s: newServer(t)}
	load := func(name string) (*dicom.Instance, []byte) {
		p := filepath.Join(td, "valid", name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		in, err := dicom.ParseFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return in, b
	}
	var all []part
	add := func(name string) *dicom.Instance {
		in, b := load(name)
		all = append(all, dcm(b))
		return in
	}
	f.ct = add("enhanced_mr_10frame.dcm") // native, 10 frames of 64x64x16
	f.us = add("us_ybr_30frame_jpeg_baseline.dcm")
	f.ctRLE = add("enhanced_ct_2frame_rle.dcm")
	f.be = add("mr_small_big_endian.dcm")
	f.jl = add("nm_jpeg_extended_12bit.dcm")
	_, f.ctFile = load("enhanced_mr_10frame.dcm")
	files, ins := study(t, 2, 2, 77)
	for _, b := range files {
		all = append(all, dcm(b))
	}
	f.synth, f.synthStudy = ins, ins[0].StudyInstanceUID
	decode(t, f.s.stow("/studies", all...), http.StatusOK)
	f.urlOf = func(in *dicom.Instance) string {
		return "/studies/" + in.StudyInstanceUID + "/series/" + in.SeriesInstanceUID + "/instances/" + in.SOPInstanceUID
	}
	return f
}

// TestQidoLevels: QIDO-RS at every level from the root with the required
// attributes, fuzzy and case-insensitive names, includefield, paging.
func TestQidoLevels(t *testing.T) {
	f := newPixelFixture(t)
	s := f.s
	studies := decode(t, s.do("GET", "/studies", nil, nil), http.StatusOK)
	series := decode(t, s.do("GET", "/series", nil, nil), http.StatusOK)
	instances := decode(t, s.do("GET", "/instances", nil, nil), http.StatusOK)
	if len(instances) != 5+4 || len(series) < 3 || len(studies) < 2 {
		t.Fatalf("root: %d studies, %d series, %d instances", len(studies), len(series), len(instances))
	}
	for _, st := range studies {
		for _, tag := range []string{"00080020", "00080030", "00080050", "00080056", "00080061", "00080090", "00081190", "00100010", "00100020", "00100030", "00100040", "0020000D", "00200010", "00201206", "00201208"} {
			if _, ok := st[tag]; !ok {
				t.Errorf("study %v lacks %s", val(st, "0020000D"), tag)
			}
		}
	}
	for _, in := range instances {
		for _, tag := range []string{"00080016", "00080018", "00080056", "00081190", "00200013", "00280010", "00280011", "00280100", "0020000D", "0020000E", "00100010"} {
			if _, ok := in[tag]; !ok {
				t.Errorf("instance %v lacks %s", val(in, "00080018"), tag)
			}
		}
	}
	for _, sr := range series {
		if val(sr, "0020000D") == nil || val(sr, "00201209") == nil || val(sr, "00080060") == nil {
			t.Errorf("series %v: %v", val(sr, "0020000E"), sr)
		}
	}
	if got := decode(t, s.do("GET", "/instances?SOPInstanceUID="+f.us.SOPInstanceUID, nil, nil), http.StatusOK); len(got) != 1 || val(got[0], "00280008") != float64(30) {
		t.Errorf("instance query: %v", got)
	}
	if got := decode(t, s.do("GET", "/series?Modality=us", nil, nil), http.StatusOK); len(got) != 1 {
		t.Errorf("series by modality, lower case: %v", got)
	}
	for q, n := range map[string]int{
		"PatientName=demo^patient1*":              1, // PN ignores case
		"PatientName=patient1&fuzzymatching=true": 1, // a name component's start
		"PatientName=patient1":                    0,
		"PatientName=PLA&fuzzymatching=true":      1, // the US's patient
		"StudyInstanceUID=" + f.synthStudy:        1,
	} {
		if got := decode(t, s.do("GET", "/studies?"+q, nil, nil), http.StatusOK); len(got) != n {
			t.Errorf("studies?%s: %d, want %d", q, len(got), n)
		}
	}
	all := decode(t, s.do("GET", "/studies?StudyInstanceUID="+f.synthStudy+"&includefield=all", nil, nil), http.StatusOK)
	if len(all) != 1 || all[0]["00080062"] == nil {
		t.Errorf("includefield=all: %v", all)
	}
	one := decode(t, s.do("GET", "/instances?includefield=00080016&limit=2&offset=1", nil, nil), http.StatusOK)
	if len(one) != 2 {
		t.Errorf("limit/offset: %d", len(one))
	}
	resp := s.do("GET", "/instances?limit=2", nil, nil)
	if w := resp.Header.Get("Warning"); !strings.Contains(w, "more results") {
		t.Errorf("a limited answer says more follow: %q", w)
	}
	if got := decode(t, s.do("GET", "/studies/"+f.synthStudy+"/instances", nil, nil), http.StatusOK); len(got) != 4 {
		t.Errorf("study instances: %d", len(got))
	}
	decode(t, s.do("GET", "/studies/1.2.3/instances", nil, nil), http.StatusNotFound)
}

// TestFramesBulkRendered: native and encapsulated frames, big endian
// frames little endian, BulkDataURI in the metadata and its bulk data,
// rendered PNG and JPEG with a window, and 406 for what cannot be made.
func TestFramesBulkRendered(t *testing.T) {
	f := newPixelFixture(t)
	s := f.s
	oct := map[string]string{"Accept": `multipart/related; type="application/octet-stream"`}
	typ, cts, fr := parts(t, s.do("GET", f.urlOf(f.ct)+"/frames/2,1", oct, nil))
	if typ != "application/octet-stream" || len(fr) != 2 || len(fr[0]) != 64*64*2 || !strings.Contains(cts[0], "transfer-syntax=1.2.840.10008.1.2.1") {
		t.Fatalf("native frames: %s %v %d", typ, cts, len(fr))
	}
	if bytes.Equal(fr[0], fr[1]) || !bytes.Contains(f.ctFile, fr[0]) || !bytes.Contains(f.ctFile, fr[1]) {
		t.Error("native frames 2 and 1 are not the file's")
	}
	jpegAccept := map[string]string{"Accept": `multipart/related; type="image/jpeg"`}
	_, cts, fr = parts(t, s.do("GET", f.urlOf(f.us)+"/frames/1,30", jpegAccept, nil))
	if len(fr) != 2 || !bytes.HasPrefix(fr[0], []byte{0xFF, 0xD8}) || !bytes.HasPrefix(fr[1], []byte{0xFF, 0xD8}) || !strings.HasPrefix(cts[0], "image/jpeg") {
		t.Fatalf("JPEG frames: %v", cts)
	}
	if _, _, fr = parts(t, s.do("GET", f.urlOf(f.us)+"/frames/3", nil, nil)); len(fr) != 1 {
		t.Error("frames without Accept")
	}
	decode(t, s.do("GET", f.urlOf(f.us)+"/frames/1", oct, nil), http.StatusNotAcceptable)
	decode(t, s.do("GET", f.urlOf(f.us)+"/frames/31", nil, nil), http.StatusNotFound)
	decode(t, s.do("GET", f.urlOf(f.us)+"/frames/0", nil, nil), http.StatusBadRequest)
	if _, _, fr = parts(t, s.do("GET", f.urlOf(f.ctRLE)+"/frames/2", nil, nil)); len(fr) != 1 {
		t.Error("RLE frame")
	}
	_, _, fr = parts(t, s.do("GET", f.urlOf(f.be)+"/frames/1", oct, nil))
	if len(fr) != 1 || len(fr[0]) != 64*64*2 {
		t.Fatalf("big endian frame: %d parts", len(fr))
	}

	// Metadata names the pixel data by URI; the bulk data is its value.
	meta := decode(t, s.do("GET", f.urlOf(f.ct)+"/metadata", nil, nil), http.StatusOK)
	px, _ := meta[0]["7FE00010"].(map[string]any)
	uri, _ := px["BulkDataURI"].(string)
	if !strings.HasSuffix(uri, f.urlOf(f.ct)+"/bulkdata/7FE00010") {
		t.Fatalf("pixel data in the metadata: %v", px)
	}
	_, _, bulk := parts(t, s.do("GET", strings.TrimPrefix(uri, s.url+dicomweb.Prefix), nil, nil))
	if len(bulk) != 1 || len(bulk[0]) != 10*64*64*2 {
		t.Errorf("bulk data: %d parts", len(bulk))
	}
	_, _, bulk = parts(t, s.do("GET", f.urlOf(f.us)+"/bulkdata/7FE00010", nil, nil))
	if len(bulk) != 30 {
		t.Errorf("encapsulated bulk data: %d frames", len(bulk))
	}

	// Rendered.
	resp := s.do("GET", f.urlOf(f.ct)+"/frames/2/rendered", nil, nil)
	img, err := png.Decode(resp.Body)
	if err != nil || resp.Header.Get("Content-Type") != "image/png" || img.Bounds().Dx() != 64 {
		t.Fatalf("rendered PNG: %v %q", err, resp.Header.Get("Content-Type"))
	}
	resp = s.do("GET", f.urlOf(f.ct)+"/rendered?window=40,400", map[string]string{"Accept": "image/jpeg"}, nil)
	if im, kind, err := image.Decode(resp.Body); err != nil || kind != "jpeg" || im.Bounds().Dy() != 64 {
		t.Fatalf("rendered JPEG: %v %s", err, kind)
	}
	resp = s.do("GET", f.urlOf(f.us)+"/frames/10/rendered", nil, nil)
	if im, err := png.Decode(resp.Body); err != nil || im.Bounds().Dx() != 320 {
		t.Fatalf("rendered JPEG Baseline frame: %v", err)
	}
	if _, err := png.Decode(s.do("GET", f.urlOf(f.be)+"/rendered", nil, nil).Body); err != nil {
		t.Errorf("rendered big endian: %v", err)
	}
	decode(t, s.do("GET", f.urlOf(f.jl)+"/rendered", nil, nil), http.StatusNotAcceptable)
	decode(t, s.do("GET", f.urlOf(f.ct)+"/rendered", map[string]string{"Accept": "image/gif"}, nil), http.StatusNotAcceptable)
	decode(t, s.do("GET", f.urlOf(f.ct)+"/rendered?window=40", nil, nil), http.StatusBadRequest)
}

// TestTransferSyntaxNegotiation: the stored syntax for * or a match,
// uncompressed instances transcoded, compressed ones 406.
func TestTransferSyntaxNegotiation(t *testing.T) {
	f := newPixelFixture(t)
	s := f.s
	ask := func(ts string) map[string]string {
		return map[string]string{"Accept": `multipart/related; type="application/dicom"; transfer-syntax=` + ts}
	}
	_, _, got := parts(t, s.do("GET", f.urlOf(f.ct), ask("*"), nil))
	if len(got) != 1 || !bytes.Equal(got[0], f.ctFile) {
		t.Error("transfer-syntax=*: not the stored file")
	}
	for _, ts := range []string{dicom.ImplicitVRLittleEndian, dicom.ExplicitVRBigEndian, dicom.DeflatedExplicitVRLE} {
		_, cts, got := parts(t, s.do("GET", f.urlOf(f.ct), ask(ts), nil))
		if len(got) != 1 || !strings.Contains(cts[0], ts) {
			t.Fatalf("%s: %v", ts, cts)
		}
		in, err := dicom.ParseReader(bytes.NewReader(got[0]), int64(len(got[0])))
		if err != nil || in.TransferSyntax != ts || in.SOPInstanceUID != f.ct.SOPInstanceUID || in.Rows != 64 {
			t.Errorf("%s: %+v %v", ts, in, err)
		}
		var a, b []byte
		dicom.ReadFrames(bytes.NewReader(got[0]), int64(len(got[0])), []int{2}, func(_ int, d []byte) error { a = d; return nil })
		dicom.ReadFrames(bytes.NewReader(f.ctFile), int64(len(f.ctFile)), []int{2}, func(_ int, d []byte) error { b = d; return nil })
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s: pixels differ", ts)
		}
	}
	// A whole study, one instance of it compressed: 406 for explicit LE.
	decode(t, s.do("GET", f.urlOf(f.us), ask(dicom.ExplicitVRLittleEndian), nil), http.StatusNotAcceptable)
	if _, _, got := parts(t, s.do("GET", f.urlOf(f.us), ask(dicom.JPEGBaseline), nil)); len(got) != 1 {
		t.Error("the stored compressed syntax asked by name")
	}
	// Preferences in order: the first the node can make wins.
	both := map[string]string{"Accept": `multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1, multipart/related; type="application/dicom"; transfer-syntax=*; q=0.5`}
	if _, cts, _ := parts(t, s.do("GET", f.urlOf(f.us), both, nil)); !strings.Contains(cts[0], dicom.JPEGBaseline) {
		t.Errorf("fallback to *: %v", cts)
	}
	decode(t, s.do("GET", f.urlOf(f.ct), map[string]string{"Accept": "application/json"}, nil), http.StatusNotAcceptable)
	// Instances come in multipart/related only (PS3.18 Table 8.7.4-1).
	decode(t, s.do("GET", f.urlOf(f.ct), map[string]string{"Accept": "application/dicom"}, nil), http.StatusNotAcceptable)
}

// TestCORS: a configured origin's preflight is answered without a token,
// its requests carry Access-Control-Allow-Origin; another origin's
// preflight is refused.
func TestCORS(t *testing.T) {
	r := imagingtest.New(t)
	svc, err := imaging.New(imaging.Config{Records: r, Ledger: r, Self: r.Self, Identity: r.Identity, DS: r.DS, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	api := httpapi.New(token, nil, dicomweb.Area{Imaging: svc})
	api.AllowOrigins(dicomweb.Prefix+"/", []string{"https://viewer.example.org"})
	ts := httptest.NewServer(api)
	defer ts.Close()
	pre := func(origin string) *http.Response {
		req, _ := http.NewRequest("OPTIONS", ts.URL+"/dicomweb/studies", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "authorization")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := pre("https://viewer.example.org")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://viewer.example.org" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight from the viewer: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := pre("https://evil.example"); resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin: %d %v", resp.StatusCode, resp.Header)
	}
	req, _ := http.NewRequest("GET", ts.URL+"/dicomweb/studies", nil)
	req.Header.Set("Origin", "https://viewer.example.org")
	req.Header.Set("Authorization", "Bearer "+token)
	get, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	get.Body.Close()
	if get.StatusCode != 200 || get.Header.Get("Access-Control-Allow-Origin") != "https://viewer.example.org" {
		t.Fatalf("GET from the viewer: %d %v", get.StatusCode, get.Header)
	}
	req.Header.Del("Authorization")
	if get, _ := http.DefaultClient.Do(req); get.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET from the viewer without the token: %d", get.StatusCode)
	}
}

var _ = dicomtest.PatientID
