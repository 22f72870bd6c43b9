package httpapi

import (
	"context"
	"net/http"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/storage/dicom"
)

// ImagingService is what the /dicom routes need (*imaging.Service).
type ImagingService interface {
	Import(ctx context.Context, paths []string) (*api.DicomImportResult, error)
	Query(ctx context.Context, f dicom.Filter) ([]api.DicomStudyHit, error)
	Export(ctx context.Context, id cid.Cid, version int, dir, series, purpose string) (*api.DicomExportResult, error)
	DeidentifyRecord(ctx context.Context, id cid.Cid, req api.DicomDeidRequest) (*api.DicomDeidResult, error)
}

// Imaging serves `medmesh dicom import|query|export|deidentify`
// (/api/v1/dicom/...). DICOMweb is node/dicomweb.
type Imaging struct{ S ImagingService }

// Routes implements Area.
func (a Imaging) Routes(m Mux) {
	m.HandleFunc("POST "+p+"/dicom/import", a.importStudies)
	m.HandleFunc("GET "+p+"/dicom/studies", a.query)
	m.HandleFunc("POST "+p+"/dicom/export", a.export)
	m.HandleFunc("POST "+p+"/dicom/deidentify", a.deidentify)
}

func (a Imaging) importStudies(w http.ResponseWriter, r *http.Request) {
	var req api.DicomImportRequest
	if err := api.Decode(r, &req); err != nil {
		api.Fail(w, err)
		return
	}
	res, err := a.S.Import(r.Context(), req.Paths)
	Reply(w, res, err)
}

func (a Imaging) query(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	// Modality matches whatever its case (the index), and any value is a
	// query: archives hold modalities that are not defined terms.
	hits, err := a.S.Query(r.Context(), dicom.Filter{
		PatientID: q.Get("patient"), Modality: q.Get("modality"), StudyUID: q.Get("study"),
		From: q.Get("from"), To: q.Get("to"),
	})
	Reply(w, hits, err)
}

func (a Imaging) export(w http.ResponseWriter, r *http.Request) {
	var req api.DicomExportRequest
	if err := api.Decode(r, &req); err != nil {
		api.Fail(w, err)
		return
	}
	id, err := bodyRecordID(req.Record)
	if err != nil {
		api.Fail(w, err)
		return
	}
	res, err := a.S.Export(r.Context(), id, req.Version, req.Dir, req.Series, req.Purpose)
	Reply(w, res, err)
}

func (a Imaging) deidentify(w http.ResponseWriter, r *http.Request) {
	var req api.DicomDeidRequest
	if err := api.Decode(r, &req); err != nil {
		api.Fail(w, err)
		return
	}
	id, err := bodyRecordID(req.Record)
	if err != nil {
		api.Fail(w, err)
		return
	}
	res, err := a.S.DeidentifyRecord(r.Context(), id, req)
	Reply(w, res, err)
}

// bodyRecordID parses a record ID given in a request body.
func bodyRecordID(s string) (cid.Cid, error) {
	c, err := cid.Decode(s)
	if err != nil {
		return cid.Undef, fault.Invalidf("record IDs look like bafkrei…", "%q is not a record ID: %v", s, err)
	}
	return c, nil
}
