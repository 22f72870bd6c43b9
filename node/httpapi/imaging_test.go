package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/httpapi"
	"github.com/medmesh/medmesh/storage/dicom"
)

// fakeImaging records what each call was asked and answers with err.
type fakeImaging struct {
	got []string
	err error
}

func (f *fakeImaging) Import(ctx context.Context, paths []string) (*api.DicomImportResult, error) {
	f.got = append(f.got, "import "+strings.Join(paths, ","))
	return &api.DicomImportResult{Studies: []api.DicomStudyResult{{StudyUID: "1.2"}}}, f.err
}

func (f *fakeImaging) Query(ctx context.Context, q dicom.Filter) ([]api.DicomStudyHit, error) {
	f.got = append(f.got, "query "+q.PatientID+" "+q.Modality+" "+q.StudyUID+" "+q.From+" "+q.To)
	return nil, f.err
}

func (f *fakeImaging) Export(ctx context.Context, id cid.Cid, version int, dir, series, purpose string) (*api.DicomExportResult, error) {
	f.got = append(f.got, "export "+id.String()+" "+dir+" "+series+" "+purpose)
	return &api.DicomExportResult{ID: id.String()}, f.err
}

func (f *fakeImaging) DeidentifyRecord(ctx context.Context, id cid.Cid, req api.DicomDeidRequest) (*api.DicomDeidResult, error) {
	f.got = append(f.got, "deid "+id.String())
	return &api.DicomDeidResult{Source: id.String()}, f.err
}

const imgToken = "imaging-test-token"

func imgCall(t *testing.T, h http.Handler, method, path, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Host = "127.0.0.1:5001"
	req.Header.Set("Authorization", "Bearer "+imgToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

// TestImagingRoutes drives each /dicom route against a fake service: the
// request reaches the service as sent, lists are [] not null, bad input
// is 400 before the service is called, and fault kinds become statuses.
func TestImagingRoutes(t *testing.T) {
	f := &fakeImaging{}
	h := httpapi.New(imgToken, nil, httpapi.Imaging{S: f})
	const id = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
	for _, c := range []struct {
		method, path, body string
		code               int
		got                string // what the service was asked ("" for nothing)
		reply              string // in the body
	}{
		{"POST", api.Prefix + "/dicom/import", `{"paths":["/a","/b"]}`, 200, "import /a,/b", `"rejected": []`},
		{"POST", api.Prefix + "/dicom/import", `{"paths":"/a"}`, 400, "", "bad request body"},
		{"GET", api.Prefix + "/dicom/studies?patient=P1&modality=ct&study=1.2&from=2024-01-01&to=20241231", "", 200, "query P1 ct 1.2 2024-01-01 20241231", "[]"},
		{"POST", api.Prefix + "/dicom/export", `{"record":"` + id + `","dir":"/out","series":"1.2.3","purpose":"treatment"}`, 200, "export " + id + " /out 1.2.3 treatment", `"files": []`},
		{"POST", api.Prefix + "/dicom/export", `{"record":"nope","dir":"/out"}`, 400, "", "is not a record ID"},
		{"POST", api.Prefix + "/dicom/deidentify", `{"record":"` + id + `"}`, 200, "deid " + id, `"excluded": []`},
		{"POST", api.Prefix + "/dicom/deidentify", `{"record":"` + id + `","unknown":1}`, 400, "", "unknown field"},
	} {
		f.got = nil
		code, body := imgCall(t, h, c.method, c.path, c.body)
		if code != c.code || !strings.Contains(body, c.reply) {
			t.Errorf("%s %s: %d %s, want %d with %q", c.method, c.path, code, body, c.code, c.reply)
		}
		if got := strings.Join(f.got, ";"); got != c.got {
			t.Errorf("%s %s: service asked %q, want %q", c.method, c.path, got, c.got)
		}
	}
	for kind, code := range map[fault.Kind]int{fault.Invalid: 400, fault.NotFound: 404, fault.Forbidden: 403, fault.Conflict: 409, fault.Unavailable: 503} {
		f.err = fault.New(kind, "the hint", "it failed")
		got, body := imgCall(t, h, "POST", api.Prefix+"/dicom/export", `{"record":"`+id+`","dir":"/out"}`)
		var e api.Error
		if err := json.Unmarshal([]byte(body), &e); err != nil || got != code || e.Error != "it failed" || e.Hint != "the hint" {
			t.Errorf("%v: %d %s, want %d with the error and its hint", kind, got, body, code)
		}
	}
}
