package dicom

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

// A 64-hex-digit UID, as a real archive wrote SOP, Study and Series UIDs.
const hexUID = "3f9a0c1e2b4d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"

func TestCheckUID(t *testing.T) {
	for _, tc := range []struct {
		uid  string
		want string // "ok", "warn" or "err"
	}{
		{"1.2.840.10008.1.2.1", "ok"},
		{"0", "ok"},
		{"2.25.329800735698586629295641978511506172918", "ok"},
		{"1.2." + strings.Repeat("9", 60), "ok"}, // 64 characters
		{hexUID, "warn"},
		{"1.2.3.4.5a", "warn"},
		{"1.2.0003.04", "warn"},
		{"1..2", "warn"},
		{".1.2", "warn"},
		{"1.2.", "warn"},
		{"1.2." + strings.Repeat("9", 61), "warn"},          // 65 characters
		{"1.2." + strings.Repeat("9", MaxUIDLen-4), "warn"}, // the longest kept
		{"1.2_3-4", "warn"},
		{"", "err"},
		{".", "err"},
		{"..", "err"},
		{"1.2." + strings.Repeat("9", MaxUIDLen-3), "err"},
		{"1.2/3", "err"},
		{"../../etc", "err"},
		{"1.2 3", "err"},
		{`1.2.3\1.2.4`, "err"},
		{"1.2.3\x00", "err"},
		{"1.2.é", "err"},
		{"1.2.3?x=1", "err"},
		{"1.2%2F3", "err"},
	} {
		w, err := CheckUID(tc.uid)
		got := "ok"
		switch {
		case err != nil:
			got = "err"
			if !errors.Is(err, ErrBadUID) {
				t.Errorf("CheckUID(%q): %v does not wrap ErrBadUID", tc.uid, err)
			}
		case w != "":
			got = "warn"
		}
		if got != tc.want {
			t.Errorf("CheckUID(%q) = %q, %v: want %s", tc.uid, w, err, tc.want)
		}
		if ConformantUID(tc.uid) != (tc.want == "ok") {
			t.Errorf("ConformantUID(%q) = %v", tc.uid, !(tc.want == "ok"))
		}
	}
}

// TestScanUIDRule: Scan keeps non-conformant UIDs with a warning, refuses
// those CheckUID refuses, and what it keeps encodes and decodes as study
// metadata (one rule for writing and reading), while metadata naming a
// refused UID is refused both ways.
func TestScanUIDRule(t *testing.T) {
	dir := t.TempDir()
	ps, err := dicomtest.WriteStudy(filepath.Join(dir, "synth"), dicomtest.Options{Rows: 4, Cols: 4})
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "in")
	os.MkdirAll(src, 0o755)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(dicomtest.RewriteUIDs(ps[0], filepath.Join(src, "hex.dcm"), hexUID, "1.2.0003.4", "aa"+hexUID[2:]))
	must(dicomtest.RewriteUIDs(ps[0], filepath.Join(src, "long.dcm"), hexUID, "1.2.0003.4", "1.2."+strings.Repeat("7", 80)))
	must(dicomtest.RewriteUIDs(ps[0], filepath.Join(src, "slash.dcm"), "1.2/3", "", "1.2.3.4.5"))
	must(dicomtest.RewriteUIDs(ps[0], filepath.Join(src, "multi.dcm"), "", "", `1.2.3.6\1.2.3.7`))
	var rejects []Reject
	studies, err := Scan(context.Background(), []string{src}, func(r Reject) { rejects = append(rejects, r) })
	must(err)
	if len(rejects) != 2 {
		t.Fatalf("rejects %v, want slash.dcm and multi.dcm", rejects)
	}
	for _, r := range rejects {
		if !errors.Is(r.Err, ErrBadUID) || !IsReject(r.Err) {
			t.Errorf("%s: %v, want ErrBadUID", r.Path, r.Err)
		}
	}
	if len(studies) != 1 || studies[0].UID != hexUID || studies[0].NumInstances() != 2 {
		t.Fatalf("studies: %+v", studies)
	}
	for _, in := range studies[0].Instances() {
		if len(in.Warnings) == 0 || !strings.Contains(strings.Join(in.Warnings, " "), "Study Instance UID") {
			t.Errorf("%s: warnings %q", in.Path, in.Warnings)
		}
	}
	b, err := EncodeStudyMeta(studies[0])
	must(err)
	back, err := DecodeStudyMeta(b)
	must(err)
	if back.UID != hexUID || back.Instances()[0].SOPInstanceUID != studies[0].Instances()[0].SOPInstanceUID {
		t.Fatalf("round trip: %+v", back)
	}
	// A conformant file has no warning.
	clean, err := Scan(context.Background(), []string{ps[0]}, nil)
	must(err)
	if w := clean[0].Instances()[0].Warnings; len(w) != 0 {
		t.Errorf("conformant file warned: %q", w)
	}
	// Refused UIDs are refused in metadata, both ways.
	bad := &Study{UID: "../x", Series: []*Series{{UID: "1.2", Instances: []*InstanceRef{{SOPInstanceUID: "1.2.3"}}}}}
	if _, err := EncodeStudyMeta(bad); !errors.Is(err, ErrBadStudyMeta) {
		t.Errorf("EncodeStudyMeta with study UID ../x: %v", err)
	}
	bad.UID = "1.2.9"
	enc, err := EncodeStudyMeta(bad)
	must(err)
	forged := bytes.Replace(enc, []byte("1.2.9"), []byte("1/2.9"), 1)
	if _, err := DecodeStudyMeta(forged); !errors.Is(err, ErrBadStudyMeta) {
		t.Errorf("DecodeStudyMeta with study UID 1/2.9: %v", err)
	}
}

