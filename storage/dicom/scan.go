package dicom

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ErrDuplicate reports a file whose SOP Instance UID was already seen in the
// same scan (the same instance twice, possibly in another transfer syntax).
var ErrDuplicate = errors.New("duplicate SOP Instance UID")

// Study is one study found by Scan (or decoded from a record's metadata).
type Study struct {
	UID              string
	PatientID        string
	PatientName      string
	PatientBirthDate string
	PatientSex       string
	StudyDate        string
	StudyTime        string
	Description      string
	AccessionNumber  string
	// ReferringPhysician is (0008,0090), StudyID (0020,0010).
	ReferringPhysician string
	StudyID            string
	Series             []*Series
}

// Series is one series of a study.
type Series struct {
	UID         string
	Modality    string
	BodyPart    string
	Number      int
	Description string
	Instances   []*InstanceRef
}

// InstanceRef is one instance of a series.
type InstanceRef struct {
	SOPInstanceUID string
	SOPClassUID    string
	TransferSyntax string
	Number         int
	Size           int64
	// Rows, Columns, BitsAllocated and Frames (Number of Frames) describe
	// an image's pixel data (0 when absent or unknown).
	Rows, Columns, BitsAllocated, Frames int
	// Path is the local file (set by Scan; never part of the encoded study
	// metadata).
	Path string
	// FileIndex is the position of the instance's file in the record: the
	// study's instances in series order, then instance order, from 0.
	FileIndex int
	// Warnings (set by Scan; never part of the encoded study metadata) say
	// what medmesh tolerated in the file, e.g. UIDs that are not
	// conformant but are kept as they are (see CheckUID).
	Warnings []string
}

// Reject is a file that did not become part of a study.
type Reject struct {
	Path string
	Err  error // a *ParseError (reasons: Err*, ErrDuplicate, ErrDICOMDIR) or an I/O error
}

// Modalities returns the distinct modalities of the study's series, sorted.
func (s *Study) Modalities() []string {
	seen := map[string]bool{}
	var out []string
	for _, se := range s.Series {
		if se.Modality != "" && !seen[se.Modality] {
			seen[se.Modality] = true
			out = append(out, se.Modality)
		}
	}
	sort.Strings(out)
	return out
}

// SOPClasses returns the distinct SOP classes of the study's instances,
// sorted.
func (s *Study) SOPClasses() []string {
	seen := map[string]bool{}
	var out []string
	for _, se := range s.Series {
		for _, in := range se.Instances {
			if in.SOPClassUID != "" && !seen[in.SOPClassUID] {
				seen[in.SOPClassUID] = true
				out = append(out, in.SOPClassUID)
			}
		}
	}
	sort.Strings(out)
	return out
}

// NumInstances returns the number of instances in the study.
func (s *Study) NumInstances() int {
	n := 0
	for _, se := range s.Series {
		n += len(se.Instances)
	}
	return n
}

// Instances returns the study's instances in file-index order.
func (s *Study) Instances() []*InstanceRef {
	var out []*InstanceRef
	for _, se := range s.Series {
		out = append(out, se.Instances...)
	}
	return out
}

