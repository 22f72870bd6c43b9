package dicom

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

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
		if _, err := ParseReader(bytes.NewReader(out.Bytes()), int64(out.Len())); err != nil {
			t.Fatalf("de-identified output rejected: %v", err)
		}
	})
}
