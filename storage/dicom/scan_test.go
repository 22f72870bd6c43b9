package dicom

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

func TestScanTestdata(t *testing.T) {
	dir := testdataDir(t)
	var rejects []Reject
	studies, err := Scan(context.Background(), []string{dir}, func(r Reject) { rejects = append(rejects, r) })
	if err != nil {
		t.Fatal(err)
	}
	var files int
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files++
		}
		return nil
	})
	n := 0
	for _, s := range studies {
		n += s.NumInstances()
	}
	if n+len(rejects) != files {
		t.Fatalf("%d instances + %d rejects != %d files", n, len(rejects), files)
	}
	count := map[error]int{}
	for _, r := range rejects {
		for _, reason := range []error{ErrDuplicate, ErrDICOMDIR, ErrMissingUID, ErrDeclaredLength, ErrNotDICOM} {
			if errors.Is(r.Err, reason) {
				count[reason]++
			}
		}
	}
	// 5 extra valid copies of MR_small, 2 of the enhanced CT, 1 of the TCIA MR.
	want := map[error]int{ErrDuplicate: 8, ErrDICOMDIR: 1, ErrMissingUID: 1, ErrDeclaredLength: 3, ErrNotDICOM: 2}
	if !reflect.DeepEqual(count, want) {
		for _, r := range rejects {
			t.Log(r.Err)
		}
		t.Fatalf("reject reasons %v, want %v", count, want)
	}
	// DICOMDIR set: patient 98890234's CT study holds CT2N (2) and CT5N (5).
	bySeries := map[string]int{}
	for _, s := range studies {
		for _, se := range s.Series {
			for _, in := range se.Instances {
				bySeries[filepath.Base(filepath.Dir(in.Path))]++
			}
		}
	}
	for name, n := range map[string]int{"CT5N": 5, "MR700": 7, "CT2": 4, "MR2": 7} {
		if bySeries[name] != n {
			t.Errorf("series folder %s: %d instances, want %d", name, bySeries[name], n)
		}
	}
	// Deterministic.
	again, _ := Scan(context.Background(), []string{dir}, nil)
	a, _ := encodeAll(studies)
	b, _ := encodeAll(again)
	if !bytes.Equal(a, b) {
		t.Fatal("scan is not deterministic")
	}
	for _, s := range studies {
		enc, err := EncodeStudyMeta(s)
		if err != nil {
			t.Fatalf("%s: %v", s.UID, err)
		}
		dec, err := DecodeStudyMeta(enc)
		if err != nil {
			t.Fatalf("%s: %v", s.UID, err)
		}
		for _, in := range s.Instances() {
			in.Path = ""
		}
		if !reflect.DeepEqual(dec, s) {
			t.Fatalf("round trip differs for %s", s.UID)
		}
	}
}

