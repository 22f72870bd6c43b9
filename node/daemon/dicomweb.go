package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"sort"
	"strconv"
	"strings"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/storage/dicom"
)

// DICOMweb (PS3.18) on the node's API, behind the same bearer token:
//
//	STOW-RS  POST /dicomweb/studies[/{study}]          multipart/related; type="application/dicom"
//	QIDO-RS  GET  /dicomweb/studies                    application/dicom+json
//	         GET  /dicomweb/studies/{study}/series
//	         GET  /dicomweb/studies/{study}/series/{series}/instances
//	WADO-RS  GET  /dicomweb/studies/{study}[/series/{series}[/instances/{sop}]]
//	         ... /metadata                             application/dicom+json
//
// Instances are sent as stored (their original transfer syntax); no
// transcoding is done.
const (
	dicomwebPrefix = "/dicomweb"
	dicomJSONType  = "application/dicom+json"
	maxStowParts   = 100000
)

// Failure reasons (PS3.18 Table I.2-2 / PS3.4 storage status codes).
const (
	failProcessing     = 0x0110 // processing failure
	failCannotUnderst  = 0xC000 // cannot understand (not DICOM, malformed)
	failStudyMismatch  = 0xA900 // does not match the study in the request URL
	failUnsupportedCTT = 0x0122 // refused: part media type not application/dicom
)

func (d *Daemon) dicomwebRoutes() {
	s := d.api
	s.HandleFunc("POST "+dicomwebPrefix+"/studies", d.handleStow)
	s.HandleFunc("POST "+dicomwebPrefix+"/studies/{study}", d.handleStow)
	s.HandleFunc("GET "+dicomwebPrefix+"/studies", d.handleQidoStudies)
	s.HandleFunc("GET "+dicomwebPrefix+"/studies/{study}/series", d.handleQidoSeries)
	s.HandleFunc("GET "+dicomwebPrefix+"/studies/{study}/series/{series}/instances", d.handleQidoInstances)
	s.HandleFunc("GET "+dicomwebPrefix+"/studies/{study}/instances", d.handleQidoInstances)
	for _, m := range []bool{false, true} {
		suffix := ""
		if m {
			suffix = "/metadata"
		}
		meta := m
		s.HandleFunc("GET "+dicomwebPrefix+"/studies/{study}"+suffix, func(w http.ResponseWriter, r *http.Request) { d.handleWado(w, r, meta) })
		s.HandleFunc("GET "+dicomwebPrefix+"/studies/{study}/series/{series}"+suffix, func(w http.ResponseWriter, r *http.Request) { d.handleWado(w, r, meta) })
		s.HandleFunc("GET "+dicomwebPrefix+"/studies/{study}/series/{series}/instances/{sop}"+suffix, func(w http.ResponseWriter, r *http.Request) { d.handleWado(w, r, meta) })
	}
}

// ---- DICOM JSON helpers ----

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

func baseURL(r *http.Request) string { return "http://" + r.Host + dicomwebPrefix }

// ---- QIDO-RS ----

type qido struct {
	limit, offset int
	unsupported   []string
}

func parseQido(r *http.Request, known map[string]bool) (url map[string]string, q qido, err error) {
	url = map[string]string{}
	q.limit = -1
	alias := map[string]string{
		"00100020": "PatientID", "00100010": "PatientName", "0020000D": "StudyInstanceUID", "00080020": "StudyDate",
		"00080061": "ModalitiesInStudy", "00080060": "Modality", "0020000E": "SeriesInstanceUID", "00080018": "SOPInstanceUID",
		"00080050": "AccessionNumber",
	}
	for k, vs := range r.URL.Query() {
		v := ""
		if len(vs) > 0 {
			v = vs[len(vs)-1]
		}
		if a, ok := alias[strings.ToUpper(k)]; ok {
			k = a
		}
		switch k {
		case "limit", "offset":
			n, perr := strconv.Atoi(v)
			if perr != nil || n < 0 {
				return nil, q, api.Errorf(http.StatusBadRequest, "", "%s must be a non-negative integer, got %q", k, v)
			}
			if k == "limit" {
				q.limit = n
			} else {
				q.offset = n
			}
		case "includefield", "fuzzymatching":
		default:
			if known[k] {
				url[k] = v
			} else {
				q.unsupported = append(q.unsupported, k)
			}
		}
	}
	return url, q, nil
}