// Scan parses every file under paths (files, or folders walked recursively
// in lexical order) and groups the instances by Study Instance UID, then
// Series Instance UID. Every file either becomes part of a study or is
// passed to reject (if non-nil) with its path and reason; DICOMDIR files are
// reported with ErrDICOMDIR, repeated SOP Instance UIDs with ErrDuplicate
// (the first file in walk order is kept), UIDs that CheckUID refuses with
// ErrBadUID; UIDs it accepts with a warning are kept, the warning in the
// instance's Warnings. The result is sorted
// deterministically. The only error returned is ctx's.
func Scan(ctx context.Context, paths []string, reject func(Reject)) ([]*Study, error) {
	if reject == nil {
		reject = func(Reject) {}
	}
	studies := map[string]*Study{}
	series := map[string]*Series{}
	seen := map[string]string{}
	add := func(path string) {
		in, err := ParseFile(path)
		if err != nil {
			reject(Reject{Path: path, Err: err})
			return
		}
		if in.Directory {
			reject(Reject{Path: path, Err: &ParseError{Path: path, Offset: -1, Reason: ErrDICOMDIR, Detail: "skipped; import walks folders"}})
			return
		}
		if in.StudyInstanceUID == "" || in.SeriesInstanceUID == "" {
			reject(Reject{Path: path, Err: &ParseError{Path: path, Offset: -1, Reason: ErrMissingUID, Detail: "no Study/Series Instance UID: cannot be grouped into a study"}})
			return
		}
		var odd []string
		for _, u := range []struct{ name, uid string }{
			{"SOP Class UID", in.SOPClassUID}, {"SOP Instance UID", in.SOPInstanceUID},
			{"Study Instance UID", in.StudyInstanceUID}, {"Series Instance UID", in.SeriesInstanceUID},
		} {
			why, problem := uidCheck(u.uid)
			if problem != "" {
				reject(Reject{Path: path, Err: &ParseError{Path: path, Offset: -1, Reason: ErrBadUID,
					Detail: fmt.Sprintf("%s %s: correct it (e.g. with dcmodify) and import the file again", u.name, problem)}})
				return
			}
			if len(why) > 0 {
				odd = append(odd, fmt.Sprintf("%s %q (%s)", u.name, u.uid, strings.Join(why, ", ")))
			}
		}
		var warnings []string
		if len(odd) > 0 {
			warnings = append(warnings, "UIDs kept as they are although not conformant (PS3.5 9.1): "+strings.Join(odd, "; "))
		}
		if first, ok := seen[in.SOPInstanceUID]; ok {
			reject(Reject{Path: path, Err: &ParseError{Path: path, Offset: -1, Reason: ErrDuplicate, Detail: in.SOPInstanceUID + " already imported from " + first}})
			return
		}
		seen[in.SOPInstanceUID] = path
		st := studies[in.StudyInstanceUID]
		if st == nil {
			st = &Study{UID: in.StudyInstanceUID}
			studies[in.StudyInstanceUID] = st
		}
		st.Complete(&Study{
			PatientID: in.PatientID, PatientName: in.PatientName,
			PatientBirthDate: in.PatientBirthDate, PatientSex: in.PatientSex,
			StudyDate: in.StudyDate, StudyTime: in.StudyTime,
			Description: in.StudyDescription, AccessionNumber: in.AccessionNumber,
			ReferringPhysician: in.ReferringPhysician, StudyID: in.StudyID,
		})
		key := in.StudyInstanceUID + "\x00" + in.SeriesInstanceUID
		se := series[key]
		if se == nil {
			se = &Series{UID: in.SeriesInstanceUID, Number: in.SeriesNumber}
			series[key] = se
			st.Series = append(st.Series, se)
		}
		fillEmpty(&se.Modality, in.Modality)
		fillEmpty(&se.BodyPart, in.BodyPartExamined)
		fillEmpty(&se.Description, in.SeriesDescription)
		se.Instances = append(se.Instances, &InstanceRef{
			SOPInstanceUID: in.SOPInstanceUID, SOPClassUID: in.SOPClassUID, TransferSyntax: in.TransferSyntax,
			Number: in.InstanceNumber, Size: in.Size, Path: path, Warnings: warnings,
			Rows: in.Rows, Columns: in.Columns, BitsAllocated: in.BitsAllocated, Frames: in.NumberOfFrames,
		})
	}
	for _, root := range paths {
		err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			if err != nil {
				reject(Reject{Path: p, Err: err})
				return nil
			}
			if de.IsDir() {
				return nil
			}
			if de.Type()&fs.ModeSymlink != 0 {
				if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
					reject(Reject{Path: p, Err: &ParseError{Path: p, Offset: -1, Reason: ErrNotDICOM, Detail: "symlink to a non-regular file"}})
					return nil
				}
			} else if !de.Type().IsRegular() {
				reject(Reject{Path: p, Err: &ParseError{Path: p, Offset: -1, Reason: ErrNotDICOM, Detail: "not a regular file"}})
				return nil
			}
			add(p)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	out := make([]*Study, 0, len(studies))
	for _, st := range studies {
		SortStudy(st)
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.PatientID != b.PatientID {
			return a.PatientID < b.PatientID
		}
		if a.StudyDate != b.StudyDate {
			return a.StudyDate < b.StudyDate
		}
		return a.UID < b.UID
	})
	return out, nil
}

// SortStudy orders series by number then UID, instances by number then SOP
// Instance UID, and assigns file indexes in that order (the order of a
// study record's files).
func SortStudy(st *Study) {
	sort.Slice(st.Series, func(i, j int) bool {
		a, b := st.Series[i], st.Series[j]
		if a.Number != b.Number {
			return a.Number < b.Number
		}
		return a.UID < b.UID
	})
	idx := 0
	for _, se := range st.Series {
		sort.Slice(se.Instances, func(i, j int) bool {
			a, b := se.Instances[i], se.Instances[j]
			if a.Number != b.Number {
				return a.Number < b.Number
			}
			return a.SOPInstanceUID < b.SOPInstanceUID
		})
		for _, in := range se.Instances {
			in.FileIndex = idx
			idx++
		}
	}
}

// Complete fills st's empty study attributes (UID, patient, date, time,
// description, accession number) from o; what st has is kept. A study
// scanned from its instances, or merged from two imports, takes each
// attribute from the first source that has it.
func (st *Study) Complete(o *Study) {
	fillEmpty(&st.UID, o.UID)
	fillEmpty(&st.PatientID, o.PatientID)
	fillEmpty(&st.PatientName, o.PatientName)
	fillEmpty(&st.PatientBirthDate, o.PatientBirthDate)
	fillEmpty(&st.PatientSex, o.PatientSex)
	fillEmpty(&st.StudyDate, o.StudyDate)
	fillEmpty(&st.StudyTime, o.StudyTime)
	fillEmpty(&st.Description, o.Description)
	fillEmpty(&st.AccessionNumber, o.AccessionNumber)
	fillEmpty(&st.ReferringPhysician, o.ReferringPhysician)
	fillEmpty(&st.StudyID, o.StudyID)
}

func fillEmpty(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}
