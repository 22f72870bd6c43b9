package daemon

import (
	"github.com/medmesh/medmesh/internal/fault"
	"net/http"

	"github.com/ipfs/go-cid"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/storage/dicom"
)

func (d *Daemon) dicomRoutes() {
	s := d.api
	s.HandleFunc("POST "+p+"/dicom/import", func(w http.ResponseWriter, r *http.Request) {
		var req api.DicomImportRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		res, err := d.imaging.Import(r.Context(), req.Paths)
		reply(w, res, err)
	})
	s.HandleFunc("GET "+p+"/dicom/studies", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		// Modality matches whatever its case (the index), and any value is
		// a query: archives hold modalities that are not defined terms.
		hits, err := d.imaging.Query(r.Context(), dicom.Filter{
			PatientID: q.Get("patient"), Modality: q.Get("modality"), StudyUID: q.Get("study"),
			From: q.Get("from"), To: q.Get("to"),
		})
		reply(w, hits, err)
	})
	s.HandleFunc("POST "+p+"/dicom/export", func(w http.ResponseWriter, r *http.Request) {
		var req api.DicomExportRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		id, err := recordID(req.Record)
		if err != nil {
			api.Fail(w, err)
			return
		}
		res, err := d.imaging.Export(r.Context(), id, req.Version, req.Dir, req.Series, req.Purpose)
		if err != nil {
			api.Fail(w, err)
			return
		}
		reply(w, res, nil)
	})
	s.HandleFunc("POST "+p+"/dicom/deidentify", func(w http.ResponseWriter, r *http.Request) {
		var req api.DicomDeidRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		id, err := recordID(req.Record)
		if err != nil {
			api.Fail(w, err)
			return
		}
		res, err := d.imaging.DeidentifyRecord(r.Context(), id, req)
		reply(w, res, err)
	})
	d.dicomwebRoutes()
}

func recordID(s string) (cid.Cid, error) {
	c, err := cid.Decode(s)
	if err != nil {
		return cid.Undef, fault.Invalidf("record IDs look like bafkrei…", "%q is not a record ID: %v", s, err)
	}
	return c, nil
}
