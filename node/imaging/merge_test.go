package imaging

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/medmesh/medmesh/storage/dicom"
)

// inst is an instance "<sop>" numbered n; a stored one (path "") has a file
// index, an imported one a path.
func inst(sop string, n int) *dicom.InstanceRef {
	return &dicom.InstanceRef{SOPInstanceUID: sop, SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", Number: n, Size: int64(100 + n)}
}

func stored(sop string, n, file int) *dicom.InstanceRef {
	in := inst(sop, n)
	in.FileIndex = file
	return in
}

func imported(sop string, n int) *dicom.InstanceRef {
	in := inst(sop, n)
	in.Path = "/in/" + sop
	return in
}

func series(uid string, n int, ins ...*dicom.InstanceRef) *dicom.Series {
	return &dicom.Series{UID: uid, Modality: "CT", Number: n, Instances: ins}
}

// plan renders a merge's files as "name<-source" lines: "prev:N" for a
// stored file, the path for a new one, with the file index checked.
func plan(t *testing.T, m *Merge) []string {
	t.Helper()
	var out []string
	for i, f := range m.Files {
		if f.Instance.FileIndex != i {
			t.Errorf("file %d: instance %s has file index %d", i, f.Instance.SOPInstanceUID, f.Instance.FileIndex)
		}
		src := f.Path
		if f.Prev >= 0 {
			src = fmt.Sprintf("prev:%d", f.Prev)
		}
		out = append(out, f.Name+"<-"+src)
	}
	return out
}

func sops(ins []*dicom.InstanceRef) []string {
	out := []string{}
	for _, in := range ins {
		out = append(out, in.SOPInstanceUID)
	}
	return out
}

func TestMergeStudy(t *testing.T) {
	tests := []struct {
		name    string
		stored  *dicom.Study
		in      *dicom.Study
		added   int
		skipped []string
		files   []string // nil when nothing is added
		series  []string // the merged study's series as "UID:SOP,SOP"
	}{
		{
			name: "new study: sorted by series then instance number",
			in: &dicom.Study{UID: "1.1", Series: []*dicom.Series{
				series("1.1.2", 2, imported("9", 2), imported("8", 1)),
				series("1.1.1", 1, imported("5", 1)),
			}},
			added:  3,
			files:  []string{"1.1.1/5.dcm<-/in/5", "1.1.2/8.dcm<-/in/8", "1.1.2/9.dcm<-/in/9"},
			series: []string{"1.1.1:5", "1.1.2:8,9"},
		},
		{
			name: "instances join their stored series; a new series is added; stored files keep their source",
			stored: &dicom.Study{UID: "1.1", PatientID: "P", Series: []*dicom.Series{
				series("1.1.1", 1, stored("a", 1, 0), stored("c", 3, 1)),
				series("1.1.3", 3, stored("x", 1, 2)),
			}},
			in: &dicom.Study{UID: "1.1", PatientID: "P", Series: []*dicom.Series{
				series("1.1.1", 1, imported("b", 2)),
				series("1.1.2", 2, imported("m", 1)),
			}},
			added: 2,
			files: []string{"1.1.1/a.dcm<-prev:0", "1.1.1/b.dcm<-/in/b", "1.1.1/c.dcm<-prev:1",
				"1.1.2/m.dcm<-/in/m", "1.1.3/x.dcm<-prev:2"},
			series: []string{"1.1.1:a,b,c", "1.1.2:m", "1.1.3:x"},
		},
		{
			name: "everything already stored: nothing to add",
			stored: &dicom.Study{UID: "1.1", Series: []*dicom.Series{
				series("1.1.1", 1, stored("a", 1, 0), stored("b", 2, 1)),
			}},
			in: &dicom.Study{UID: "1.1", Series: []*dicom.Series{
				series("1.1.1", 1, imported("b", 2), imported("a", 1)),
			}},
			skipped: []string{"b", "a"},
			series:  []string{"1.1.1:a,b"},
		},
		{
			name: "an instance stored under another series stays where it is",
			stored: &dicom.Study{UID: "1.1", Series: []*dicom.Series{
				series("1.1.1", 1, stored("a", 1, 0)),
			}},
			in: &dicom.Study{UID: "1.1", Series: []*dicom.Series{
				series("1.1.2", 2, imported("a", 1), imported("b", 2)),
			}},
			added:   1,
			skipped: []string{"a"},
			files:   []string{"1.1.1/a.dcm<-prev:0", "1.1.2/b.dcm<-/in/b"},
			series:  []string{"1.1.1:a", "1.1.2:b"},
		},
		{
			name: "same number: ordered by UID",
			in: &dicom.Study{UID: "1.1", Series: []*dicom.Series{
				series("1.1.9", 1, imported("q", 1), imported("p", 1)),
				series("1.1.8", 1, imported("r", 0)),
			}},
			added:  3,
			files:  []string{"1.1.8/r.dcm<-/in/r", "1.1.9/p.dcm<-/in/p", "1.1.9/q.dcm<-/in/q"},
			series: []string{"1.1.8:r", "1.1.9:p,q"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := MergeStudy(tc.stored, tc.in)
			if m.Added != tc.added {
				t.Errorf("added %d, want %d", m.Added, tc.added)
			}
			if got := sops(m.Skipped); !reflect.DeepEqual(got, append([]string{}, tc.skipped...)) {
				t.Errorf("skipped %v, want %v", got, tc.skipped)
			}
			if got := plan(t, m); !reflect.DeepEqual(got, tc.files) {
				t.Errorf("files\n got %q\nwant %q", got, tc.files)
			}
			var got []string
			for _, se := range m.Study.Series {
				got = append(got, se.UID+":"+strings.Join(sops(se.Instances), ","))
			}
			if !reflect.DeepEqual(got, tc.series) {
				t.Errorf("series %v, want %v", got, tc.series)
			}
			if m.Added > 0 {
				if _, err := dicom.EncodeStudyMeta(m.Study); err != nil {
					t.Errorf("merged study does not encode: %v", err)
				}
			}
		})
	}
}

// TestMergeStudyAttributes: the stored study's attributes win; the empty
// ones are completed from the import; the new series takes the imported
// series' attributes.
func TestMergeStudyAttributes(t *testing.T) {
	st := &dicom.Study{UID: "1.1", PatientID: "P1", StudyDate: "20240101", Series: []*dicom.Series{series("1.1.1", 1, stored("a", 1, 0))}}
	in := &dicom.Study{UID: "1.1", PatientID: "P2", PatientName: "DOE^J", StudyDate: "20250101", Description: "CT HEAD",
		Series: []*dicom.Series{{UID: "1.1.2", Modality: "MR", BodyPart: "HEAD", Number: 7, Description: "T1", Instances: []*dicom.InstanceRef{imported("b", 1)}}}}
	m := MergeStudy(st, in)
	s := m.Study
	if s.PatientID != "P1" || s.StudyDate != "20240101" || s.PatientName != "DOE^J" || s.Description != "CT HEAD" {
		t.Errorf("study attributes %+v", s)
	}
	se := s.Series[1]
	if se.UID != "1.1.2" || se.Modality != "MR" || se.BodyPart != "HEAD" || se.Number != 7 || se.Description != "T1" {
		t.Errorf("new series %+v", se)
	}
}

// TestMergeStudyInputsUnchanged: MergeStudy copies what it merges.
func TestMergeStudyInputsUnchanged(t *testing.T) {
	mk := func() (*dicom.Study, *dicom.Study) {
		return &dicom.Study{UID: "1.1", Series: []*dicom.Series{series("1.1.1", 1, stored("c", 3, 0), stored("a", 1, 1))}},
			&dicom.Study{UID: "1.1", PatientName: "X", Series: []*dicom.Series{series("1.1.1", 1, imported("b", 2)), series("1.1.0", 0, imported("z", 1))}}
	}
	st, in := mk()
	MergeStudy(st, in)
	wst, win := mk()
	if !reflect.DeepEqual(st, wst) || !reflect.DeepEqual(in, win) {
		t.Errorf("inputs changed:\n%+v\n%+v", st, in)
	}
}

// benchStudies is a stored study of n instances in 4 series and an import
// of n more into the same series.
func benchStudies(n int) (*dicom.Study, *dicom.Study) {
	st := &dicom.Study{UID: "1.1"}
	in := &dicom.Study{UID: "1.1"}
	for s := 0; s < 4; s++ {
		uid := fmt.Sprintf("1.1.%d", s)
		a, b := series(uid, s), series(uid, s)
		for i := 0; i < n/4; i++ {
			a.Instances = append(a.Instances, stored(fmt.Sprintf("1.2.%d.%d", s, i), 2*i, s*n/4+i))
			b.Instances = append(b.Instances, imported(fmt.Sprintf("1.3.%d.%d", s, i), 2*i+1))
		}
		st.Series, in.Series = append(st.Series, a), append(in.Series, b)
	}
	return st, in
}

// BenchmarkMergeStudy merges an import of N instances into a stored study
// of N (N/4 per series, interleaved instance numbers).
//
//	go test -run '^$' -bench MergeStudy ./node/imaging
func BenchmarkMergeStudy(b *testing.B) {
	for _, n := range []int{500, 5000, 20000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			st, in := benchStudies(n)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if m := MergeStudy(st, in); m.Added != n {
					b.Fatalf("added %d", m.Added)
				}
			}
		})
	}
}
