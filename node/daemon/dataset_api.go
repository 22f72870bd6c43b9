package daemon

import (
	"github.com/medmesh/medmesh/internal/fault"
	"net/http"

	"github.com/medmesh/medmesh/node/api"
)

func (d *Daemon) datasetRoutes() {
	s := d.api
	s.HandleFunc("POST "+p+"/consents", func(w http.ResponseWriter, r *http.Request) {
		var req api.ConsentRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		c, err := d.AddConsent(r.Context(), req)
		reply(w, c, err)
	})
	s.HandleFunc("POST "+p+"/consents/revoke", func(w http.ResponseWriter, r *http.Request) {
		var req api.ConsentRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		c, err := d.RevokeConsent(r.Context(), req)
		reply(w, c, err)
	})
	s.HandleFunc("POST "+p+"/consents/list", func(w http.ResponseWriter, r *http.Request) {
		var req api.ConsentListRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		cs, err := d.Consents(r.Context(), req.Patient, req.Purpose)
		reply(w, cs, err)
	})
	s.HandleFunc("POST "+p+"/datasets", func(w http.ResponseWriter, r *http.Request) {
		var req api.DatasetCreateRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		res, err := d.CreateDataset(r.Context(), req)
		reply(w, res, err)
	})
	s.HandleFunc("GET "+p+"/datasets", func(w http.ResponseWriter, r *http.Request) {
		reply(w, d.ListDatasets(r.Context()), nil)
	})
	s.HandleFunc("POST "+p+"/datasets/{id}/grants", func(w http.ResponseWriter, r *http.Request) {
		var req api.DatasetGrantRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		refs, err := d.findDatasets(r.Context(), r.PathValue("id"))
		if err != nil {
			api.Fail(w, err)
			return
		}
		var out []*api.DatasetGrantResult
		for _, ref := range refs {
			if ref.info.Owner != d.self {
				continue
			}
			g, err := d.GrantDataset(r.Context(), ref.info.ID, req)
			if err != nil {
				api.Fail(w, err)
				return
			}
			out = append(out, g)
		}
		if len(out) == 0 {
			api.Fail(w, fault.Forbiddenf("only the publishing clinic grants its dataset", "this node publishes no dataset %q", r.PathValue("id")))
			return
		}
		reply(w, out, nil)
	})
	s.HandleFunc("POST "+p+"/datasets/fetch", func(w http.ResponseWriter, r *http.Request) {
		var req api.DatasetFetchRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		res, err := d.FetchDataset(r.Context(), req, nil)
		reply(w, res, err)
	})
	s.HandleFunc("GET "+p+"/datasets/fetch/{job}", func(w http.ResponseWriter, r *http.Request) {
		pr, ok := d.DatasetFetchProgress(r.PathValue("job"))
		if !ok {
			api.Fail(w, fault.NotFoundf("", "no such fetch job"))
			return
		}
		reply(w, pr, nil)
	})
}