func (q qido) page(w http.ResponseWriter, out []dsJSON) {
	if len(q.unsupported) > 0 {
		sort.Strings(q.unsupported)
		w.Header().Set("Warning", fmt.Sprintf(`299 medmesh "unsupported query parameters ignored: %s"`, strings.Join(q.unsupported, ", ")))
	}
	if q.offset >= len(out) {
		out = []dsJSON{}
	} else {
		out = out[q.offset:]
	}
	if q.limit >= 0 && q.limit < len(out) {
		out = out[:q.limit]
	}
	writeDicomJSON(w, http.StatusOK, out)
}

// wildMatch matches DICOM wildcard matching: * any run, ? one character.
func wildMatch(pattern, s string) bool {
	p, t := []rune(pattern), []rune(s)
	star, match := -1, 0
	i, j := 0, 0
	for j < len(t) {
		switch {
		case i < len(p) && (p[i] == '?' || p[i] == t[j]):
			i++
			j++
		case i < len(p) && p[i] == '*':
			star, match = i, j
			i++
		case star >= 0:
			i = star + 1
			match++
			j = match
		default:
			return false
		}
	}
	for i < len(p) && p[i] == '*' {
		i++
	}
	return i == len(p)
}

func isWild(s string) bool { return strings.ContainsAny(s, "*?") }

// dateRange parses a DA range: D, D-, -D, D1-D2.
func dateRange(v string) (from, to string, err error) {
	if v == "" {
		return "", "", nil
	}
	bad := api.Errorf(http.StatusBadRequest, "use YYYYMMDD, YYYYMMDD-, -YYYYMMDD or YYYYMMDD-YYYYMMDD", "bad StudyDate %q", v)
	a, b, isRange := strings.Cut(v, "-")
	if !isRange {
		b = a
	}
	if a != "" {
		if from, err = imaging.NormDate(a); err != nil {
			return "", "", bad
		}
	}
	if b != "" {
		if to, err = imaging.NormDate(b); err != nil {
			return "", "", bad
		}
	}
	return from, to, nil
}

var qidoStudyKeys = map[string]bool{"PatientID": true, "PatientName": true, "StudyInstanceUID": true, "StudyDate": true, "ModalitiesInStudy": true, "Modality": true}

