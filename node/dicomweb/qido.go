package dicomweb

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/imaging"
)

// QIDO-RS (PS3.18 10.6): every level from the root (/studies, /series,
// /instances) and under a study or series, answered by the imaging
// service's query engine over the encrypted index (see imaging.Search:
// wildcards, ranges, UID lists, person names ignoring case; fuzzymatching
// also matches the start of any name component, accents ignored), with
// the attributes PS3.18 Tables 10.6.3-3/4/5 require, includefield (a
// keyword, a tag, or "all"), limit and offset.

const (
	tagRetrieveURL  = 0x00081190
	tagCharset      = 0x00080005
	tagAvailability = 0x00080056
	tagStudyUID     = 0x0020000D
	tagSeriesUID    = 0x0020000E
	tagModality     = 0x00080060
	tagModalities   = 0x00080061
)

// Return attributes by level (PS3.18 Table 10.6.3-3, -4, -5), beyond
// Specific Character Set, Instance Availability and Retrieve URL.
var (
	studyReturn    = []string{"StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID", "StudyDescription", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"}
	seriesReturn   = []string{"Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber", "NumberOfSeriesRelatedInstances", "StudyInstanceUID", "BodyPartExamined"}
	instanceReturn = []string{"SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns", "BitsAllocated", "NumberOfFrames", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "AvailableTransferSyntaxUID"}
)

// qidoQuery is a parsed QIDO-RS request.
type qidoQuery struct {
	q             imaging.Query
	include       map[uint32]bool
	all           bool
	limit, offset int
	ignored       []string
}

// parseQido reads the query parameters of a QIDO-RS request at level.
func parseQido(r *http.Request, level imaging.Level) (*qidoQuery, error) {
	qq := &qidoQuery{q: imaging.Query{Level: level, Keys: map[uint32]string{}}, include: map[uint32]bool{}, limit: -1}
	for k, vs := range r.URL.Query() {
		switch k {
		case "limit", "offset":
			n, err := strconv.Atoi(vs[len(vs)-1])
			if err != nil || n < 0 {
				return nil, api.Errorf(http.StatusBadRequest, "", "%s must be a non-negative integer, got %q", k, vs[len(vs)-1])
			}
			if k == "limit" {
				qq.limit = n
			} else {
				qq.offset = n
			}
			continue
		case "fuzzymatching":
			switch strings.ToLower(vs[len(vs)-1]) {
			case "true":
				qq.q.Fuzzy = true
			case "false", "":
			default:
				return nil, api.Errorf(http.StatusBadRequest, "fuzzymatching=true or false", "bad fuzzymatching %q", vs[len(vs)-1])
			}
			continue
		case "includefield":
			for _, v := range vs {
				for _, f := range strings.Split(v, ",") {
					f = strings.TrimSpace(f)
					if f == "all" {
						qq.all = true
						continue
					}
					if a, ok := attribute(f); ok {
						qq.include[a.Tag] = true
					} else if f != "" {
						qq.ignored = append(qq.ignored, "includefield="+f)
					}
				}
			}
			continue
		}
		a, ok := attribute(k)
		if !ok {
			qq.ignored = append(qq.ignored, k)
			continue
		}
		if level == imaging.LevelStudy && a.Tag == tagModality {
			a, _ = imaging.Attribute(tagModalities) // Modality at study level: of a series in the study
		}
		if !a.Matchable || a.Level > level {
			qq.ignored = append(qq.ignored, k)
			continue
		}
		var vals []string
		for _, v := range vs {
			if a.VR == "UI" || a.VR == "CS" {
				vals = append(vals, strings.Split(v, ",")...)
			} else {
				vals = append(vals, v)
			}
		}
		v := strings.Join(vals, `\`)
		if err := checkValue(a, v); err != nil {
			return nil, err
		}
		qq.q.Keys[a.Tag] = v
	}
	sort.Strings(qq.ignored)
	return qq, nil
}

// attribute finds a query attribute by keyword or 8-digit hex tag.
func attribute(k string) (imaging.Attr, bool) {
	if a, ok := imaging.AttributeByKeyword(k); ok {
		return a, true
	}
	if len(k) == 8 {
		if t, err := strconv.ParseUint(k, 16, 32); err == nil {
			return imaging.Attribute(uint32(t))
		}
	}
	return imaging.Attr{}, false
}

// checkValue refuses a date or time that is neither a value nor a range.
func checkValue(a imaging.Attr, v string) error {
	if v == "" || v == "*" {
		return nil
	}
	var ok func(string) bool
	switch a.VR {
	case "DA":
		ok = func(s string) bool { return len(s) == 8 && strings.Trim(s, "0123456789") == "" && validDate(s) }
	case "TM":
		ok = func(s string) bool {
			w, f, _ := strings.Cut(strings.ReplaceAll(s, ":", ""), ".")
			return len(w) >= 2 && len(w) <= 6 && len(w)%2 == 0 && strings.Trim(w+f, "0123456789") == ""
		}
	default:
		return nil
	}
	from, to, isRange := strings.Cut(v, "-")
	if !isRange && ok(v) || isRange && (from != "" || to != "") && (from == "" || ok(from)) && (to == "" || ok(to)) {
		return nil
	}
	return api.Errorf(http.StatusBadRequest, "use YYYYMMDD, YYYYMMDD-, -YYYYMMDD or YYYYMMDD-YYYYMMDD (times HHMMSS likewise)", "bad %s %q", a.Keyword, v)
}

func validDate(s string) bool {
	m, _ := strconv.Atoi(s[4:6])
	d, _ := strconv.Atoi(s[6:8])
	return m >= 1 && m <= 12 && d >= 1 && d <= 31
}

// qido serves a QIDO-RS request at level; {study} and {series} in the
// path scope it.
func (a Area) qido(level imaging.Level) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		qq, err := parseQido(r, level)
		if err != nil {
			api.Fail(w, err)
			return
		}
		study, series := r.PathValue("study"), r.PathValue("series")
		if study != "" {
			qq.q.Keys[tagStudyUID] = study
		}
		if series != "" {
			qq.q.Keys[tagSeriesUID] = series
		}
		ctx := r.Context()
		rows, ignored, err := a.Imaging.Search(ctx, qq.q)
		if err != nil {
			api.Fail(w, err)
			return
		}
		for _, t := range ignored {
			qq.ignored = append(qq.ignored, fmt.Sprintf("%08X", t))
		}
		if len(rows) == 0 && study != "" {
			// An empty answer under a study or series that does not exist
			// is a 404 (PS3.18 10.6.3.2), not an empty list.
			scope := imaging.Query{Level: imaging.LevelStudy, Keys: map[uint32]string{tagStudyUID: study}}
			if series != "" {
				scope = imaging.Query{Level: imaging.LevelSeries, Keys: map[uint32]string{tagStudyUID: study, tagSeriesUID: series}}
			}
			found, _, err := a.Imaging.Search(ctx, scope)
			if err != nil {
				api.Fail(w, err)
				return
			}
			if len(found) == 0 {
				what := "study " + study
				if series != "" {
					what = "series " + series + " in study " + study
				}
				api.Fail(w, api.Errorf(http.StatusNotFound, "", "no %s on this node", what))
				return
			}
		}
		attrs := qq.returnAttrs(level, study != "", series != "")
		total := len(rows)
		if qq.offset >= len(rows) {
			rows = nil
		} else {
			rows = rows[qq.offset:]
		}
		more := false
		if qq.limit >= 0 && qq.limit < len(rows) {
			rows, more = rows[:qq.limit], true
		}
		out := make([]dsJSON, 0, len(rows))
		base := baseURL(r)
		for _, row := range rows {
			out = append(out, renderRow(row, attrs, base))
		}
		var warn []string
		if len(qq.ignored) > 0 {
			warn = append(warn, fmt.Sprintf(`299 medmesh "unsupported query parameters ignored: %s"`, strings.Join(qq.ignored, ", ")))
		}
		if more {
			warn = append(warn, fmt.Sprintf(`299 medmesh "%d more results: ask again with offset=%d"`, total-qq.offset-len(rows), qq.offset+len(rows)))
		}
		for _, v := range warn {
			w.Header().Add("Warning", v)
		}
		writeDicomJSON(w, http.StatusOK, out)
	}
}

// returnAttrs is the attribute list of a response at level: the level's
// required ones, the levels above it when the query is not scoped to them,
// the includefields (every known one for includefield=all).
func (qq *qidoQuery) returnAttrs(level imaging.Level, inStudy, inSeries bool) []imaging.Attr {
	want := map[uint32]bool{}
	add := func(names []string) {
		for _, n := range names {
			if a, ok := imaging.AttributeByKeyword(n); ok {
				want[a.Tag] = true
			}
		}
	}
	switch level {
	case imaging.LevelStudy:
		add(studyReturn)
	case imaging.LevelSeries:
		add(seriesReturn)
		if !inStudy {
			add(studyReturn)
		}
	case imaging.LevelImage:
		add(instanceReturn)
		if !inSeries {
			add(seriesReturn)
		}
		if !inStudy {
			add(studyReturn)
		}
	}
	for t := range qq.include {
		want[t] = true
	}
	for t := range qq.q.Keys {
		want[t] = true // matching keys are returned too (PS3.18 10.6.3.3.1)
	}
	var out []imaging.Attr
	for _, a := range imaging.Attributes() {
		if a.Level <= level && (qq.all || want[a.Tag]) {
			out = append(out, a)
		}
	}
	return out
}

// renderRow is one QIDO-RS result: the attributes, Instance Availability,
// the Retrieve URL of the row's study, series or instance, and Specific
// Character Set when a value is not ASCII.
func renderRow(r *imaging.Row, attrs []imaging.Attr, base string) dsJSON {
	ds := dsJSON{}
	utf8 := false
	for _, a := range attrs {
		vals := a.Values(r)
		for _, v := range vals {
			if !isASCII(v) {
				utf8 = true
			}
		}
		ds.put(a, vals)
	}
	ds.set("00080056", "CS", "ONLINE")
	url := base + "/studies/" + r.Study.StudyUID
	if r.Series != nil {
		url += "/series/" + r.Series.UID
	}
	if r.Instance != nil {
		url += "/instances/" + r.Instance.SOPInstanceUID
	}
	ds.set("00081190", "UR", url)
	if utf8 {
		ds.set("00080005", "CS", "ISO_IR 192")
	}
	return ds
}

// put sets an attribute with its values in their DICOM JSON form.
func (ds dsJSON) put(a imaging.Attr, vals []string) {
	key := fmt.Sprintf("%08X", a.Tag)
	if len(vals) == 0 {
		ds[key] = map[string]any{"vr": a.VR}
		return
	}
	var out []any
	for _, v := range vals {
		switch a.VR {
		case "PN":
			out = append(out, map[string]string{"Alphabetic": v})
		case "IS", "US", "UL", "SS", "SL":
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				out = append(out, nil)
			} else {
				out = append(out, n)
			}
		default:
			out = append(out, v)
		}
	}
	ds[key] = map[string]any{"vr": a.VR, "Value": out}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
