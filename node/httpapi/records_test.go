package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/records"
)

// fakeRecords answers the records routes from fields; it records what it
// was asked.
type fakeRecords struct {
	added   records.AddRequest
	body    []byte
	content []byte
	// failAfter, when set, ends Get with this error after content.
	failAfter error
	err       error
	got       records.GetRequest
	revoked   peer.ID
}

func (f *fakeRecords) Add(_ context.Context, req records.AddRequest) (*records.AddResult, error) {
	f.added = req
	r, err := req.Files[0].Open()
	if err != nil {
		return nil, err
	}
	if f.body, err = io.ReadAll(r); err != nil {
		return nil, err
	}
	if f.err != nil {
		return nil, f.err
	}
	return &records.AddResult{ID: testCID("rec"), Size: int64(len(f.body)), Chunks: 1, Version: 1}, nil
}

func (f *fakeRecords) Update(ctx context.Context, req records.AddRequest) (*records.AddResult, error) {
	return f.Add(ctx, req)
}

func (f *fakeRecords) Get(_ context.Context, _ cid.Cid, req records.GetRequest, w io.Writer) error {
	f.got = req
	if f.err != nil {
		return f.err
	}
	req.Opened(int64(len(f.content)))
	req.Named("résumé.pdf")
	if _, err := w.Write(f.content); err != nil {
		return err
	}
	return f.failAfter
}

func (f *fakeRecords) List(context.Context) ([]api.Record, error) { return []api.Record{}, f.err }
func (f *fakeRecords) Grant(_ context.Context, id cid.Cid, req api.GrantRequest) (*api.Grant, error) {
	return &api.Grant{ID: id.String(), Grantee: req.To, Purpose: req.Purpose}, f.err
}
func (f *fakeRecords) ListGrants(cid.Cid) ([]api.Grant, error) { return []api.Grant{}, f.err }
func (f *fakeRecords) Revoke(_ context.Context, _ cid.Cid, p peer.ID) (int, error) {
	f.revoked = p
	return 2, f.err
}
func (f *fakeRecords) Audit(cid.Cid) ([]api.AccessEvent, error) { return []api.AccessEvent{}, f.err }

func testCID(s string) cid.Cid {
	h, _ := mh.Sum([]byte(s), mh.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, h)
}

// testMux is a plain ServeMux as a Mux (the API server adds the token
// check, which is not what these tests are about).
type testMux struct{ *http.ServeMux }

func (m testMux) HandleFunc(pattern string, h http.HandlerFunc) { m.ServeMux.HandleFunc(pattern, h) }

func recordsMux(f *fakeRecords) testMux {
	m := testMux{http.NewServeMux()}
	Records{S: f, Log: slog.New(slog.DiscardHandler)}.Routes(m)
	return m
}

func serveRecords(f *fakeRecords) *httptest.Server { return httptest.NewServer(recordsMux(f)) }

func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestRecordsAdd(t *testing.T) {
	f := &fakeRecords{}
	srv := serveRecords(f)
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+p+"/records?name=a.pdf&type=application/pdf&class=imaging&replicas=2&emergency=true", strings.NewReader("hello"))
	resp, body := do(t, req)
	var res api.AddResult
	if resp.StatusCode != 200 || json.Unmarshal(body, &res) != nil || res.ID != testCID("rec").String() || res.Size != 5 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	a := f.added
	if a.Name != "a.pdf" || a.MediaType != "application/pdf" || a.Class != "imaging" || a.Replicas != 2 || !a.Emergency || string(f.body) != "hello" {
		t.Fatalf("the service was asked %+v with %q", a, f.body)
	}

	for _, c := range []struct {
		query string
		want  int
	}{{"replicas=0", 400}, {"replicas=65", 400}, {"replicas=x", 400}} {
		req, _ := http.NewRequest("POST", srv.URL+p+"/records?"+c.query, strings.NewReader("x"))
		if resp, body := do(t, req); resp.StatusCode != c.want {
			t.Fatalf("%s: %d %s", c.query, resp.StatusCode, body)
		}
	}
	// A truncated upload is the client's to retry (400), and says so.
	f.err = io.ErrUnexpectedEOF
	req, _ = http.NewRequest("POST", srv.URL+p+"/records", strings.NewReader("x"))
	resp, body = do(t, req)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "upload truncated") || !strings.Contains(string(body), "retry the upload") {
		t.Fatalf("truncated: %d %s", resp.StatusCode, body)
	}
	// The service's error kinds become statuses.
	f.err = fault.Conflictf("wait", "not yet a member")
	req, _ = http.NewRequest("POST", srv.URL+p+"/records/"+testCID("prev").String()+"/versions", strings.NewReader("x"))
	if resp, body := do(t, req); resp.StatusCode != 409 || !strings.Contains(string(body), "not yet a member") {
		t.Fatalf("conflict: %d %s", resp.StatusCode, body)
	}
	if f.added.Prev != testCID("prev") {
		t.Fatalf("update of %s", f.added.Prev)
	}
}

