package dicomtest

import (
	"bytes"
	"os/exec"
	"testing"

	lib "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

func TestWriteStudy(t *testing.T) {
	paths, err := WriteStudy(t.TempDir(), Options{Patients: 2, SeriesPerStudy: 2, InstancesPerSeries: 3, Rows: 8, Cols: 8, Modality: "MR"})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 12 {
		t.Fatalf("%d files", len(paths))
	}
	ds, err := lib.ParseFile(paths[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := ds.FindElementByTag(tag.PatientName)
	if err != nil || lib.MustGetStrings(e.Value)[0] != "DEMO^PATIENT1" {
		t.Fatalf("patient name: %v %v", e, err)
	}
	if _, err := exec.LookPath("dcmdump"); err != nil {
		t.Skip("dcmdump not installed (apt-get install dcmtk); skipping dcmtk check")
	}
	out, err := exec.Command("dcmdump", "-M", "+L", paths[len(paths)-1]).CombinedOutput()
	if err != nil {
		t.Fatalf("dcmdump: %v\n%s", err, out)
	}
	if bytes.Contains(out, []byte("E: ")) || bytes.Contains(out, []byte("W: ")) {
		t.Fatalf("dcmdump complains:\n%s", out)
	}
}
