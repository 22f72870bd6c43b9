package dicom

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
	lib "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// codedSequenceStudy writes a synthetic instance whose Anatomic Region
// Sequence item carries a Context Group Version, as real files do.
func codedSequenceStudy(dir string) ([]string, error) {
	var item []*lib.Element
	for _, e := range []struct {
		t tag.Tag
		v string
	}{{tag.CodeValue, "51185008"}, {tag.CodingSchemeDesignator, "SCT"}, {tag.CodeMeaning, "Thorax"},
		{tag.MappingResource, "DCMR"}, {tag.ContextGroupVersion, "20020904000000.000000"}, {tag.ContextIdentifier, "4031"}} {
		el, err := lib.NewElement(e.t, []string{e.v})
		if err != nil {
			return nil, err
		}
		item = append(item, el)
	}
	seq, err := lib.NewElement(tag.AnatomicRegionSequence, [][]*lib.Element{item})
	if err != nil {
		return nil, err
	}
	return dicomtest.WriteStudy(dir, dicomtest.Options{InstancesPerSeries: 1, Rows: 4, Cols: 4, Seed: 3, ExtraElements: []*lib.Element{seq}})
}

// seedCorpus adds the shared test files (if present, up to 256 kB each) and
// synthetic files.
func seedCorpus(f *testing.F) {
	dir := os.Getenv("MEDMESH_DICOM_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "testdata", "dicom")
	}
	n := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && len(b) <= 256<<10 {
			f.Add(b)
			n++
		}
		return nil
	})
	if n == 0 {
		f.Logf("shared DICOM test data not found at %s: seeding with synthetic files only", dir)
	}
	paths, err := dicomtest.WriteStudy(f.TempDir(), dicomtest.Options{InstancesPerSeries: 1, Rows: 4, Cols: 4})
	if err != nil {
		f.Fatal(err)
	}
	// What archives hold: non-conformant UIDs (64 hex digits, leading
	// zeros, too long), and coded sequences carrying a Context Group
	// Version (VR DT) that de-identification must not shift.
	odd := filepath.Join(f.TempDir(), "odd")
	os.MkdirAll(odd, 0o755)
	for i, u := range [][3]string{
		{hexUID, "1.2.0003.4", "aa" + hexUID[2:]},
		{"1.2.840.99999." + strings.Repeat("1234567890", 7), "1.2.3a", "1.2.840.10008.99.abc"},
	} {
		p := filepath.Join(odd, fmt.Sprintf("uid%d.dcm", i))
		if err := dicomtest.RewriteUIDs(paths[0], p, u[0], u[1], u[2]); err != nil {
			f.Fatal(err)
		}
		paths = append(paths, p)
	}
	coded, err := codedSequenceStudy(filepath.Join(f.TempDir(), "coded"))
	if err != nil {
		f.Fatal(err)
	}
	paths = append(paths, coded...)
	for _, p := range paths {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add(append(make([]byte, 128), "DICM"...))
}

// FuzzParse: the import path must never panic, stall or over-allocate, and
// whatever it accepts must be de-identifiable into something it accepts again.
func FuzzParse(f *testing.F) {
	seedCorpus(f)
	key := bytes.Repeat([]byte{3}, 32)
	f.Fuzz(func(t *testing.T, data []byte) {
		// Stall guard: no input may take anywhere near this long.
		tm := time.AfterFunc(20*time.Second, func() { panic(fmt.Sprintf("input of %d bytes took over 20s", len(data))) })
		defer tm.Stop()
		in, err := ParseReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !IsReject(err) {
				t.Fatalf("non-ParseError: %v", err)
			}
			return
		}
		if _, err := MetadataJSON(in); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		res, err := Deidentify(bytes.NewReader(data), &out, DeidOptions{ProjectKey: key, ShiftDates: true})
		if err != nil || res.Excluded || in.Directory {
			return
		}
		got, err := ParseReader(bytes.NewReader(out.Bytes()), int64(out.Len()))
		if err != nil {
			t.Fatalf("de-identified output rejected: %v", err)
		}
		// Whatever the source's UIDs were, the new ones are conformant
		// (PS3.15 E.1.1); a multi-valued source value stays multi-valued,
		// and a blank one (only white space) has nothing to remap.
		for _, u := range []string{got.SOPInstanceUID, got.StudyInstanceUID, got.SeriesInstanceUID} {
			if strings.TrimSpace(u) != "" && !strings.Contains(u, `\`) && !ConformantUID(u) {
				t.Fatalf("de-identified UID %q is not conformant", u)
			}
		}
	})
}

// FuzzPixel: frames, rendering, bulk data and transcoding of any input
// never panic or stall, and a transcoded file parses again.
func FuzzPixel(f *testing.F) {
	seedCorpus(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		tm := time.AfterFunc(20*time.Second, func() { panic(fmt.Sprintf("input of %d bytes took over 20s", len(data))) })
		defer tm.Stop()
		info, err := ReadFrames(bytes.NewReader(data), int64(len(data)), nil, func(n int, fr []byte) error { return nil })
		if err == nil && info != nil && info.Frames < 64 {
			ReadFrames(bytes.NewReader(data), int64(len(data)), []int{1}, func(_ int, fr []byte) error {
				RenderFrame(info, fr, &Window{Center: 40, Width: 400})
				return nil
			})
		}
		ReadBulk(bytes.NewReader(data), int64(len(data)), 0x7FE00010, io.Discard)
		for _, ts := range []string{tsImplicitLE, tsExplicitBE} {
			var out bytes.Buffer
			if err := Transcode(bytes.NewReader(data), int64(len(data)), &out, ts); err != nil {
				continue
			}
			if _, err := ParseReader(bytes.NewReader(out.Bytes()), int64(out.Len())); err != nil && !errors.Is(err, ErrMissingUID) {
				t.Fatalf("transcoded to %s, rejected: %v", ts, err)
			}
		}
	})
}