func encodeAll(ss []*Study) ([]byte, error) {
	var out []byte
	for _, s := range ss {
		b, err := EncodeStudyMeta(s)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}

func TestScanSyntheticAndDedup(t *testing.T) {
	dir := t.TempDir()
	paths, err := dicomtest.WriteStudy(dir, dicomtest.Options{Patients: 2, SeriesPerStudy: 2, InstancesPerSeries: 3, Rows: 4, Cols: 4})
	if err != nil {
		t.Fatal(err)
	}
	var rejects []Reject
	// The same folder twice, plus one file again: every copy is a duplicate.
	studies, err := Scan(context.Background(), []string{dir, dir, paths[0]}, func(r Reject) { rejects = append(rejects, r) })
	if err != nil {
		t.Fatal(err)
	}
	if len(studies) != 2 || len(rejects) != len(paths)+1 {
		t.Fatalf("%d studies, %d rejects", len(studies), len(rejects))
	}
	for _, r := range rejects {
		if !errors.Is(r.Err, ErrDuplicate) {
			t.Fatalf("unexpected reject %v", r.Err)
		}
	}
	s := studies[0]
	if s.PatientID != dicomtest.PatientID(1) || len(s.Series) != 2 || s.Series[0].Number != 1 || s.NumInstances() != 6 {
		t.Fatalf("study: %+v", s)
	}
	for i, in := range s.Instances() {
		if in.FileIndex != i {
			t.Fatalf("file index %d at %d", in.FileIndex, i)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Scan(ctx, []string{dir}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled scan: %v", err)
	}
}

func TestDecodeStudyMetaStrict(t *testing.T) {
	s := &Study{UID: "1.2.3", Series: []*Series{{UID: "1.2.3.4", Instances: []*InstanceRef{{SOPInstanceUID: "1.2.3.4.5", FileIndex: 0}}}}}
	b, err := EncodeStudyMeta(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeStudyMeta(append(b, 0)); err == nil {
		t.Error("trailing byte accepted")
	}
	s.Series[0].Instances = append(s.Series[0].Instances, &InstanceRef{SOPInstanceUID: "1.2.3.4.6", FileIndex: 0})
	if _, err := EncodeStudyMeta(s); !errors.Is(err, ErrBadStudyMeta) {
		t.Error("repeated file index accepted")
	}
	if _, err := DecodeStudyMeta([]byte{0xa0}); !errors.Is(err, ErrBadStudyMeta) {
		t.Error("empty map accepted")
	}
}

func FuzzDecodeStudyMeta(f *testing.F) {
	s := &Study{UID: "1.2.3", PatientID: "P", Series: []*Series{{UID: "1.2.3.4", Modality: "CT", Instances: []*InstanceRef{{SOPInstanceUID: "1.2.3.4.5"}, {SOPInstanceUID: "1.2.3.4.6", FileIndex: 1}}}}}
	b, _ := EncodeStudyMeta(s)
	f.Add(b)
	f.Add([]byte{0xa0})
	// Real encodings: the studies of the shared test data (if present)
	// and of synthetic files, and one whose UIDs are not conformant.
	roots := []string{}
	dir := os.Getenv("MEDMESH_DICOM_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "testdata", "dicom")
	}
	if _, err := os.Stat(dir); err == nil {
		roots = append(roots, dir)
	} else {
		f.Logf("shared DICOM test data not found at %s: seeding with synthetic studies only", dir)
	}
	synth, err := dicomtest.WriteStudy(f.TempDir(), dicomtest.Options{SeriesPerStudy: 2, InstancesPerSeries: 2, Rows: 4, Cols: 4})
	if err != nil {
		f.Fatal(err)
	}
	roots = append(roots, filepath.Dir(filepath.Dir(synth[0])))
	studies, err := Scan(context.Background(), roots, nil)
	if err != nil {
		f.Fatal(err)
	}
	studies = append(studies, &Study{UID: hexUID, PatientID: "P", StudyDate: "20240101", Series: []*Series{{UID: "1.2.0003.4", Modality: "CT",
		Instances: []*InstanceRef{{SOPInstanceUID: "aa" + hexUID[2:], SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", TransferSyntax: "1.2.840.10008.1.2.1"}}}}})
	for _, st := range studies {
		if b, err := EncodeStudyMeta(st); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := DecodeStudyMeta(data)
		if err != nil {
			return
		}
		again, err := EncodeStudyMeta(st)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted input does not re-encode identically: %v", err)
		}
	})
}

func TestStudyComplete(t *testing.T) {
	st := &Study{UID: "1.2.3", PatientName: "Kept^Name"}
	st.Complete(&Study{UID: "9.9", PatientID: "P1", PatientName: "Other^Name", StudyDate: "20240101", AccessionNumber: "A7"})
	want := Study{UID: "1.2.3", PatientID: "P1", PatientName: "Kept^Name", StudyDate: "20240101", AccessionNumber: "A7"}
	if st.UID != want.UID || st.PatientID != want.PatientID || st.PatientName != want.PatientName ||
		st.StudyDate != want.StudyDate || st.AccessionNumber != want.AccessionNumber || st.StudyTime != "" {
		t.Fatalf("Complete: %+v, want %+v", *st, want)
	}
}
