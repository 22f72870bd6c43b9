package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/httpapi"
)

// fakeResearch answers each call with what the test set, recording what
// it was asked.
type fakeResearch struct {
	got  []string
	err  error
	jobs map[string]api.DatasetProgress
}

func (f *fakeResearch) AddConsent(ctx context.Context, req api.ConsentRequest) (*api.ConsentInfo, error) {
	f.got = append(f.got, "add "+req.Patient+" "+req.Purpose)
	return &api.ConsentInfo{Purpose: req.Purpose}, f.err
}
func (f *fakeResearch) RevokeConsent(ctx context.Context, req api.ConsentRequest) (*api.ConsentRevokeResult, error) {
	f.got = append(f.got, "revoke "+req.Patient)
	return &api.ConsentRevokeResult{Purpose: req.Purpose}, f.err
}
func (f *fakeResearch) Consents(ctx context.Context, patientID, purpose string) ([]api.ConsentInfo, error) {
	f.got = append(f.got, "list "+patientID+" "+purpose)
	return nil, f.err
}
func (f *fakeResearch) CreateDataset(ctx context.Context, req api.DatasetCreateRequest) (*api.DatasetCreateResult, error) {
	f.got = append(f.got, "create "+req.Name)
	return &api.DatasetCreateResult{Name: req.Name}, f.err
}
func (f *fakeResearch) ListDatasets(ctx context.Context) []api.DatasetInfo {
	f.got = append(f.got, "ls")
	return nil
}
func (f *fakeResearch) GrantDatasets(ctx context.Context, ref string, req api.DatasetGrantRequest) ([]*api.DatasetGrantResult, error) {
	f.got = append(f.got, "grant "+ref+" "+req.To)
	return []*api.DatasetGrantResult{{Dataset: ref, Grantee: req.To}}, f.err
}
func (f *fakeResearch) FetchDataset(ctx context.Context, req api.DatasetFetchRequest, onProgress func(api.DatasetProgress)) (*api.DatasetFetchResult, error) {
	f.got = append(f.got, "fetch "+strings.Join(req.Datasets, ",")+" "+req.Dir+" "+req.Job)
	return &api.DatasetFetchResult{Dir: req.Dir}, f.err
}
func (f *fakeResearch) FetchProgress(job string) (api.DatasetProgress, bool) {
	p, ok := f.jobs[job]
	return p, ok
}

const token = "test-token"

func call(t *testing.T, h http.Handler, method, path, body string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(method, "http://127.0.0.1"+path, strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

// TestResearchRoutes: every research route reaches its service call with
// the request's values, lists come back as [] (never null), and the
// service's error kinds become their statuses.
func TestResearchRoutes(t *testing.T) {
	f := &fakeResearch{jobs: map[string]api.DatasetProgress{"j1": {Instances: 12, Fetched: 5}}}
	h := httpapi.New(token, nil, httpapi.Research{S: f})
	for _, c := range []struct {
		method, path, body string
		got, reply         string
	}{
		{"POST", "/api/v1/consents", `{"patient":"P1","purpose":"research"}`, "add P1 research", `"purpose": "research"`},
		{"POST", "/api/v1/consents/revoke", `{"patient":"P1"}`, "revoke P1", `"entry"`},
		{"POST", "/api/v1/consents/list", `{"patient":"P1","purpose":"treatment"}`, "list P1 treatment", `[]`},
		{"POST", "/api/v1/datasets", `{"name":"spine","query":"modality=MR"}`, "create spine", `"name": "spine"`},
		{"GET", "/api/v1/datasets", ``, "ls", `[]`},
		{"POST", "/api/v1/datasets/spine/grants", `{"to":"12D3KooWX"}`, "grant spine 12D3KooWX", `"grantee": "12D3KooWX"`},
		{"POST", "/api/v1/datasets/fetch", `{"datasets":["spine"],"dir":"/tmp/x","job":"j2"}`, "fetch spine /tmp/x j2", `"dir": "/tmp/x"`},
		{"GET", "/api/v1/datasets/fetch/j1", ``, "", `"fetched_count": 5`},
	} {
		f.got = nil
		code, body := call(t, h, c.method, c.path, c.body)
		if code != http.StatusOK || !strings.Contains(body, c.reply) {
			t.Errorf("%s %s: %d %s", c.method, c.path, code, body)
		}
		if c.got != "" && (len(f.got) != 1 || f.got[0] != c.got) {
			t.Errorf("%s %s: service got %q, want %q", c.method, c.path, f.got, c.got)
		}
	}

	if code, body := call(t, h, "GET", "/api/v1/datasets/fetch/nope", ""); code != http.StatusNotFound || !strings.Contains(body, "no such fetch job") {
		t.Errorf("unknown job: %d %s", code, body)
	}
	if code, _ := call(t, h, "POST", "/api/v1/datasets", `{"name":`); code != http.StatusBadRequest {
		t.Errorf("malformed body: %d", code)
	}
	for _, c := range []struct {
		err  error
		code int
	}{
		{fault.Invalidf("", "bad name"), http.StatusBadRequest},
		{fault.NotFoundf("`medmesh dataset ls` lists what this node may read", "no readable dataset"), http.StatusNotFound},
		{fault.Forbiddenf("only the publishing clinic grants its dataset", "not yours"), http.StatusForbidden},
		{fault.Conflictf("start the grantee's daemon", "no key yet"), http.StatusConflict},
		{fault.Unavailablef("", "holder unreachable"), http.StatusServiceUnavailable},
	} {
		f.err = c.err
		code, body := call(t, h, "POST", "/api/v1/datasets/spine/grants", `{"to":"x"}`)
		var e api.Error
		if code != c.code || json.Unmarshal([]byte(body), &e) != nil || e.Error != c.err.Error() || e.Hint != fault.HintOf(c.err) {
			t.Errorf("%v: %d %s, want %d", c.err, code, body, c.code)
		}
	}
}
