package httpapi

import (
	"context"
	"net/http"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/node/api"
)

// DICOMNetwork is what the DICOM network routes need (*pacs.Service).
type DICOMNetwork interface {
	Verify(ctx context.Context, to string) (*api.DicomEchoResult, error)
	Send(ctx context.Context, id cid.Cid, version int, series, to, purpose string) (*api.DicomSendResult, error)
}

// DICOM serves `medmesh dicom echo|send`: the node as a DICOM SCU
// (/api/v1/dicom/echo, /api/v1/dicom/send). The SCP listens on its own
// port (dicom.listen), not here.
type DICOM struct{ S DICOMNetwork }

// Routes implements Area.
func (a DICOM) Routes(m Mux) {
	m.HandleFunc("POST "+p+"/dicom/echo", a.echo)
	m.HandleFunc("POST "+p+"/dicom/send", a.send)
}

func (a DICOM) echo(w http.ResponseWriter, r *http.Request) {
	var req api.DicomEchoRequest
	if err := api.Decode(r, &req); err != nil {
		api.Fail(w, err)
		return
	}
	res, err := a.S.Verify(r.Context(), req.To)
	Reply(w, res, err)
}

func (a DICOM) send(w http.ResponseWriter, r *http.Request) {
	var req api.DicomSendRequest
	if err := api.Decode(r, &req); err != nil {
		api.Fail(w, err)
		return
	}
	id, err := bodyRecordID(req.Record)
	if err != nil {
		api.Fail(w, err)
		return
	}
	res, err := a.S.Send(r.Context(), id, req.Version, req.Series, req.To, req.Purpose)
	Reply(w, res, err)
}
