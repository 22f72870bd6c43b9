package dicom

import (
	"bytes"
	"testing"
)

// TestDeidShiftDatesTimelineOnly: --shift-dates moves the dates of the
// patient's timeline, listed in Table E.1-1 or not, and leaves dates that
// version a definition (Context Group Version inside a code sequence, at any
// depth) exactly as they were; Template Version follows Table E.1-1 (X).
func TestDeidShiftDatesTimelineOnly(t *testing.T) {
	const version = "20020904000000.000000"
	code := func(value string) *item {
		return &item{Elems: []*element{
			str(0x00080100, "SH", value), str(0x00080102, "SH", "SCT"), str(0x00080104, "LO", "meaning"),
			str(0x00080105, "CS", "DCMR"), str(0x00080106, "DT", version), str(0x00080107, "DT", "20100101"),
			str(0x0008010F, "CS", "4031"),
		}}
	}
	anat := &element{Tag: 0x00082218, VR: "SQ", IsSeq: true, Items: []*item{code("51185008")}}
	// A radiopharmaceutical sequence nesting a radionuclide code sequence,
	// as in the TCIA PET of the shared test data.
	nested := &element{Tag: 0x00540016, VR: "SQ", IsSeq: true, Items: []*item{{Elems: []*element{
		{Tag: 0x00540300, VR: "SQ", IsSeq: true, Items: []*item{code("C-111A1")}},
		str(0x00181078, "DT", "20200102101500"), // Radiopharmaceutical Start DateTime: listed X (removed)
	}}}}
	src := synth(t,
		str(0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.128"),
		str(0x00080018, "UI", "1.2.3.4.5.6"),
		str(0x00080020, "DA", "20200102"),       // Study Date: listed, timeline
		str(0x00080021, "DA", "20200102"),       // Series Date
		str(0x00080106, "DT", version),          // top-level too
		str(0x0040E004, "DT", "20200102120000"), // HL7 Document Effective Time: unlisted timeline
		str(0x0040DB06, "DT", version),          // Template Version: X
		str(0x00100030, "DA", "19700101"),       // birth date: Z
		str(0x00100020, "LO", "PID42"),
		anat, nested,
	)
	count := func(b []byte, tag uint32, v string) int {
		if len(v)%2 == 1 {
			v += " "
		}
		enc := []byte{byte(tag >> 16), byte(tag >> 24), byte(tag), byte(tag >> 8), 'D', 'T', byte(len(v)), 0}
		return bytes.Count(b, append(enc, v...))
	}
	if n := count(src, 0x00080106, version); n != 3 {
		t.Fatalf("source has %d Context Group Versions", n)
	}
	for _, shift := range []bool{false, true} {
		var out bytes.Buffer
		res, err := Deidentify(bytes.NewReader(src), &out, DeidOptions{ProjectKey: testKey, ShiftDates: shift, DateOffsetDays: func(string) int { return -10 }})
		if err != nil || res.Excluded {
			t.Fatal(err, res)
		}
		b := out.Bytes()
		if n := count(b, 0x00080106, version); n != 3 {
			t.Errorf("shift=%v: %d of 3 Context Group Versions kept byte for byte", shift, n)
		}
		if n := count(b, 0x00080107, "20100101"); n != 2 {
			t.Errorf("shift=%v: %d of 2 Context Group Local Versions kept byte for byte", shift, n)
		}
		f, err := readPart10(bytes.NewReader(b), int64(len(b)), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		get := func(tag uint32) string { return find(f.Data, tag).str() }
		if find(f.Data, 0x0040DB06) != nil {
			t.Errorf("shift=%v: Template Version kept (Table E.1-1: X)", shift)
		}
		if v := get(0x00100030); v != "" {
			t.Errorf("shift=%v: birth date %q", shift, v)
		}
		if shift {
			if get(0x00080020) != "20191223" || get(0x00080021) != "20191223" || get(0x0040E004) != "20191223120000" {
				t.Errorf("timeline not shifted by -10 days: study %q series %q HL7 %q", get(0x00080020), get(0x00080021), get(0x0040E004))
			}
		}
	}
}