func (d *Daemon) handleQidoStudies(w http.ResponseWriter, r *http.Request) {
	keys, q, err := parseQido(r, qidoStudyKeys)
	if err != nil {
		api.Fail(w, err)
		return
	}
	var f dicom.Filter
	if f.From, f.To, err = dateRange(keys["StudyDate"]); err != nil {
		api.Fail(w, err)
		return
	}
	pid := keys["PatientID"]
	if !isWild(pid) {
		f.PatientID = pid
	}
	f.Modality = keys["ModalitiesInStudy"]
	if f.Modality == "" {
		f.Modality = keys["Modality"]
	}
	uids := []string{""}
	if v := keys["StudyInstanceUID"]; v != "" {
		uids = strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\\' })
	}
	seen := map[string]bool{}
	var hits []dicom.Hit
	for _, u := range uids {
		f.StudyUID = u
		hs, err := d.imaging.Find(r.Context(), f)
		if err != nil {
			api.Fail(w, err)
			return
		}
		for _, h := range hs {
			if seen[h.StudyUID] {
				continue // one answer per study (own version first below)
			}
			if isWild(pid) && !wildMatch(pid, h.PatientID) {
				continue
			}
			if name := keys["PatientName"]; name != "" && !wildMatch(name, h.PatientName) {
				continue
			}
			seen[h.StudyUID] = true
			hits = append(hits, h)
		}
	}
	out := []dsJSON{}
	for _, h := range hits {
		ds := dsJSON{}
		ds.set("00080020", "DA", h.StudyDate)
		ds.set("00080061", "CS", toAny(h.Modalities)...)
		ds.pn("00100010", h.PatientName)
		ds.set("00100020", "LO", h.PatientID)
		ds.set("0020000D", "UI", h.StudyUID)
		ds.set("00081030", "LO", h.Description)
		ds.set("00201208", "IS", h.Instances)
		ds.set("00081190", "UR", baseURL(r)+"/studies/"+h.StudyUID)
		out = append(out, ds)
	}
	q.page(w, out)
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

var qidoSeriesKeys = map[string]bool{"Modality": true, "SeriesInstanceUID": true, "SOPInstanceUID": true}

func (d *Daemon) handleQidoSeries(w http.ResponseWriter, r *http.Request) {
	keys, q, err := parseQido(r, qidoSeriesKeys)
	if err != nil {
		api.Fail(w, err)
		return
	}
	os, err := d.imaging.OpenUID(r.Context(), r.PathValue("study"))
	if err != nil {
		api.Fail(w, err)
		return
	}
	out := []dsJSON{}
	for _, se := range os.Study.Series {
		if m := keys["Modality"]; m != "" && !strings.EqualFold(m, se.Modality) {
			continue
		}
		if u := keys["SeriesInstanceUID"]; u != "" && u != se.UID {
			continue
		}
		ds := dsJSON{}
		ds.set("0020000D", "UI", os.Study.UID)
		ds.set("0020000E", "UI", se.UID)
		ds.set("00080060", "CS", se.Modality)
		ds.set("00200011", "IS", se.Number)
		ds.set("0008103E", "LO", se.Description)
		ds.set("00201209", "IS", len(se.Instances))
		ds.set("00081190", "UR", baseURL(r)+"/studies/"+os.Study.UID+"/series/"+se.UID)
		out = append(out, ds)
	}
	q.page(w, out)
}

func (d *Daemon) handleQidoInstances(w http.ResponseWriter, r *http.Request) {
	keys, q, err := parseQido(r, qidoSeriesKeys)
	if err != nil {
		api.Fail(w, err)
		return
	}
	os, err := d.imaging.OpenUID(r.Context(), r.PathValue("study"))
	if err != nil {
		api.Fail(w, err)
		return
	}
	series := r.PathValue("series")
	out := []dsJSON{}
	for _, se := range os.Study.Series {
		if series != "" && se.UID != series {
			continue
		}
		if u := keys["SeriesInstanceUID"]; u != "" && u != se.UID {
			continue
		}
		if m := keys["Modality"]; m != "" && !strings.EqualFold(m, se.Modality) {
			continue
		}
		for _, in := range se.Instances {
			if u := keys["SOPInstanceUID"]; u != "" && u != in.SOPInstanceUID {
				continue
			}
			ds := dsJSON{}
			ds.set("00080016", "UI", in.SOPClassUID)
			ds.set("00080018", "UI", in.SOPInstanceUID)
			ds.set("00080060", "CS", se.Modality)
			ds.set("0020000D", "UI", os.Study.UID)
			ds.set("0020000E", "UI", se.UID)
			ds.set("00200013", "IS", in.Number)
			ds.set("00083002", "UI", in.TransferSyntax)
			ds.set("00081190", "UR", baseURL(r)+"/studies/"+os.Study.UID+"/series/"+se.UID+"/instances/"+in.SOPInstanceUID)
			out = append(out, ds)
		}
	}
	if series != "" && len(out) == 0 && len(keys) == 0 {
		found := false
		for _, se := range os.Study.Series {
			found = found || se.UID == series
		}
		if !found {
			api.Fail(w, api.Errorf(http.StatusNotFound, "", "study %s has no series %s", os.Study.UID, series))
			return
		}
	}
	q.page(w, out)
}

// ---- WADO-RS ----

func (d *Daemon) handleWado(w http.ResponseWriter, r *http.Request, metadata bool) {
	studyUID, seriesUID, sopUID := r.PathValue("study"), r.PathValue("series"), r.PathValue("sop")
	if !metadata {
		if acc := r.Header.Get("Accept"); acc != "" && !strings.Contains(acc, "multipart/related") && !strings.Contains(acc, "*/*") {
			api.Fail(w, api.Errorf(http.StatusNotAcceptable, `ask for multipart/related; type="application/dicom"`, "cannot send %q: instances are sent as multipart/related; type=\"application/dicom\"", acc))
			return
		}
	}
	os, err := d.imaging.OpenUID(r.Context(), studyUID)
	if err != nil {
		api.Fail(w, err)
		return
	}
	sel := os.Select(seriesUID, sopUID)
	if len(sel) == 0 {
		api.Fail(w, api.Errorf(http.StatusNotFound, "", "no such series or instance in study %s", studyUID))
		return
	}
	ctx := r.Context()
	if metadata {
		err = d.wadoMetadata(ctx, w, os, sel)
	} else {
		err = d.wadoInstances(ctx, w, os, sel)
	}
	if err != nil {
		// The status line and part of the body are gone: abort the
		// response so the client sees a failed transfer, not a short one.
		d.log.Warn("WADO-RS transfer failed", "record", os.Info.ID, "err", err)
		panic(http.ErrAbortHandler)
	}
	d.imaging.ReadDone(ctx, os, "")
}

func (d *Daemon) wadoInstances(ctx context.Context, w http.ResponseWriter, os *imaging.Opened, sel []*dicom.InstanceRef) error {
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
	w.WriteHeader(http.StatusOK)
	for _, in := range sel {
		h := textproto.MIMEHeader{}
		ct := "application/dicom"
		if in.TransferSyntax != "" {
			ct += "; transfer-syntax=" + in.TransferSyntax
		}
		h.Set("Content-Type", ct)
		h.Set("Content-Length", strconv.FormatInt(os.Size(in), 10))
		pw, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		if err := d.imaging.WriteInstance(ctx, os, in, pw); err != nil {
			return err
		}
	}
	return mw.Close()
}

func (d *Daemon) wadoMetadata(ctx context.Context, w http.ResponseWriter, os *imaging.Opened, sel []*dicom.InstanceRef) error {
	started := false
	for _, in := range sel {
		js, err := d.imaging.InstanceMetadata(ctx, os, in)
		if err != nil {
			if !started {
				// Nothing sent yet: a clean error is still possible.
				api.Fail(w, err)
				return nil
			}
			return err
		}
		if !started {
			w.Header().Set("Content-Type", dicomJSONType)
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("["))
			started = true
		} else {
			w.Write([]byte(","))
		}
		if _, err := w.Write(js); err != nil {
			return err
		}
	}
	_, err := w.Write([]byte("]\n"))
	return err
}

