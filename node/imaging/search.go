package imaging

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/storage/dicom"
)

// The query engine of C-FIND and QIDO-RS: queries at the patient, study,
// series and instance levels over the encrypted index. Study-level
// attributes are matched in the index entries (narrowed first by the blind
// keys of an exact Patient ID, Study Instance UID or modality); series and
// instance attributes in the studies' detail entries, decrypted only for
// studies that match at the study level. Nothing is read from a record, so
// a query never claims a read of another clinic's study.

// Level is a query level (PS3.4 C.6.1.1.1, PS3.18 10.6).
type Level int

// Levels, from the top.
const (
	LevelPatient Level = iota
	LevelStudy
	LevelSeries
	LevelImage
)

func (l Level) String() string {
	return [...]string{"PATIENT", "STUDY", "SERIES", "IMAGE"}[l]
}

// ParseLevel reads a Query/Retrieve Level (0008,0052).
func ParseLevel(s string) (Level, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "PATIENT":
		return LevelPatient, nil
	case "STUDY":
		return LevelStudy, nil
	case "SERIES":
		return LevelSeries, nil
	case "IMAGE", "INSTANCE":
		return LevelImage, nil
	}
	return 0, fault.Invalidf("PATIENT, STUDY, SERIES or IMAGE", "unknown query level %q", s)
}

// Attr is an attribute the engine matches and returns.
type Attr struct {
	Tag     uint32
	Keyword string
	VR      string
	// Level is the level the attribute belongs to; it is known in rows of
	// that level and below.
	Level Level
	// Matchable is false for attributes that are only returned (counts,
	// availability): a value given for them is ignored.
	Matchable bool
	values    func(r *Row) []string
}

// Values returns the attribute's values in a row (nil: empty), as DICOM
// strings (numbers in decimal).
func (a Attr) Values(r *Row) []string {
	if a.values == nil {
		return nil
	}
	return nonEmpty(a.values(r))
}