// An upload without a length (neither Content-Length nor chunked) is
// refused before the service sees it.
func TestRecordsAddNeedsLength(t *testing.T) {
	r := httptest.NewRequest("POST", p+"/records", io.NopCloser(strings.NewReader("x")))
	r.ContentLength = -1
	w := httptest.NewRecorder()
	f := &fakeRecords{}
	recordsMux(f).ServeHTTP(w, r)
	if w.Code != 400 || f.added.Files != nil {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

// The get protocol: the size and name in the headers, the content, and
// the trailer that says it is complete and verified; an error before the
// first byte is a JSON error with its status, one after it is in the
// trailer.
func TestRecordsGet(t *testing.T) {
	f := &fakeRecords{content: []byte("plaintext")}
	srv := serveRecords(f)
	defer srv.Close()
	url := srv.URL + p + "/records/" + testCID("rec").String() + "/content"

	req, _ := http.NewRequest("GET", url+"?version=2&purpose=research", nil)
	resp, body := do(t, req)
	if resp.StatusCode != 200 || !bytes.Equal(body, f.content) || resp.Trailer.Get(api.TrailerResult) != "ok" {
		t.Fatalf("%d %q trailer %q", resp.StatusCode, body, resp.Trailer.Get(api.TrailerResult))
	}
	if resp.Header.Get(api.HeaderSize) != "9" || !strings.Contains(resp.Header.Get("Content-Disposition"), "filename*=utf-8''r%C3%A9sum%C3%A9.pdf") {
		t.Fatalf("headers %v", resp.Header)
	}
	if f.got.Version != 2 || f.got.Purpose != "research" || f.got.File != -1 {
		t.Fatalf("the service was asked %+v", f.got)
	}

	f.failAfter = errors.New("chunk 3 does not authenticate")
	resp, body = do(t, req)
	if tr := resp.Trailer.Get(api.TrailerResult); resp.StatusCode != 200 || !strings.HasPrefix(tr, api.TrailerVerifyFailed) || !strings.Contains(tr, "chunk 3") {
		t.Fatalf("failure after the first byte: %d %q trailer %q", resp.StatusCode, body, tr)
	}

	f.err = fault.Forbiddenf("ask the owner for a grant", "no key for this record")
	resp, body = do(t, req)
	var e api.Error
	if resp.StatusCode != 403 || json.Unmarshal(body, &e) != nil || e.Hint != "ask the owner for a grant" {
		t.Fatalf("failure before the first byte: %d %s", resp.StatusCode, body)
	}

	for _, u := range []string{url + "?version=0", url + "?version=x", srv.URL + p + "/records/nope/content"} {
		req, _ := http.NewRequest("GET", u, nil)
		if resp, body := do(t, req); resp.StatusCode != 400 {
			t.Fatalf("%s: %d %s", u, resp.StatusCode, body)
		}
	}
}

// An empty record is a 200 with no bytes and the "ok" trailer.
func TestRecordsGetEmpty(t *testing.T) {
	srv := serveRecords(&fakeRecords{})
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+p+"/records/"+testCID("rec").String()+"/content", nil)
	resp, body := do(t, req)
	if resp.StatusCode != 200 || len(body) != 0 || resp.Trailer.Get(api.TrailerResult) != "ok" {
		t.Fatalf("%d %q %v", resp.StatusCode, body, resp.Trailer)
	}
}

func TestRecordsShareRoutes(t *testing.T) {
	f := &fakeRecords{}
	srv := serveRecords(f)
	defer srv.Close()
	base := srv.URL + p + "/records/" + testCID("rec").String()
	grantee := "12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X"

	req, _ := http.NewRequest("POST", base+"/grants", strings.NewReader(`{"to":"`+grantee+`","purpose":"research"}`))
	if resp, body := do(t, req); resp.StatusCode != 200 || !strings.Contains(string(body), `"purpose": "research"`) {
		t.Fatalf("grant: %d %s", resp.StatusCode, body)
	}
	req, _ = http.NewRequest("POST", base+"/grants", strings.NewReader(`{"to":"x","nonsense":1}`))
	if resp, body := do(t, req); resp.StatusCode != 400 {
		t.Fatalf("grant with an unknown field: %d %s", resp.StatusCode, body)
	}
	req, _ = http.NewRequest("DELETE", base+"/grants/"+grantee, nil)
	resp, body := do(t, req)
	var rv api.RevokeResult
	if resp.StatusCode != 200 || json.Unmarshal(body, &rv) != nil || rv.Grantee != grantee || rv.VersionCount != 2 || f.revoked.String() != grantee {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	req, _ = http.NewRequest("DELETE", base+"/grants/not-a-peer", nil)
	if resp, body := do(t, req); resp.StatusCode != 400 || !strings.Contains(string(body), "is not a peer ID") {
		t.Fatalf("revoke a bad peer: %d %s", resp.StatusCode, body)
	}
	for _, path := range []string{"/grants", "/audit"} {
		req, _ := http.NewRequest("GET", base+path, nil)
		if resp, body := do(t, req); resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "[]" {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
	f.err = fault.NotFoundf("", "unknown record")
	req, _ = http.NewRequest("GET", base+"/audit", nil)
	if resp, body := do(t, req); resp.StatusCode != 404 {
		t.Fatalf("audit of an unknown record: %d %s", resp.StatusCode, body)
	}
	req, _ = http.NewRequest("GET", srv.URL+p+"/records", nil)
	if resp, body := do(t, req); resp.StatusCode != 404 {
		t.Fatalf("list failing: %d %s", resp.StatusCode, body)
	}
}
