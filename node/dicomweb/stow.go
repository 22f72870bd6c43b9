package dicomweb

import (
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"sort"
	"strings"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/storage/dicom"
)

// STOW-RS: parts staged in the repo, then imported as files are.

// failed is a part that was not stored, and why (a PS3.4 status).
type failed struct {
	classUID, sopUID string
	reason           int
}

func (a Area) handleStow(w http.ResponseWriter, r *http.Request) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" {
		api.Fail(w, api.Errorf(http.StatusUnsupportedMediaType, `send multipart/related; type="application/dicom"`, "STOW-RS body must be multipart/related, got %q", r.Header.Get("Content-Type")))
		return
	}
	if t := params["type"]; t != "" && !strings.EqualFold(t, "application/dicom") {
		api.Fail(w, api.Errorf(http.StatusUnsupportedMediaType, `send Part 10 instances: type="application/dicom"`, "unsupported STOW-RS part type %q", t))
		return
	}
	if params["boundary"] == "" {
		api.Fail(w, api.Errorf(http.StatusBadRequest, "", "multipart/related without a boundary"))
		return
	}
	stage, err := a.Imaging.Stage()
	if err != nil {
		api.Fail(w, err)
		return
	}
	defer stage.Close()
	fails, err := stageParts(stage, multipart.NewReader(r.Body, params["boundary"]), r.PathValue("study"))
	if err != nil {
		api.Fail(w, err)
		return
	}
	res, err := stage.Import(r.Context())
	if err != nil {
		api.Fail(w, err)
		return
	}
	if len(res.Warnings) > 0 {
		// PS3.4 has no storage warning status for this; the instances are
		// stored as sent and the HTTP Warning header says why they differ.
		w.Header().Set("Warning", fmt.Sprintf(`299 medmesh "%d instance(s) stored with UIDs that are not conformant (PS3.5 9.1), kept as they are"`, len(res.Warnings)))
	}
	code, out := stowResponse(baseURL(r), res, fails)
	writeDicomJSON(w, code, out)
}

// stageParts writes every part of a STOW-RS body to the staging; a part
// that is not application/dicom, or (want set) belongs to another study,
// is a failure and is not staged. A malformed body, a part too large or
// one that cannot be read fails the whole request: nothing is stored.
func stageParts(stage *imaging.Staging, mr *multipart.Reader, want string) ([]failed, error) {
	var fails []failed
	parts := 0
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, api.Errorf(http.StatusBadRequest, "", "malformed multipart body after %d parts: %v; nothing was stored", parts, err)
		}
		parts++
		if parts > maxStowParts {
			return nil, api.Errorf(http.StatusRequestEntityTooLarge, "send fewer instances per request", "more than %d parts; nothing was stored", maxStowParts)
		}
		if ct := part.Header.Get("Content-Type"); ct != "" {
			if pmt, _, err := mime.ParseMediaType(ct); err != nil || pmt != "application/dicom" {
				fails = append(fails, failed{reason: failUnsupportedCTT})
				part.Close()
				continue
			}
		}
		sd, err := stage.Put(part)
		switch {
		case fault.Is(err, fault.TooLarge):
			return nil, api.Errorf(http.StatusRequestEntityTooLarge, "", "part %d is larger than %d bytes; nothing was stored", parts, int64(dicom.MaxFileSize))
		case fault.Is(err, fault.Invalid):
			return nil, api.Errorf(http.StatusBadRequest, "", "read part %d: %v; nothing was stored", parts, err)
		case err != nil:
			return nil, err
		}
		if want != "" {
			in, err := dicom.ParseFile(sd.Path)
			if err == nil && in.StudyInstanceUID != want {
				fails = append(fails, failed{in.SOPClassUID, in.SOPInstanceUID, failStudyMismatch})
				if err := stage.Drop(sd); err != nil {
					return nil, err
				}
			}
		}
	}
	if parts == 0 {
		return nil, api.Errorf(http.StatusBadRequest, "", "STOW-RS request has no parts")
	}
	return fails, nil
}

// stowResponse is the STOW-RS response (PS3.18 10.5.3): the stored
// instances, the failed ones with their reasons; 200 if all were stored,
// 202 if some, 409 if none.
func stowResponse(base string, res *api.DicomImportResult, fails []failed) (int, dsJSON) {
	ok := []dsJSON{}
	studies := map[string]bool{}
	paths := make([]string, 0, len(res.Files))
	for p := range res.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		o := res.Files[p]
		if o.Err != "" || o.SOPInstanceUID == "" {
			reason := failCannotUnderst
			if o.SOPInstanceUID != "" {
				reason = failProcessing
			}
			fails = append(fails, failed{o.SOPClassUID, o.SOPInstanceUID, reason})
			continue
		}
		studies[o.StudyUID] = true
		ds := dsJSON{}
		ds.set("00081150", "UI", o.SOPClassUID)
		ds.set("00081155", "UI", o.SOPInstanceUID)
		ds.set("00081190", "UR", base+"/studies/"+o.StudyUID+"/instances/"+o.SOPInstanceUID)
		ok = append(ok, ds)
	}
	// Duplicates within one request are skipped in Scan without a SOP UID
	// in our outcome map; they are neither stored twice nor failures.
	out := dsJSON{}
	if len(studies) == 1 {
		for s := range studies {
			out.set("00081190", "UR", base+"/studies/"+s)
		}
	}
	if len(ok) > 0 {
		out["00081199"] = map[string]any{"vr": "SQ", "Value": ok}
	}
	if len(fails) > 0 {
		fs := []dsJSON{}
		for _, f := range fails {
			ds := dsJSON{}
			ds.set("00081150", "UI", f.classUID)
			ds.set("00081155", "UI", f.sopUID)
			ds.set("00081197", "US", f.reason)
			fs = append(fs, ds)
		}
		out["00081198"] = map[string]any{"vr": "SQ", "Value": fs}
	}
	code := http.StatusOK
	switch {
	case len(ok) == 0:
		code = http.StatusConflict
	case len(fails) > 0:
		code = http.StatusAccepted
	}
	return code, out
}
