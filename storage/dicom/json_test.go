package dicom

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

func TestMetadataJSON(t *testing.T) {
	dir := testdataDir(t)
	for _, f := range []string{"valid/mr_small_big_endian.dcm", "valid/mr_small_implicit_le.dcm"} {
		in, err := ParseFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := MetadataJSON(in)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]struct {
			VR    string            `json:"vr"`
			Value []json.RawMessage `json:"Value"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		check := func(tag, vr, value string) {
			t.Helper()
			e, ok := m[tag]
			if !ok || e.VR != vr || len(e.Value) == 0 || string(e.Value[0]) != value {
				t.Errorf("%s %s: %+v, want %s %s", f, tag, e, vr, value)
			}
		}
		check("00100010", "PN", `{"Alphabetic":"CompressedSamples^MR1"}`)
		check("00080060", "CS", `"MR"`)
		check("00280010", "US", `64`)
		check("0020000D", "UI", `"1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"`)
		if _, ok := m["7FE00010"]; ok {
			t.Error("pixel data in metadata JSON")
		}
	}
}
