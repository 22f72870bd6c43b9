package daemon

import (
	"net/http"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/research"
)

// startResearch builds the research service (consents and datasets) over
// the records and imaging services.
func (d *Daemon) startResearch() error {
	r, err := research.New(research.Config{
		Ledger: d.Ledger, Records: d.Records, Imaging: d.imaging,
		Self: d.self, Identity: d.ident, Local: d.local,
		Now: d.opts.Now, Logger: d.log,
	})
	if err != nil {
		return err
	}
	d.Research = r
	return nil
}

// datasetRoutes serves /consents and /datasets (until the HTTP layer has
// a research Area).
func (d *Daemon) datasetRoutes() {
	s, rs := d.api, d.Research
	s.HandleFunc("POST "+p+"/consents", func(w http.ResponseWriter, r *http.Request) {
		var req api.ConsentRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		c, err := rs.AddConsent(r.Context(), req)
		reply(w, c, err)
	})
	s.HandleFunc("POST "+p+"/consents/revoke", func(w http.ResponseWriter, r *http.Request) {
		var req api.ConsentRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		c, err := rs.RevokeConsent(r.Context(), req)
		reply(w, c, err)
	})
	s.HandleFunc("POST "+p+"/consents/list", func(w http.ResponseWriter, r *http.Request) {
		var req api.ConsentListRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		cs, err := rs.Consents(r.Context(), req.Patient, req.Purpose)
		reply(w, cs, err)
	})
	s.HandleFunc("POST "+p+"/datasets", func(w http.ResponseWriter, r *http.Request) {
		var req api.DatasetCreateRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		res, err := rs.CreateDataset(r.Context(), req)
		reply(w, res, err)
	})
	s.HandleFunc("GET "+p+"/datasets", func(w http.ResponseWriter, r *http.Request) {
		reply(w, rs.ListDatasets(r.Context()), nil)
	})
	s.HandleFunc("POST "+p+"/datasets/{id}/grants", func(w http.ResponseWriter, r *http.Request) {
		var req api.DatasetGrantRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		out, err := rs.GrantDatasets(r.Context(), r.PathValue("id"), req)
		reply(w, out, err)
	})
	s.HandleFunc("POST "+p+"/datasets/fetch", func(w http.ResponseWriter, r *http.Request) {
		var req api.DatasetFetchRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		res, err := rs.FetchDataset(r.Context(), req, nil)
		reply(w, res, err)
	})
	s.HandleFunc("GET "+p+"/datasets/fetch/{job}", func(w http.ResponseWriter, r *http.Request) {
		pr, ok := rs.FetchProgress(r.PathValue("job"))
		if !ok {
			api.Fail(w, fault.NotFoundf("", "no such fetch job"))
			return
		}
		reply(w, pr, nil)
	})
}
