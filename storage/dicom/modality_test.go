package dicom

import "testing"

func TestNormalizeModality(t *testing.T) {
	for in, want := range map[string]string{"MR": "MR", "mr": "MR", " ct ": "CT", "RtStruct": "RTSTRUCT", "ds": "DS"} {
		if got, err := NormalizeModality(in); err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MRI", "SMITHJOHN", "M R"} {
		if _, err := NormalizeModality(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
