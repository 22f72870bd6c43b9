package dicom

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var testKey = bytes.Repeat([]byte{7}, 32)

// identifying collects the values of the source that must not survive.
func identifying(t *testing.T, path string) []string {
	t.Helper()
	in, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := readPart10(bytes.NewReader(in), int64(len(in)), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	add := func(s string) {
		s = strings.TrimSpace(s)
		// Values shorter than 5 bytes (e.g. Patient ID "0010") occur by
		// chance in binary data; they are checked at tag level instead.
		switch strings.ToUpper(s) {
		case "ANONYMIZED", "ANONYMOUS", "REMOVED":
			return
		}
		if len(s) >= 5 {
			out = append(out, s)
		}
	}
	var walk func(es []*element)
	walk = func(es []*element) {
		for _, e := range es {
			switch {
			case e.Tag == 0x00100010 || e.Tag == 0x00100020 || e.Tag == 0x00100030 || e.Tag == 0x00080050 ||
				e.Tag == 0x00080080 || e.Tag == 0x00080081 || e.Tag == 0x00080090 || e.Tag == 0x00081050 || e.Tag == 0x00081060 ||
				e.Tag == 0x00081070 || e.Tag == 0x00081048 || e.Tag == 0x00101000:
				add(e.str())
			case e.VR == "UI" && !keepUIDTags[e.Tag]:
				for _, u := range strings.Split(e.str(), `\`) {
					if !strings.HasPrefix(u, "1.2.840.10008.") {
						add(u)
					}
				}
			}
			for _, it := range e.Items {
				walk(it.Elems)
			}
		}
	}
	walk(f.Data)
	if e := find(f.Meta, 0x00020003); e != nil {
		add(e.str())
	}
	return out
}

func deidFile(t *testing.T, path string, opts DeidOptions) ([]byte, *DeidResult) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	res, err := Deidentify(f, &out, opts)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if res.Excluded && out.Len() != 0 {
		t.Fatalf("%s: excluded but %d bytes written", path, out.Len())
	}
	return out.Bytes(), res
}

func checkNoPrivate(t *testing.T, name string, data []byte) {
	t.Helper()
	f, err := readPart10(bytes.NewReader(data), int64(len(data)), nil, nil)
	if err != nil {
		t.Fatalf("%s: re-read: %v", name, err)
	}
	var walk func(es []*element)
	walk = func(es []*element) {
		for _, e := range es {
			if e.group()%2 == 1 {
				t.Errorf("%s: private tag (%04X,%04X) remains", name, e.group(), e.Tag&0xFFFF)
			}
			for _, it := range e.Items {
				walk(it.Elems)
			}
		}
	}
	walk(f.Data)
	if v := find(f.Data, 0x00120062).str(); v != "YES" {
		t.Errorf("%s: PatientIdentityRemoved=%q", name, v)
	}
}

func TestDeidentifyTestdata(t *testing.T) {
	dir := testdataDir(t)
	dcmdump, _ := exec.LookPath("dcmdump")
	if dcmdump == "" {
		t.Log("dcmdump not installed (apt-get install dcmtk): skipping the dcmtk check of outputs")
	}
	var files []string
	for _, e := range readManifest(t, dir) {
		if e.Parse && filepath.Base(e.File) != "DICOMDIR" {
			files = append(files, e.File)
		}
	}
	tmp := t.TempDir()
	studyMap := map[string]string{} // original study UID -> new
	excluded := 0
	for i, name := range files {
		p := filepath.Join(dir, name)
		for _, shift := range []bool{false, true} {
			opts := DeidOptions{ProjectKey: testKey, ShiftDates: shift, RetainPatientCharacteristics: shift}
			out, res := deidFile(t, p, opts)
			if res.Excluded {
				excluded++
				t.Logf("%s: excluded: %s", name, res.Reason)
				break
			}
			for _, s := range identifying(t, p) {
				if bytes.Contains(bytes.ToUpper(out), bytes.ToUpper([]byte(s))) {
					t.Errorf("%s (shift=%v): identifying value %q in output", name, shift, s)
				}
			}
			checkNoPrivate(t, name, out)
			orig, err := ParseFile(p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseReader(bytes.NewReader(out), int64(len(out)))
			if err != nil {
				t.Fatalf("%s: own parser rejects output: %v", name, err)
			}
			if got.TransferSyntax != orig.TransferSyntax || got.PatientID != res.PatientPseudonym {
				t.Errorf("%s: ts %s->%s, patient %q", name, orig.TransferSyntax, got.TransferSyntax, got.PatientID)
			}
			if orig.StudyInstanceUID != "" {
				if want := PseudonymizeUID(testKey, orig.StudyInstanceUID); got.StudyInstanceUID != want {
					t.Errorf("%s: study UID %s, want %s", name, got.StudyInstanceUID, want)
				}
				if prev, ok := studyMap[orig.StudyInstanceUID]; ok && prev != got.StudyInstanceUID {
					t.Errorf("%s: study UID mapped inconsistently", name)
				}
				studyMap[orig.StudyInstanceUID] = got.StudyInstanceUID
			}
			if dcmdump != "" {
				op := filepath.Join(tmp, strings.ReplaceAll(name, "/", "_")+".dcm")
				os.WriteFile(op, out, 0o600)
				o, err := exec.Command(dcmdump, "-M", "+L", op).CombinedOutput()
				if err != nil || bytes.Contains(o, []byte("E: ")) {
					t.Errorf("%s: dcmdump rejects output: %v\n%s", name, err, tail(o))
				}
			}
			_ = i
		}
	}
	// The 2 secondary captures, 2 NM-as-SC and 2 US files are excluded.
	if excluded != 6 {
		t.Errorf("%d excluded, want 6", excluded)
	}
}

func tail(b []byte) []byte {
	if len(b) > 2000 {
		return b[len(b)-2000:]
	}
	return b
}

// The DICOMDIR's multi-instance series must keep consistent UIDs.
func TestDeidentifyConsistentSeries(t *testing.T) {
	dir := filepath.Join(testdataDir(t), "dicomdir", "98892001", "CT5N")
	ents, _ := os.ReadDir(dir)
	studies, series, fors := map[string]bool{}, map[string]bool{}, map[string]bool{}
	sops := map[string]bool{}
	for _, e := range ents {
		out, res := deidFile(t, filepath.Join(dir, e.Name()), DeidOptions{ProjectKey: testKey})
		in, err := ParseReader(bytes.NewReader(out), int64(len(out)))
		if err != nil {
			t.Fatal(err)
		}
		studies[in.StudyInstanceUID] = true
		series[in.SeriesInstanceUID] = true
		sops[in.SOPInstanceUID] = true
		f, _ := readPart10(bytes.NewReader(out), int64(len(out)), nil, nil)
		fors[find(f.Data, 0x00200052).str()] = true
		if find(f.Meta, 0x00020003).str() != res.SOPInstanceUID {
			t.Errorf("MediaStorageSOPInstanceUID not remapped like SOPInstanceUID")
		}
	}
	if len(ents) != 5 || len(studies) != 1 || len(series) != 1 || len(fors) != 1 || len(sops) != 5 {
		t.Fatalf("files %d studies %d series %d FoR %d sops %d", len(ents), len(studies), len(series), len(fors), len(sops))
	}
	other, _ := deidFile(t, filepath.Join(dir, ents[0].Name()), DeidOptions{ProjectKey: bytes.Repeat([]byte{8}, 32)})
	in, _ := ParseReader(bytes.NewReader(other), int64(len(other)))
	if studies[in.StudyInstanceUID] {
		t.Fatal("a different key gave the same study UID")
	}
}

// synth builds a Part 10 file (Explicit VR LE) from elements.
func synth(t testing.TB, elems ...*element) []byte {
	var b bytes.Buffer
	b.Write(make([]byte, 128))
	b.WriteString("DICM")
	var meta bytes.Buffer
	me := &encoder{w: &meta, bo: binary.LittleEndian}
	me.element(&element{Tag: 0x00020002, VR: "UI", Value: padValue("UI", "1.2.840.10008.5.1.4.1.1.2")})
	me.element(&element{Tag: 0x00020003, VR: "UI", Value: padValue("UI", "1.2.3.4.5.6")})
	me.element(&element{Tag: 0x00020010, VR: "UI", Value: padValue("UI", tsExplicitLE)})
	gl := binary.LittleEndian.AppendUint32(nil, uint32(meta.Len()))
	enc := &encoder{w: &b, bo: binary.LittleEndian}
	enc.element(&element{Tag: 0x00020000, VR: "UL", Value: gl})
	b.Write(meta.Bytes())
	sortElems(elems)
	for _, e := range elems {
		if err := enc.element(e); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func str(t uint32, vr, v string) *element { return &element{Tag: t, VR: vr, Value: padValue(vr, v)} }

// One attribute per action code -> expected outcome.
func TestDeidActionCodes(t *testing.T) {
	const offset = -10
	seq := &element{Tag: 0x00081140, VR: "SQ", IsSeq: true, Items: []*item{{Elems: []*element{
		str(0x00081150, "UI", "1.2.840.10008.5.1.4.1.1.2"), str(0x00081155, "UI", "1.9.9.9"),
		str(0x00100010, "PN", "Nested^Name")}}}}
	inst := &element{Tag: 0x00080082, VR: "SQ", IsSeq: true, Items: []*item{{Elems: []*element{str(0x00080104, "LO", "General Hospital")}}}}
	src := synth(t,
		str(0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.2"),
		str(0x00080018, "UI", "1.2.3.4.5.6"),                     // U
		str(0x00080050, "SH", "ACC123"),                          // Z
		str(0x00081030, "LO", "Head study"),                      // X
		str(0x00180010, "LO", "IOPAMIDOL"),                       // Z/D -> D
		str(0x00080012, "DA", "20200102"),                        // X/D -> D (or shift)
		str(0x00081010, "SH", "STATION7"),                        // X/Z/D -> D
		inst,                                                     // X/Z/D on SQ -> Z
		str(0x00102203, "CS", "ALTERED"),                         // X/Z -> Z
		seq,                                                      // X/Z/U* -> U inside
		str(0x00080070, "LO", "ACME"),                            // K (not listed)
		str(0x00100010, "PN", "Doe^Jane"),                        // pseudonym
		str(0x00100020, "LO", "PID42"),                           // pseudonym
		str(0x00101010, "AS", "042Y"),                            // X, K with retain
		str(0x00204000, "LT", "comment"),                         // X
		str(0x0020000D, "UI", "1.2.3.4"),                         // U
		str(0x00090010, "LO", "PRIVATE CREATOR"),                 // private
		str(0x00091001, "LO", "secret"),                          // private
		str(0x00200010, "SH", "STUDY1"),                          // Z
		str(0x00080020, "DA", "20200102"),                        // Z (or shift)
		str(0x00180015, "CS", "PID42"),                           // K but leaks the patient ID -> emptied
		str(0x60003000, "OW", "ovly"),                            // overlay data X
		&element{Tag: 0x00280010, VR: "US", Value: []byte{4, 0}}, // K
		&element{Tag: 0x7FE00010, VR: "OW", Value: bytes.Repeat([]byte{1}, 8)}, // streamed
	)
	for _, opts := range []DeidOptions{
		{ProjectKey: testKey},
		{ProjectKey: testKey, ShiftDates: true, RetainPatientCharacteristics: true, DateOffsetDays: func(pid string) int {
			if pid != "PID42" {
				t.Errorf("DateOffsetDays got %q", pid)
			}
			return offset
		}},
	} {
		var out bytes.Buffer
		res, err := Deidentify(bytes.NewReader(src), &out, opts)
		if err != nil || res.Excluded {
			t.Fatal(err, res)
		}
		f, err := readPart10(bytes.NewReader(out.Bytes()), int64(out.Len()), func(d *decoder, e *element) error {
			var b bytes.Buffer
			if err := d.copyPixel(&b, e); err != nil {
				return err
			}
			if !bytes.Equal(b.Bytes(), bytes.Repeat([]byte{1}, 8)) {
				t.Errorf("pixel data changed")
			}
			return nil
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		get := func(tg uint32) *element { return find(f.Data, tg) }
		expect := func(tg uint32, want string, present bool) {
			t.Helper()
			e := get(tg)
			if (e != nil) != present {
				t.Errorf("(%04X,%04X) present=%v, want %v", tg>>16, tg&0xFFFF, e != nil, present)
				return
			}
			if e != nil && e.str() != want {
				t.Errorf("(%04X,%04X) = %q, want %q", tg>>16, tg&0xFFFF, e.str(), want)
			}
		}
		shift := opts.ShiftDates
		expect(0x00080018, PseudonymizeUID(testKey, "1.2.3.4.5.6"), true)
		expect(0x0020000D, PseudonymizeUID(testKey, "1.2.3.4"), true)
		expect(0x00080050, "", true)
		expect(0x00081030, "", false)
		expect(0x00180010, "ANONYMIZED", true)
		expect(0x00081010, "ANONYMIZED", true)
		expect(0x00080070, "ACME", true)
		expect(0x00100020, PatientPseudonym(testKey, "PID42"), true)
		expect(0x00204000, "", false)
		expect(0x00091001, "", false)
		expect(0x00090010, "", false)
		expect(0x00200010, "", true)
		expect(0x00180015, "", true)
		expect(0x60003000, "", false)
		expect(0x00120062, "YES", true)
		if shift {
			expect(0x00080012, "20191223", true)
			expect(0x00080020, "20191223", true)
			expect(0x00101010, "042Y", true)
			expect(0x00102203, "ALTERED", true)
			expect(0x00280303, "MODIFIED", true)
		} else {
			expect(0x00080012, "19000101", true)
			expect(0x00080020, "", true)
			expect(0x00101010, "", false)
			expect(0x00102203, "", true)
			expect(0x00280303, "REMOVED", true)
		}
		codes := map[string]bool{}
		for _, it := range get(0x00120064).Items {
			codes[find(it.Elems, 0x00080100).str()] = true
		}
		if !codes["113100"] || codes["113107"] != shift || codes["113108"] != shift {
			t.Errorf("method codes %v", codes)
		}
		if e := get(0x00080082); e == nil || len(e.Items) != 0 {
			t.Errorf("institution code sequence not emptied")
		}
		rs := get(0x00081140)
		if rs == nil || len(rs.Items) != 1 {
			t.Fatalf("referenced image sequence: %+v", rs)
		}
		it := rs.Items[0].Elems
		if find(it, 0x00081155).str() != PseudonymizeUID(testKey, "1.9.9.9") || find(it, 0x00081150).str() != "1.2.840.10008.5.1.4.1.1.2" {
			t.Errorf("referenced UIDs inside sequence not handled")
		}
		if n := find(it, 0x00100010); n == nil || strings.Contains(n.str(), "Nested") {
			t.Errorf("nested patient name not replaced")
		}
		if bytes.Contains(out.Bytes(), []byte("Doe^Jane")) || bytes.Contains(out.Bytes(), []byte("secret")) || bytes.Contains(out.Bytes(), []byte("PID42")) {
			t.Errorf("identifying bytes in output")
		}
	}
}

func TestDeidExclusion(t *testing.T) {
	for _, tc := range []struct {
		name  string
		elems []*element
	}{
		{"burned-in", []*element{str(0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.2"), str(0x00280301, "CS", "YES")}},
		{"secondary capture", []*element{str(0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.7")}},
		{"ultrasound", []*element{str(0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.2"), str(0x00080060, "CS", "US")}},
	} {
		var out bytes.Buffer
		res, err := Deidentify(bytes.NewReader(synth(t, tc.elems...)), &out, DeidOptions{ProjectKey: testKey})
		if err != nil || !res.Excluded || res.Reason == "" || out.Len() != 0 {
			t.Errorf("%s: %v %+v %d", tc.name, err, res, out.Len())
		}
	}
	if _, err := Deidentify(bytes.NewReader(nil), &bytes.Buffer{}, DeidOptions{}); err == nil {
		t.Error("short key accepted")
	}
}
