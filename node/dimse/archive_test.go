package dimse

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"iter"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	lib "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// archive is a test Find/Move/Get handler over Part 10 files: a tiny PACS
// with exact and wildcard matching on the keys it knows.
type archive struct {
	insts []*archInst

	mu        sync.Mutex
	finds     []*QueryRequest
	gate      chan struct{} // if set, Find waits on it after each match
	cancelled int           // Finds that ended because their ctx did
}

type archInst struct {
	path  string
	attrs map[tag.Tag]string
	meta  *FileMeta
	data  []byte // the data set
}

// archiveKeys are the attributes the archive indexes.
var archiveKeys = []tag.Tag{tag.PatientID, tag.PatientName, tag.PatientBirthDate, tag.PatientSex,
	tag.StudyInstanceUID, tag.StudyDate, tag.StudyTime, tag.AccessionNumber, tag.StudyID, tag.StudyDescription,
	tag.SeriesInstanceUID, tag.Modality, tag.SeriesNumber, tag.SOPInstanceUID, tag.SOPClassUID, tag.InstanceNumber}

func newArchive(t testing.TB, paths []string) *archive {
	t.Helper()
	a := &archive{}
	for _, p := range paths {
		ds, err := lib.ParseFile(p, nil, lib.SkipPixelData(), lib.AllowUnknownSpecificCharacterSet())
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		in := &archInst{path: p, attrs: map[tag.Tag]string{}}
		for _, k := range archiveKeys {
			e, err := ds.FindElementByTag(k)
			if err != nil {
				continue
			}
			switch v := e.Value.GetValue().(type) {
			case []string:
				if len(v) > 0 {
					in.attrs[k] = strings.Trim(v[0], " \x00")
				}
			case []int:
				if len(v) > 0 {
					in.attrs[k] = fmt.Sprint(v[0])
				}
			}
		}
		f := readPart10(t, p)
		in.meta, in.data = f.Meta, f.Data
		a.insts = append(a.insts, in)
	}
	return a
}

// archiveFiles returns the DICOMDIR test set's instance files (2 patients,
// several studies and series, Explicit VR Little Endian), or synthetic
// studies without the shared test data.
func archiveFiles(t testing.TB) []string {
	t.Helper()
	shared, ok := sharedDir()
	if !ok {
		t.Logf("shared DICOM test data not found at %s: using synthetic studies", shared)
		return syntheticStudies(t, 1)
	}
	dir := filepath.Join(shared, "dicomdir")
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() != "DICOMDIR" {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	if len(out) == 0 {
		t.Skipf("no files under %s", dir)
	}
	return out
}

func levelKey(level string) tag.Tag {
	switch level {
	case "PATIENT":
		return tag.PatientID
	case "STUDY":
		return tag.StudyInstanceUID
	case "SERIES":
		return tag.SeriesInstanceUID
	}
	return tag.SOPInstanceUID
}

// matches applies the identifier's non-empty keys the archive knows:
// single-value, wildcard (* ?) or exact; UID lists (backslash) for UIDs.
func (in *archInst) matches(ident *lib.Dataset) bool {
	for _, e := range ident.Elements {
		got, known := in.attrs[e.Tag]
		if !known && !contains(tagStrings(archiveKeys), e.Tag.String()) {
			continue
		}
		vals, ok := e.Value.GetValue().([]string)
		if !ok || len(vals) == 0 || strings.TrimSpace(strings.Join(vals, "")) == "" {
			continue // universal matching
		}
		hit := false
		for _, v := range vals {
			v = strings.TrimSpace(v)
			if ok, _ := path.Match(v, got); ok || v == got {
				hit = true
			}
		}
		if !hit {
			return false
		}
	}
	return true
}

func tagStrings(ts []tag.Tag) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.String())
	}
	return out
}

