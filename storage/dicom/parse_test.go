package dicom

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestManifestFiles(t *testing.T) {
	dir := testdataDir(t)
	entries := readManifest(t, dir)
	if len(entries) != 62 {
		t.Errorf("MANIFEST lists %d files, want 62", len(entries))
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.File)
		in, err := ParseFile(p)
		if e.Parse {
			if err != nil {
				t.Errorf("%s: must parse: %v", e.File, err)
				continue
			}
			if in.Directory != (filepath.Base(e.File) == "DICOMDIR") {
				t.Errorf("%s: Directory=%v", e.File, in.Directory)
			}
			if !in.Directory && (in.SOPInstanceUID == "" || in.SOPClassUID == "") {
				t.Errorf("%s: empty SOP UIDs", e.File)
			}
			for _, w := range in.Warnings {
				t.Logf("%s: warning: %s", e.File, w)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: must be rejected (%s), parsed", e.File, e.Intent)
			continue
		}
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Path != p {
			t.Errorf("%s: error %v is not a *ParseError with the path", e.File, err)
		}
		t.Logf("%s: rejected: %v", e.File, err)
	}
}

func TestRejectReasons(t *testing.T) {
	dir := testdataDir(t)
	cases := map[string]error{
		"malformed/mr_truncated_pixeldata.dcm":   ErrDeclaredLength,
		"malformed/rtplan_truncated.dcm":         ErrDeclaredLength,
		"malformed/pixeldata_3gib_truncated.dcm": ErrDeclaredLength,
		"malformed/raw_dataset_dicm_at_128.dcm":  ErrNotDICOM,
	}
	for f, want := range cases {
		_, err := ParseFile(filepath.Join(dir, f))
		if !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", f, err, want)
		}
	}
}

// The 3 GiB PixelData claim must not be allocated.
func TestNoHugeAllocation(t *testing.T) {
	p := filepath.Join(testdataDir(t), "malformed/pixeldata_3gib_truncated.dcm")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < 5; i++ {
		if _, err := ParseFile(p); err == nil {
			t.Fatal("parsed")
		}
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 16<<20 {
		t.Fatalf("allocated %d bytes for 5 parses of a 100 kB file", d)
	}
}

func TestAttributes(t *testing.T) {
	dir := testdataDir(t)
	in, err := ParseFile(filepath.Join(dir, "valid/mr_small_big_endian.dcm"))
	if err != nil {
		t.Fatal(err)
	}
	if in.PatientName != "CompressedSamples^MR1" || in.PatientID != "4MR1" || in.Modality != "MR" ||
		in.SOPInstanceUID != "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457" || in.TransferSyntax != tsExplicitBE {
		t.Errorf("big endian attributes: %+v", in)
	}
	in, err = ParseFile(filepath.Join(dir, "valid/sc_deflated.dcm"))
	if err != nil || in.StudyInstanceUID != "1.3.6.1.4.1.5962.1.2.0.977067310.6001.0" {
		t.Errorf("deflated: %v %+v", err, in)
	}
	in, err = ParseFile(filepath.Join(dir, "valid/cr_j2k_lossy_tibia.dcm"))
	if err != nil || in.PatientBirthDate != "19790408" || in.Modality != "CR" {
		t.Errorf("cr: %v %+v", err, in)
	}
}

func TestNotDICOM(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.txt")
	os.WriteFile(p, []byte("hello"), 0o600)
	if _, err := ParseFile(p); !errors.Is(err, ErrNotDICOM) {
		t.Fatalf("got %v", err)
	}
}