func nonEmpty(vs []string) []string {
	var out []string
	for _, v := range vs {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

func one(s string) []string { return []string{s} }
func num(n int) []string    { return []string{strconv.Itoa(n)} }

func numIf(n int) []string {
	if n == 0 {
		return nil
	}
	return num(n)
}

var attrs = []Attr{
	// Patient
	{0x00100010, "PatientName", "PN", LevelPatient, true, func(r *Row) []string { return one(r.Study.PatientName) }},
	{0x00100020, "PatientID", "LO", LevelPatient, true, func(r *Row) []string { return one(r.Study.PatientID) }},
	{0x00100030, "PatientBirthDate", "DA", LevelPatient, true, func(r *Row) []string { return one(r.Study.PatientBirthDate) }},
	{0x00100040, "PatientSex", "CS", LevelPatient, true, func(r *Row) []string { return one(r.Study.PatientSex) }},
	{0x00201200, "NumberOfPatientRelatedStudies", "IS", LevelPatient, false, func(r *Row) []string { return numIf(r.PatientStudies) }},
	{0x00201202, "NumberOfPatientRelatedSeries", "IS", LevelPatient, false, func(r *Row) []string { return numIf(r.PatientSeries) }},
	{0x00201204, "NumberOfPatientRelatedInstances", "IS", LevelPatient, false, func(r *Row) []string { return numIf(r.PatientInstances) }},
	// Study
	{0x0020000D, "StudyInstanceUID", "UI", LevelStudy, true, func(r *Row) []string { return one(r.Study.StudyUID) }},
	{0x00080020, "StudyDate", "DA", LevelStudy, true, func(r *Row) []string { return one(r.Study.StudyDate) }},
	{0x00080030, "StudyTime", "TM", LevelStudy, true, func(r *Row) []string { return one(r.Study.StudyTime) }},
	{0x00080050, "AccessionNumber", "SH", LevelStudy, true, func(r *Row) []string { return one(r.Study.AccessionNumber) }},
	{0x00080090, "ReferringPhysicianName", "PN", LevelStudy, true, func(r *Row) []string { return one(r.Study.ReferringPhysician) }},
	{0x00081030, "StudyDescription", "LO", LevelStudy, true, func(r *Row) []string { return one(r.Study.Description) }},
	{0x00200010, "StudyID", "SH", LevelStudy, true, func(r *Row) []string { return one(r.Study.StudyID) }},
	{0x00080061, "ModalitiesInStudy", "CS", LevelStudy, true, func(r *Row) []string { return r.Study.Modalities }},
	{0x00080062, "SOPClassesInStudy", "UI", LevelStudy, true, func(r *Row) []string { return r.Study.SOPClasses }},
	{0x00201206, "NumberOfStudyRelatedSeries", "IS", LevelStudy, false, func(r *Row) []string { return numIf(r.Study.NumSeries) }},
	{0x00201208, "NumberOfStudyRelatedInstances", "IS", LevelStudy, false, func(r *Row) []string { return num(r.Study.Instances) }},
	// Series
	{0x0020000E, "SeriesInstanceUID", "UI", LevelSeries, true, func(r *Row) []string { return one(r.Series.UID) }},
	{0x00080060, "Modality", "CS", LevelSeries, true, func(r *Row) []string { return one(r.Series.Modality) }},
	{0x00200011, "SeriesNumber", "IS", LevelSeries, true, func(r *Row) []string { return numIf(r.Series.Number) }},
	{0x0008103E, "SeriesDescription", "LO", LevelSeries, true, func(r *Row) []string { return one(r.Series.Description) }},
	{0x00180015, "BodyPartExamined", "CS", LevelSeries, true, func(r *Row) []string { return one(r.Series.BodyPart) }},
	{0x00201209, "NumberOfSeriesRelatedInstances", "IS", LevelSeries, false, func(r *Row) []string { return num(len(r.Series.Instances)) }},
	// Instance
	{0x00080018, "SOPInstanceUID", "UI", LevelImage, true, func(r *Row) []string { return one(r.Instance.SOPInstanceUID) }},
	{0x00080016, "SOPClassUID", "UI", LevelImage, true, func(r *Row) []string { return one(r.Instance.SOPClassUID) }},
	{0x00200013, "InstanceNumber", "IS", LevelImage, true, func(r *Row) []string { return numIf(r.Instance.Number) }},
	{0x00280010, "Rows", "US", LevelImage, true, func(r *Row) []string { return numIf(r.Instance.Rows) }},
	{0x00280011, "Columns", "US", LevelImage, true, func(r *Row) []string { return numIf(r.Instance.Columns) }},
	{0x00280100, "BitsAllocated", "US", LevelImage, true, func(r *Row) []string { return numIf(r.Instance.BitsAllocated) }},
	{0x00280008, "NumberOfFrames", "IS", LevelImage, true, func(r *Row) []string { return numIf(r.Instance.Frames) }},
	{0x00083002, "AvailableTransferSyntaxUID", "UI", LevelImage, false, func(r *Row) []string { return one(r.Instance.TransferSyntax) }},
}

// Attributes returns every attribute the engine knows, patient level
// first.
func Attributes() []Attr { return append([]Attr(nil), attrs...) }

// Attribute finds an attribute by tag.
func Attribute(tag uint32) (Attr, bool) {
	for _, a := range attrs {
		if a.Tag == tag {
			return a, true
		}
	}
	return Attr{}, false
}

// AttributeByKeyword finds an attribute by its keyword (PS3.6).
func AttributeByKeyword(kw string) (Attr, bool) {
	for _, a := range attrs {
		if a.Keyword == kw {
			return a, true
		}
	}
	return Attr{}, false
}

// Query is a search at one level: matching keys by tag (values as C-FIND
// and QIDO-RS write them; an empty value matches everything).
type Query struct {
	Level Level
	Keys  map[uint32]string
	// Fuzzy turns on fuzzy person name matching (see matchKey).
	Fuzzy bool
}

// Row is one match: a study (with its patient's counts at the patient
// level), and at the series and instance levels its series and instance.
type Row struct {
	RecordID string
	// Mine says whether this node owns the study (else it was granted).
	Mine     bool
	Study    *dicom.Hit
	Series   *dicom.Series
	Instance *dicom.InstanceRef
	// Patient level: the patient's studies, series and instances.
	PatientStudies, PatientSeries, PatientInstances int
}

// Search answers q from the index. Keys the engine does not know, or that
// belong below q's level, are not matched: they are returned in ignored
// (the protocols warn about them). Rows come sorted: patients by ID,
// studies by date, series by number, instances by number.
func (s *Service) Search(ctx context.Context, q Query) (rows []*Row, ignored []uint32, err error) {
	var match []Attr
	for t, v := range q.Keys {
		a, ok := Attribute(t)
		if !ok || a.Level > q.Level {
			if strings.TrimSpace(v) != "" && strings.TrimSpace(v) != "*" {
				ignored = append(ignored, t)
			}
			continue
		}
		if a.Matchable {
			match = append(match, a)
		}
	}
	sort.Slice(ignored, func(i, j int) bool { return ignored[i] < ignored[j] })
	sort.Slice(match, func(i, j int) bool {
		return match[i].Level < match[j].Level || match[i].Level == match[j].Level && match[i].Tag < match[j].Tag
	})
	matches := func(r *Row, lvl Level) bool {
		for _, a := range match {
			if a.Level == lvl || lvl == LevelStudy && a.Level == LevelPatient {
				if !matchKey(a.VR, q.Keys[a.Tag], a.values(r), q.Fuzzy) {
					return false
				}
			}
		}
		return true
	}

	hits, err := s.idx.Query(ctx, narrow(q.Keys))
	if err != nil {
		return nil, nil, err
	}
	var studies []*Row
	for _, h := range s.onePerStudy(hits) {
		r := &Row{RecordID: h.RecordID, Mine: s.mineString(h.RecordID), Study: h}
		if matches(r, LevelStudy) {
			studies = append(studies, r)
		}
	}
	switch q.Level {
	case LevelStudy:
		return studies, ignored, nil
	case LevelPatient:
		return patients(studies), ignored, nil
	}
	for _, sr := range studies {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		st, err := s.detail(ctx, sr.RecordID)
		if err != nil {
			return nil, nil, err
		}
		if st == nil {
			continue
		}
		for _, se := range st.Series {
			r := &Row{RecordID: sr.RecordID, Mine: sr.Mine, Study: sr.Study, Series: se}
			if !matches(r, LevelSeries) {
				continue
			}
			if q.Level == LevelSeries {
				rows = append(rows, r)
				continue
			}
			for _, in := range se.Instances {
				ir := &Row{RecordID: sr.RecordID, Mine: sr.Mine, Study: sr.Study, Series: se, Instance: in}
				if matches(ir, LevelImage) {
					rows = append(rows, ir)
				}
			}
		}
	}
	return rows, ignored, nil
}

// narrow turns the exact keys among those of a query into an index filter
// (the blind keys): one Patient ID, one Study Instance UID, one modality.
func narrow(keys map[uint32]string) dicom.Filter {
	exact := func(t uint32) string {
		v := strings.TrimSpace(keys[t])
		if v == "" || strings.ContainsAny(v, `*?\,`) {
			return ""
		}
		return v
	}
	f := dicom.Filter{PatientID: exact(0x00100020), StudyUID: exact(0x0020000D)}
	if m := exact(0x00080061); m != "" {
		f.Modality = m
	} else if m := exact(0x00080060); m != "" {
		f.Modality = m
	}
	return f
}

// onePerStudy keeps one index entry per Study Instance UID: the node's own
// study first, else a granted copy whose record is the newest version of
// its chain.
func (s *Service) onePerStudy(hits []dicom.Hit) []*dicom.Hit {
	best := map[string]int{}
	var out []*dicom.Hit
	rank := func(h *dicom.Hit) int {
		id, err := cid.Decode(h.RecordID)
		if err != nil {
			return 0
		}
		if s.mine(id) {
			return 3
		}
		if s.rec.LatestVersion(id).ID == id {
			return 2
		}
		return 1
	}
	ranks := make([]int, len(hits))
	for i := range hits {
		h := &hits[i]
		ranks[i] = rank(h)
		if ranks[i] == 0 {
			continue
		}
		j, seen := best[h.StudyUID]
		switch {
		case !seen:
			best[h.StudyUID] = len(out)
			out = append(out, h)
		case ranks[i] > rank(out[j]):
			out[j] = h
		}
	}
	return out
}

func (s *Service) mineString(recordID string) bool {
	id, err := cid.Decode(recordID)
	return err == nil && s.mine(id)
}

// detail returns a study's series and instances from the index. A study
// indexed before the index kept them is read from its record if this
// node owns it (and re-indexed); a granted one is skipped (nil) until it
// is read again, since opening it would claim a read.
func (s *Service) detail(ctx context.Context, recordID string) (*dicom.Study, error) {
	st, err := s.idx.Study(ctx, recordID)
	switch {
	case err == nil:
		return st, nil
	case errors.Is(err, ds.ErrNotFound):
		return nil, nil // removed meanwhile
	case !errors.Is(err, dicom.ErrNoDetail):
		return nil, err
	}
	id, derr := cid.Decode(recordID)
	if derr != nil || !s.mine(id) {
		s.log.Info("dicom index: granted study indexed without its series; read it again (dicom export) to query below the study level", "record", recordID)
		return nil, nil
	}
	o, err := s.Open(ctx, id, 0, "")
	if err != nil {
		return nil, fmt.Errorf("record %s: read its series for a query: %w", recordID, err)
	}
	if o.Info.ID == id {
		if err := s.idx.Put(ctx, recordID, o.Study); err != nil {
			s.log.Warn("dicom index: re-index with series", "record", recordID, "err", err)
		}
	}
	return o.Study, nil
}

// patients groups study rows by patient (ID, else name): one row per
// patient with its counts, sorted by patient ID.
func patients(studies []*Row) []*Row {
	by := map[string]*Row{}
	var out []*Row
	for _, r := range studies {
		k := "id:" + r.Study.PatientID
		if r.Study.PatientID == "" {
			k = "name:" + r.Study.PatientName
		}
		p := by[k]
		if p == nil {
			h := *r.Study
			p = &Row{RecordID: r.RecordID, Mine: r.Mine, Study: &h}
			by[k] = p
			out = append(out, p)
		}
		p.PatientStudies++
		p.PatientSeries += r.Study.NumSeries
		p.PatientInstances += r.Study.Instances
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Study.PatientID < out[j].Study.PatientID })
	return out
}