func (a *archive) Find(ctx context.Context, req *QueryRequest) iter.Seq2[*lib.Dataset, error] {
	a.mu.Lock()
	a.finds = append(a.finds, req)
	gate := a.gate
	a.mu.Unlock()
	return func(yield func(*lib.Dataset, error) bool) {
		key := levelKey(req.Level)
		seen := map[string]bool{}
		for _, in := range a.insts {
			if !in.matches(req.Identifier) || seen[in.attrs[key]] {
				continue
			}
			seen[in.attrs[key]] = true
			out := &lib.Dataset{}
			for _, e := range req.Identifier.Elements {
				if e.Tag == tag.QueryRetrieveLevel || e.Tag == tag.SpecificCharacterSet {
					out.Elements = append(out.Elements, e)
					continue
				}
				v, ok := in.attrs[e.Tag]
				if !ok {
					out.Elements = append(out.Elements, e) // returned as asked (empty)
					continue
				}
				ne, err := lib.NewElement(e.Tag, []string{v})
				if err != nil {
					if ne, err = lib.NewElement(e.Tag, []int{atoi(v)}); err != nil {
						yield(nil, err)
						return
					}
				}
				out.Elements = append(out.Elements, ne)
			}
			if !yield(out, nil) {
				return
			}
			if gate != nil {
				select {
				case <-gate:
				case <-ctx.Done():
					a.mu.Lock()
					a.cancelled++
					a.mu.Unlock()
					return
				}
			}
		}
	}
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

func (a *archive) retrieval(req *QueryRequest) *Retrieval {
	var list []*archInst
	for _, in := range a.insts {
		if in.matches(req.Identifier) {
			list = append(list, in)
		}
	}
	return &Retrieval{Count: len(list), Instances: func(yield func(Instance, error) bool) {
		for _, in := range list {
			p := in.path
			inst := Instance{SOPClassUID: in.meta.MediaStorageSOPClassUID, SOPInstanceUID: in.attrs[tag.SOPInstanceUID],
				TransferSyntaxUID: in.meta.TransferSyntaxUID, Part10: true,
				Open: func(context.Context) (io.ReadCloser, error) { return os.Open(p) }}
			if !yield(inst, nil) {
				return
			}
		}
	}}
}

func (a *archive) Move(ctx context.Context, req *QueryRequest) (*Retrieval, error) {
	return a.retrieval(req), nil
}

func (a *archive) Get(ctx context.Context, req *QueryRequest) (*Retrieval, error) {
	return a.retrieval(req), nil
}

// selectInsts returns the instances whose attribute k is v.
func (a *archive) selectInsts(k tag.Tag, v string) []*archInst {
	var out []*archInst
	for _, in := range a.insts {
		if in.attrs[k] == v {
			out = append(out, in)
		}
	}
	return out
}

// matching returns the instances whose attribute k matches the wildcard
// pattern.
func (a *archive) matching(k tag.Tag, pattern string) []*archInst {
	var out []*archInst
	for _, in := range a.insts {
		if ok, _ := path.Match(pattern, in.attrs[k]); ok {
			out = append(out, in)
		}
	}
	return out
}

// distinct returns the distinct values of attribute k.
func (a *archive) distinct(k tag.Tag) []string {
	m := map[string]bool{}
	for _, in := range a.insts {
		m[in.attrs[k]] = true
	}
	return sortedKeys(m)
}

// checkReceived checks that every instance arrived in dir (Part 10 files
// as storescp/getscu write them, bit-preserving) with its data set byte
// for byte.
func checkReceived(t *testing.T, dir string, want []*archInst) {
	t.Helper()
	got := map[string]part10File{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		f := readPart10(t, filepath.Join(dir, e.Name()))
		got[f.Meta.MediaStorageSOPInstanceUID] = f
	}
	if len(got) != len(want) {
		t.Errorf("%d instances received in %s, want %d", len(got), dir, len(want))
	}
	for _, in := range want {
		f, ok := got[in.attrs[tag.SOPInstanceUID]]
		if !ok {
			t.Errorf("%s: not received", in.path)
			continue
		}
		if f.Meta.TransferSyntaxUID != in.meta.TransferSyntaxUID || !bytes.Equal(f.Data, in.data) {
			t.Errorf("%s: received %d bytes (%s) in %s, stored %d bytes (%s) in %s", in.path, len(f.Data), sum(f.Data),
				f.Meta.TransferSyntaxUID, len(in.data), sum(in.data), in.meta.TransferSyntaxUID)
		}
	}
}