// ---- STOW-RS ----

func (d *Daemon) handleStow(w http.ResponseWriter, r *http.Request) {
	want := r.PathValue("study")
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
	stage, err := d.imaging.Stage()
	if err != nil {
		api.Fail(w, err)
		return
	}
	defer stage.Close()
	type failed struct {
		classUID, sopUID string
		reason           int
	}
	var fails []failed
	mr := multipart.NewReader(r.Body, params["boundary"])
	parts := 0
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			api.Fail(w, api.Errorf(http.StatusBadRequest, "", "malformed multipart body after %d parts: %v; nothing was stored", parts, err))
			return
		}
		parts++
		if parts > maxStowParts {
			api.Fail(w, api.Errorf(http.StatusRequestEntityTooLarge, "send fewer instances per request", "more than %d parts; nothing was stored", maxStowParts))
			return
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
			api.Fail(w, api.Errorf(http.StatusRequestEntityTooLarge, "", "part %d is larger than %d bytes; nothing was stored", parts, int64(dicom.MaxFileSize)))
			return
		case fault.Is(err, fault.Invalid):
			api.Fail(w, api.Errorf(http.StatusBadRequest, "", "read part %d: %v; nothing was stored", parts, err))
			return
		case err != nil:
			api.Fail(w, err)
			return
		}
		if want != "" {
			in, err := dicom.ParseFile(sd.Path)
			if err == nil && in.StudyInstanceUID != want {
				fails = append(fails, failed{in.SOPClassUID, in.SOPInstanceUID, failStudyMismatch})
				if err := stage.Drop(sd); err != nil {
					api.Fail(w, err)
					return
				}
			}
		}
	}
	if parts == 0 {
		api.Fail(w, api.Errorf(http.StatusBadRequest, "", "STOW-RS request has no parts"))
		return
	}
	res, err := stage.Import(r.Context())
	if err != nil {
		api.Fail(w, err)
		return
	}
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
		ds.set("00081190", "UR", baseURL(r)+"/studies/"+o.StudyUID+"/instances/"+o.SOPInstanceUID)
		ok = append(ok, ds)
	}
	// Duplicates within one request are skipped in Scan without a SOP UID
	// in our outcome map; they are neither stored twice nor failures.
	out := dsJSON{}
	if len(studies) == 1 {
		for s := range studies {
			out.set("00081190", "UR", baseURL(r)+"/studies/"+s)
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
	if len(res.Warnings) > 0 {
		// PS3.4 has no storage warning status for this; the instances are
		// stored as sent and the HTTP Warning header says why they differ.
		w.Header().Set("Warning", fmt.Sprintf(`299 medmesh "%d instance(s) stored with UIDs that are not conformant (PS3.5 9.1), kept as they are"`, len(res.Warnings)))
	}
	code := http.StatusOK
	switch {
	case len(ok) == 0:
		code = http.StatusConflict
	case len(fails) > 0:
		code = http.StatusAccepted
	}
	writeDicomJSON(w, code, out)
}

var _ = errors.New
