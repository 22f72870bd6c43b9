package dicomweb

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/storage/dicom"
)

// QIDO-RS: studies from the index, series and instances from the study.

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

func (a Area) handleQidoStudies(w http.ResponseWriter, r *http.Request) {
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
		hs, err := a.Imaging.Find(r.Context(), f)
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

func (a Area) handleQidoSeries(w http.ResponseWriter, r *http.Request) {
	keys, q, err := parseQido(r, qidoSeriesKeys)
	if err != nil {
		api.Fail(w, err)
		return
	}
	st, err := a.Imaging.OpenUID(r.Context(), r.PathValue("study"))
	if err != nil {
		api.Fail(w, err)
		return
	}
	out := []dsJSON{}
	for _, se := range st.Study.Series {
		if m := keys["Modality"]; m != "" && !strings.EqualFold(m, se.Modality) {
			continue
		}
		if u := keys["SeriesInstanceUID"]; u != "" && u != se.UID {
			continue
		}
		ds := dsJSON{}
		ds.set("0020000D", "UI", st.Study.UID)
		ds.set("0020000E", "UI", se.UID)
		ds.set("00080060", "CS", se.Modality)
		ds.set("00200011", "IS", se.Number)
		ds.set("0008103E", "LO", se.Description)
		ds.set("00201209", "IS", len(se.Instances))
		ds.set("00081190", "UR", baseURL(r)+"/studies/"+st.Study.UID+"/series/"+se.UID)
		out = append(out, ds)
	}
	q.page(w, out)
}

func (a Area) handleQidoInstances(w http.ResponseWriter, r *http.Request) {
	keys, q, err := parseQido(r, qidoSeriesKeys)
	if err != nil {
		api.Fail(w, err)
		return
	}
	st, err := a.Imaging.OpenUID(r.Context(), r.PathValue("study"))
	if err != nil {
		api.Fail(w, err)
		return
	}
	series := r.PathValue("series")
	out := []dsJSON{}
	for _, se := range st.Study.Series {
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
			ds.set("0020000D", "UI", st.Study.UID)
			ds.set("0020000E", "UI", se.UID)
			ds.set("00200013", "IS", in.Number)
			ds.set("00083002", "UI", in.TransferSyntax)
			ds.set("00081190", "UR", baseURL(r)+"/studies/"+st.Study.UID+"/series/"+se.UID+"/instances/"+in.SOPInstanceUID)
			out = append(out, ds)
		}
	}
	if series != "" && len(out) == 0 && len(keys) == 0 {
		found := false
		for _, se := range st.Study.Series {
			found = found || se.UID == series
		}
		if !found {
			api.Fail(w, api.Errorf(http.StatusNotFound, "", "study %s has no series %s", st.Study.UID, series))
			return
		}
	}
	q.page(w, out)
}
