package dicomweb

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"

	"github.com/medmesh/medmesh/node/httpapi"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/storage/dicom"
)

// Imaging is what DICOMweb needs from the imaging service
// (*imaging.Service).
type Imaging interface {
	// Stage collects STOW-RS parts for an import grouped into studies as
	// `medmesh dicom import` groups files.
	Stage() (*imaging.Staging, error)
	// Search answers QIDO-RS at every level from the encrypted index.
	Search(ctx context.Context, q imaging.Query) ([]*imaging.Row, []uint32, error)
	// OpenUID opens the readable study with a Study Instance UID.
	OpenUID(ctx context.Context, studyUID string) (*imaging.Opened, error)
	// WriteInstance streams an instance's original file; OpenInstance
	// returns it as a reader.
	WriteInstance(ctx context.Context, o *imaging.Opened, in *dicom.InstanceRef, w io.Writer) error
	OpenInstance(ctx context.Context, o *imaging.Opened, in *dicom.InstanceRef) io.ReadCloser
	// InstanceMetadataBulk renders an instance's attributes as DICOM JSON,
	// binary values as BulkDataURIs.
	InstanceMetadataBulk(ctx context.Context, o *imaging.Opened, in *dicom.InstanceRef, bulkURI func(tag uint32) string) ([]byte, error)
	// ReadDone counts a completed read of a study.
	ReadDone(ctx context.Context, o *imaging.Opened, purpose string)
}

// Area serves DICOMweb under /dicomweb on the node's API (an httpapi.Area,
// behind the same bearer token).
type Area struct {
	Imaging Imaging
	Log     *slog.Logger
}

// Routes implements httpapi.Area.
func (a Area) Routes(m httpapi.Mux) {
	m.HandleFunc("POST "+Prefix+"/studies", a.handleStow)
	m.HandleFunc("POST "+Prefix+"/studies/{study}", a.handleStow)
	m.HandleFunc("GET "+Prefix+"/studies", a.qido(imaging.LevelStudy))
	m.HandleFunc("GET "+Prefix+"/series", a.qido(imaging.LevelSeries))
	m.HandleFunc("GET "+Prefix+"/instances", a.qido(imaging.LevelImage))
	m.HandleFunc("GET "+Prefix+"/studies/{study}/series", a.qido(imaging.LevelSeries))
	m.HandleFunc("GET "+Prefix+"/studies/{study}/series/{series}/instances", a.qido(imaging.LevelImage))
	m.HandleFunc("GET "+Prefix+"/studies/{study}/instances", a.qido(imaging.LevelImage))
	inst := Prefix + "/studies/{study}/series/{series}/instances/{sop}"
	m.HandleFunc("GET "+inst+"/frames/{frames}", a.handleFrames)
	m.HandleFunc("GET "+inst+"/bulkdata/{tag}", a.handleBulk)
	m.HandleFunc("GET "+inst+"/rendered", a.handleRendered)
	m.HandleFunc("GET "+inst+"/frames/{frames}/rendered", a.handleRendered)
	for _, meta := range []bool{false, true} {
		suffix := ""
		if meta {
			suffix = "/metadata"
		}
		h := func(w http.ResponseWriter, r *http.Request) { a.handleWado(w, r, meta) }
		m.HandleFunc("GET "+Prefix+"/studies/{study}"+suffix, h)
		m.HandleFunc("GET "+Prefix+"/studies/{study}/series/{series}"+suffix, h)
		m.HandleFunc("GET "+Prefix+"/studies/{study}/series/{series}/instances/{sop}"+suffix, h)
	}
}

func (a Area) log() *slog.Logger {
	if a.Log == nil {
		return slog.Default()
	}
	return a.Log
}

// Prefix is where DICOMweb is served on the node's API.
const Prefix = "/dicomweb"

const (
	dicomJSONType = "application/dicom+json"
	maxStowParts  = 100000
)

// Failure reasons (PS3.18 Table I.2-2 / PS3.4 storage status codes).
const (
	failProcessing     = 0x0110 // processing failure
	failCannotUnderst  = 0xC000 // cannot understand (not DICOM, malformed)
	failStudyMismatch  = 0xA900 // does not match the study in the request URL
	failUnsupportedCTT = 0x0122 // refused: part media type not application/dicom
)

// dsJSON is a DICOM JSON data set (PS3.18 F.2) being built.
type dsJSON map[string]any

func (ds dsJSON) set(tag, vr string, vals ...any) {
	if len(vals) == 0 || (len(vals) == 1 && vals[0] == "") {
		ds[tag] = map[string]any{"vr": vr}
		return
	}
	ds[tag] = map[string]any{"vr": vr, "Value": vals}
}

func (ds dsJSON) pn(tag, name string) {
	if name == "" {
		ds[tag] = map[string]any{"vr": "PN"}
		return
	}
	ds[tag] = map[string]any{"vr": "PN", "Value": []any{map[string]string{"Alphabetic": name}}}
}

func writeDicomJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", dicomJSONType)
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func baseURL(r *http.Request) string { return "http://" + r.Host + Prefix }
