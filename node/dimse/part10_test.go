package dimse

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestFileMetaRoundTrip(t *testing.T) {
	m := FileMeta{MediaStorageSOPClassUID: CTImageStorage, MediaStorageSOPInstanceUID: "1.2.3", TransferSyntaxUID: ExplicitVRLittleEndian, SourceAETitle: "MOD"}
	r, err := Part10(m, bytes.NewReader([]byte{8, 0, 0x16, 0}))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	got, ds, err := OpenPart10(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(ds)
	if got.MediaStorageSOPClassUID != m.MediaStorageSOPClassUID || got.MediaStorageSOPInstanceUID != "1.2.3" || got.TransferSyntaxUID != m.TransferSyntaxUID ||
		got.SourceAETitle != "MOD" || got.ImplementationClassUID != ImplementationClassUID || got.ImplementationVersionName != ImplementationVersionName ||
		!bytes.Equal(rest, []byte{8, 0, 0x16, 0}) || got.Length != int64(len(b)-4) {
		t.Fatalf("%+v %x", got, rest)
	}
	if needTool(t, "dcmdump"); true {
		f := filepath.Join(t.TempDir(), "x.dcm")
		os.WriteFile(f, b[:len(b)-4], 0o600)
		if out, err := run(t, 10e9, "dcmdump", "-q", f); err != nil {
			t.Fatalf("dcmdump refuses our File Meta: %v\n%s", err, out)
		}
	}
}

func TestReadFileMetaErrors(t *testing.T) {
	good, _ := FileMeta{MediaStorageSOPClassUID: "1.2", MediaStorageSOPInstanceUID: "1.3", TransferSyntaxUID: ExplicitVRLittleEndian}.Encode()
	noTS, _ := FileMeta{MediaStorageSOPClassUID: "1.2", MediaStorageSOPInstanceUID: "1.3", TransferSyntaxUID: "1.2"}.Encode()
	for i := 0; i < len(noTS)-4; i++ { // rename (0002,0010) to (0002,0011)
		if noTS[i] == 2 && noTS[i+1] == 0 && noTS[i+2] == 0x10 && noTS[i+3] == 0 {
			noTS[i+2] = 0x11
		}
	}
	huge := append(append([]byte(nil), good[:132]...), 2, 0, 0x99, 0, 'O', 'B', 0, 0, 0xFF, 0xFF, 0xFF, 0x7F)
	for name, b := range map[string][]byte{
		"empty":        nil,
		"no DICM":      make([]byte, 200),
		"truncated":    good[:150],
		"no TS":        noTS,
		"huge element": huge,
	} {
		if _, err := ReadFileMeta(bufio.NewReader(bytes.NewReader(b))); !errors.Is(err, ErrNotPart10) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for i := range good {
		ReadFileMeta(bufio.NewReader(bytes.NewReader(good[:i])))
	}
}

// TestPart10ParamsPrefersDataSet: a file whose File Meta names another
// SOP instance than its data set is sent under the data set's (as dcmtk
// does).
func TestPart10ParamsPrefersDataSet(t *testing.T) {
	p := filepath.Join(testdataDir(t), "valid", "rtplan_implicit.dcm")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	params, _, err := Part10Params(f)
	if err != nil {
		t.Fatal(err)
	}
	if params.SOPInstanceUID != "1.2.777.777.77.7.7777.7777.20030903150023" || params.TransferSyntaxUID != ImplicitVRLittleEndian {
		t.Fatalf("%+v", params)
	}
}
