package httpapi

import (
	"context"
	"net/http"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
)

// ResearchService is what the research routes need (*research.Service).
type ResearchService interface {
	AddConsent(ctx context.Context, req api.ConsentRequest) (*api.ConsentInfo, error)
	RevokeConsent(ctx context.Context, req api.ConsentRequest) (*api.ConsentRevokeResult, error)
	Consents(ctx context.Context, patientID, purpose string) ([]api.ConsentInfo, error)
	CreateDataset(ctx context.Context, req api.DatasetCreateRequest) (*api.DatasetCreateResult, error)
	ListDatasets(ctx context.Context) []api.DatasetInfo
	GrantDatasets(ctx context.Context, ref string, req api.DatasetGrantRequest) ([]*api.DatasetGrantResult, error)
	FetchDataset(ctx context.Context, req api.DatasetFetchRequest, onProgress func(api.DatasetProgress)) (*api.DatasetFetchResult, error)
	FetchProgress(job string) (api.DatasetProgress, bool)
}

// Research serves `medmesh consent` (/consents) and `medmesh dataset`
// (/datasets). A fetch runs for as long as its request; the CLI names it
// (api.DatasetFetchRequest.Job) and polls GET /datasets/fetch/{job} for
// its progress meanwhile.
type Research struct{ S ResearchService }

// Routes implements Area.
func (a Research) Routes(m Mux) {
	m.HandleFunc("POST "+p+"/consents", a.addConsent)
	m.HandleFunc("POST "+p+"/consents/revoke", a.revokeConsent)
	// A POST, so a patient ID is never part of a URL (or a log line).
	m.HandleFunc("POST "+p+"/consents/list", a.consents)
	m.HandleFunc("POST "+p+"/datasets", a.create)
	m.HandleFunc("GET "+p+"/datasets", a.list)
	m.HandleFunc("POST "+p+"/datasets/{id}/grants", a.grant)
	m.HandleFunc("POST "+p+"/datasets/fetch", a.fetch)
	m.HandleFunc("GET "+p+"/datasets/fetch/{job}", a.progress)
}

func (a Research) addConsent(w http.ResponseWriter, r *http.Request) {
	var req api.ConsentRequest
	if err := api.Decode(r, &req); err != nil {
		api.Fail(w, err)
		return
	}
	c, err := a.S.AddConsent(r.Context(), req)
	Reply(w, c, err)
}

func (a Research) revokeConsent(w http.ResponseWriter, r *http.Request) {
	var req api.ConsentRequest
	if err := api.Decode(r, &req); err != nil {
		api.Fail(w, err)
		return
	}
	c, err := a.S.RevokeConsent(r.Context(), req)
	Reply(w, c, err)
}

func (a Research) consents(w http.ResponseWriter, r *http.Request) {
	var req api.ConsentListRequest
	if err := api.Decode(r, &req); err != nil {
		api.Fail(w, err)
		return
	}
	cs, err := a.S.Consents(r.Context(), req.Patient, req.Purpose)
	Reply(w, cs, err)
}

func (a Research) create(w http.ResponseWriter, r *http.Request) {
	var req api.DatasetCreateRequest
	if err := api.Decode(r, &req); err != nil {
		api.Fail(w, err)
		return
	}
	res, err := a.S.CreateDataset(r.Context(), req)
	Reply(w, res, err)
}

func (a Research) list(w http.ResponseWriter, r *http.Request) {
	Reply(w, a.S.ListDatasets(r.Context()), nil)
}

func (a Research) grant(w http.ResponseWriter, r *http.Request) {
	var req api.DatasetGrantRequest
	if err := api.Decode(r, &req); err != nil {
		api.Fail(w, err)
		return
	}
	out, err := a.S.GrantDatasets(r.Context(), r.PathValue("id"), req)
	Reply(w, out, err)
}

func (a Research) fetch(w http.ResponseWriter, r *http.Request) {
	var req api.DatasetFetchRequest
	if err := api.Decode(r, &req); err != nil {
		api.Fail(w, err)
		return
	}
	res, err := a.S.FetchDataset(r.Context(), req, nil)
	Reply(w, res, err)
}

func (a Research) progress(w http.ResponseWriter, r *http.Request) {
	pr, ok := a.S.FetchProgress(r.PathValue("job"))
	if !ok {
		api.Fail(w, fault.NotFoundf("", "no such fetch job"))
		return
	}
	Reply(w, pr, nil)
}