// TestDeidentifyNonConformantUIDs: de-identification gives conformant UIDs
// in place of non-conformant ones, even under the DICOM root.
func TestDeidentifyNonConformantUIDs(t *testing.T) {
	dir := t.TempDir()
	ps, err := dicomtest.WriteStudy(filepath.Join(dir, "synth"), dicomtest.Options{Rows: 4, Cols: 4})
	if err != nil {
		t.Fatal(err)
	}
	sop := "1.2.840.10008.99.abc"
	p := filepath.Join(dir, "hex.dcm")
	if err := dicomtest.RewriteUIDs(ps[0], p, hexUID, "1.2.0003.4", sop); err != nil {
		t.Fatal(err)
	}
	out, res := deidFile(t, p, DeidOptions{ProjectKey: testKey})
	got, err := ParseReader(bytes.NewReader(out), int64(len(out)))
	if err != nil {
		t.Fatal(err)
	}
	f, err := readPart10(bytes.NewReader(out), int64(len(out)), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, u := range map[string]string{"study": got.StudyInstanceUID, "series": got.SeriesInstanceUID, "sop": got.SOPInstanceUID,
		"media storage sop": find(f.Meta, 0x00020003).str(), "result study": res.StudyInstanceUID, "result sop": res.SOPInstanceUID} {
		if !ConformantUID(u) {
			t.Errorf("%s UID %q is not conformant", name, u)
		}
	}
	if got.SOPInstanceUID != PseudonymizeUID(testKey, sop) {
		t.Errorf("SOP Instance UID %q under the DICOM root not remapped", sop)
	}
	for _, u := range []string{hexUID, "1.2.0003.4", sop} {
		if bytes.Contains(out, []byte(u)) {
			t.Errorf("original UID %q in output", u)
		}
	}
}

// A SOP Instance UID written with the wrong VR (OB, as a fuzzed input had
// it) is remapped to a conformant UID with VR UI, not emptied: the output
// must keep an identity and read back (found by FuzzParse, seed
// testdata/fuzz/FuzzParse/765d704fa4bb52ac).
func TestDeidentifyUIDWithWrongVR(t *testing.T) {
	src := synth(t,
		str(0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.2"),
		&element{Tag: 0x00080018, VR: "OB", Value: []byte("0001.2.3")},
		str(0x0020000D, "LO", hexUID),
	)
	var out bytes.Buffer
	if _, err := Deidentify(bytes.NewReader(src), &out, DeidOptions{ProjectKey: testKey}); err != nil {
		t.Fatal(err)
	}
	f, err := readPart10(bytes.NewReader(out.Bytes()), int64(out.Len()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for tag, orig := range map[uint32]string{0x00080018: "0001.2.3", 0x0020000D: hexUID} {
		e := find(f.Data, tag)
		if e == nil || e.VR != "UI" || e.str() != PseudonymizeUID(testKey, orig) {
			t.Errorf("(%04X,%04X): %+v, want VR UI and the keyed UID of %q", tag>>16, tag&0xFFFF, e, orig)
		}
	}
	if _, err := ParseReader(bytes.NewReader(out.Bytes()), int64(out.Len())); err != nil {
		t.Errorf("output does not read back: %v", err)
	}
}
