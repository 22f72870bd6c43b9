package imaging

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/storage/dicom"
)

// Streamer is implemented by a records service that adds a record one
// file at a time (*records.Service): WriteStudy needs it.
type Streamer interface {
	Stream(ctx context.Context, req records.AddRequest) (*records.Stream, error)
}

// ErrStudyStored is the cause of WriteStudy's error for a study the node
// already stores (new instances of it are merged by Import) or when the
// records service cannot stream.
var ErrStudyStored = errors.New("imaging: the study is already stored here")

// StudyWriter stores a new study as its instances arrive (DIMSE C-STORE):
// each instance is encrypted and stored when it is added, and Finish
// makes the study one record, grouped exactly as Import groups files (one
// study, its series, an instance once per SOP Instance UID). Its files are
// in arrival order; the metadata maps each instance to its file. The
// study is locked against other imports of it until Finish or Abort.
// A StudyWriter is used by one goroutine at a time.
type StudyWriter struct {
	s        *Service
	uid      string
	unlock   func()
	st       *records.Stream
	study    *dicom.Study
	series   map[string]*dicom.Series
	seen     map[string]bool
	n        int
	warnings []string
	done     bool
}

// WriteStudy starts storing the new study studyUID. It fails with a
// fault.Conflict wrapping ErrStudyStored when the node already stores a
// study of that UID (or cannot stream): import the instances then.
func (s *Service) WriteStudy(ctx context.Context, studyUID string) (*StudyWriter, error) {
	str, ok := s.rec.(Streamer)
	if !ok {
		return nil, fault.Wrap(fault.Conflict, "", fmt.Errorf("%w (the records service cannot stream)", ErrStudyStored))
	}
	if _, err := dicom.CheckUID(studyUID); err != nil {
		return nil, fault.Invalidf("", "study UID %q: %v", studyUID, err)
	}
	unlock := s.lockStudy(studyUID)
	_, found, err := s.ownedStudy(ctx, studyUID)
	if err != nil {
		unlock()
		return nil, err
	}
	if found {
		unlock()
		return nil, fault.Wrap(fault.Conflict, "", fmt.Errorf("%w: %s", ErrStudyStored, studyUID))
	}
	st, err := str.Stream(ctx, records.AddRequest{Name: StudyName, MediaType: MediaType, Kind: Kind, Class: Class})
	if err != nil {
		unlock()
		return nil, err
	}
	return &StudyWriter{s: s, uid: studyUID, unlock: unlock, st: st, study: &dicom.Study{UID: studyUID},
		series: map[string]*dicom.Series{}, seen: map[string]bool{}}, nil
}

// Add stores one instance of the study (in.Path is its file, as
// dicom.ParseFile parsed it). An instance already added (by SOP Instance
// UID) is skipped: added is false. An instance that Import would reject
// (another study, no series, unusable UIDs) is an error and nothing of it
// is stored; the writer stays usable. An error storing it aborts the
// writer.
func (w *StudyWriter) Add(ctx context.Context, in *dicom.Instance) (added bool, err error) {
	if w.done {
		return false, fault.Conflictf("", "the study writer has ended")
	}
	switch {
	case in.Directory:
		return false, fault.Invalidf("", "%s: a DICOMDIR is not an instance", in.Path)
	case in.StudyInstanceUID != w.uid:
		return false, fault.Invalidf("", "%s: instance of study %s, not %s", in.Path, in.StudyInstanceUID, w.uid)
	case in.SeriesInstanceUID == "":
		return false, fault.Invalidf("", "%s: no Series Instance UID", in.Path)
	}
	var odd []string
	for _, u := range []struct{ name, uid string }{
		{"SOP Class UID", in.SOPClassUID}, {"SOP Instance UID", in.SOPInstanceUID}, {"Series Instance UID", in.SeriesInstanceUID},
	} {
		why, err := dicom.CheckUID(u.uid)
		if err != nil {
			return false, fault.Invalidf("", "%s: %s: %v", in.Path, u.name, err)
		}
		if why != "" {
			odd = append(odd, fmt.Sprintf("%s %q (%s)", u.name, u.uid, why))
		}
	}
	if w.seen[in.SOPInstanceUID] {
		return false, nil
	}
	name := in.SeriesInstanceUID + "/" + in.SOPInstanceUID + ".dcm"
	r, err := openSized(in.Path, in.Size)()
	if err != nil {
		return false, err
	}
	err = w.st.AddFile(ctx, name, r)
	r.(*sizedReader).Close()
	if err != nil {
		w.Abort()
		return false, err
	}
	w.seen[in.SOPInstanceUID] = true
	if len(odd) > 0 {
		w.warnings = append(w.warnings, in.SOPInstanceUID+": UIDs kept as they are: "+strings.Join(odd, "; "))
	}
	w.study.Complete(&dicom.Study{
		PatientID: in.PatientID, PatientName: in.PatientName, PatientBirthDate: in.PatientBirthDate, PatientSex: in.PatientSex,
		StudyDate: in.StudyDate, StudyTime: in.StudyTime, Description: in.StudyDescription, AccessionNumber: in.AccessionNumber,
		ReferringPhysician: in.ReferringPhysician, StudyID: in.StudyID,
	})
	se := w.series[in.SeriesInstanceUID]
	if se == nil {
		se = &dicom.Series{UID: in.SeriesInstanceUID, Number: in.SeriesNumber}
		w.series[se.UID] = se
		w.study.Series = append(w.study.Series, se)
	}
	for _, f := range []struct {
		dst *string
		v   string
	}{{&se.Modality, in.Modality}, {&se.BodyPart, in.BodyPartExamined}, {&se.Description, in.SeriesDescription}} {
		if *f.dst == "" {
			*f.dst = f.v
		}
	}
	se.Instances = append(se.Instances, &dicom.InstanceRef{SOPInstanceUID: in.SOPInstanceUID, SOPClassUID: in.SOPClassUID,
		TransferSyntax: in.TransferSyntax, Number: in.InstanceNumber, Size: in.Size, FileIndex: w.n,
		Rows: in.Rows, Columns: in.Columns, BitsAllocated: in.BitsAllocated, Frames: in.NumberOfFrames})
	w.n++
	return true, nil
}

// Warnings says what was tolerated in the instances added (non-conformant
// UIDs kept as they are).
func (w *StudyWriter) Warnings() []string { return w.warnings }

// Finish stores the study as one record and indexes it.
func (w *StudyWriter) Finish(ctx context.Context) (*api.DicomStudyResult, error) {
	if w.done {
		return nil, fault.Conflictf("", "the study writer has ended")
	}
	w.done = true
	defer w.unlock()
	if w.n == 0 {
		w.st.Abort()
		return nil, fault.Invalidf("", "study %s has no instances", w.uid)
	}
	sortKeepingFiles(w.study)
	meta, err := dicom.EncodeStudyMeta(w.study)
	if err != nil {
		w.st.Abort()
		return nil, err
	}
	ar, err := w.st.Finish(ctx, meta)
	if err != nil {
		return nil, err
	}
	w.s.countStored(w.n)
	if err := w.s.idx.Put(ctx, ar.ID.String(), w.study); err != nil {
		return nil, fmt.Errorf("record %s stored but not indexed: %w", ar.ID, err)
	}
	return &api.DicomStudyResult{ID: ar.ID.String(), StudyUID: w.uid, Series: len(w.study.Series), Instances: w.n,
		Added: w.n, Version: ar.Version, Size: ar.Size}, nil
}

// Abort stores nothing: what was added goes.
func (w *StudyWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.st.Abort()
	w.unlock()
}

// sortKeepingFiles orders series and instances as dicom.SortStudy does,
// without renumbering the files: a streamed study's files are in arrival
// order.
func sortKeepingFiles(st *dicom.Study) {
	sort.SliceStable(st.Series, func(i, j int) bool {
		a, b := st.Series[i], st.Series[j]
		if a.Number != b.Number {
			return a.Number < b.Number
		}
		return a.UID < b.UID
	})
	for _, se := range st.Series {
		sort.SliceStable(se.Instances, func(i, j int) bool {
			a, b := se.Instances[i], se.Instances[j]
			if a.Number != b.Number {
				return a.Number < b.Number
			}
			return a.SOPInstanceUID < b.SOPInstanceUID
		})
	}
}

// studyLocks serialises the writes of one study (a new version builds on
// the stored one; a streamed study must not be imported meanwhile), and
// only of that study.
type studyLocks struct {
	mu    sync.Mutex
	locks map[string]*studyLock
}

type studyLock struct {
	mu   sync.Mutex
	refs int
}

// lockStudy locks study uid and returns its unlock.
func (s *Service) lockStudy(uid string) func() {
	l := &s.locks
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*studyLock{}
	}
	x := l.locks[uid]
	if x == nil {
		x = &studyLock{}
		l.locks[uid] = x
	}
	x.refs++
	l.mu.Unlock()
	x.mu.Lock()
	return func() {
		x.mu.Unlock()
		l.mu.Lock()
		if x.refs--; x.refs == 0 {
			delete(l.locks, uid)
		}
		l.mu.Unlock()
	}
}
