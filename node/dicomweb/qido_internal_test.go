package dicomweb

import (
	"net/http/httptest"
	"testing"

	"github.com/medmesh/medmesh/node/imaging"
)

func TestParseQido(t *testing.T) {
	for _, c := range []struct {
		query   string
		bad     bool
		keys    int
		ignored int
	}{
		{"PatientName=doe*&fuzzymatching=true", false, 1, 0},
		{"00100020=X&StudyDate=20240101-20240131", false, 2, 0},
		{"StudyDate=2024-01-01", true, 0, 0}, // DA has no dashes: that reads as a bad range
		{"StudyDate=20241345", true, 0, 0},   // no month 13
		{"StudyDate=-20240131", false, 1, 0}, // open range
		{"StudyTime=0800-1200", false, 1, 0},
		{"StudyTime=8", true, 0, 0},
		{"limit=-1", true, 0, 0},
		{"fuzzymatching=maybe", true, 0, 0},
		{"color=blue&includefield=Nonsense", false, 0, 2},
		{"SOPInstanceUID=1.2", false, 0, 1}, // below the study level
		{"Modality=CT", false, 1, 0},        // at study level: ModalitiesInStudy
		{"StudyInstanceUID=1.2,1.3", false, 1, 0},
	} {
		r := httptest.NewRequest("GET", "/dicomweb/studies?"+c.query, nil)
		q, err := parseQido(r, imaging.LevelStudy)
		if (err != nil) != c.bad {
			t.Errorf("%s: error %v, want bad %v", c.query, err, c.bad)
			continue
		}
		if err == nil && (len(q.q.Keys) != c.keys || len(q.ignored) != c.ignored) {
			t.Errorf("%s: %d keys, ignored %v; want %d and %d", c.query, len(q.q.Keys), q.ignored, c.keys, c.ignored)
		}
	}
}

func TestAccept(t *testing.T) {
	got := parseAccept(`multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1; q=0.5, multipart/related; type="application/dicom"; transfer-syntax=*`)
	if len(got) != 2 || got[0].param("transfer-syntax") != "*" || got[1].param("transfer-syntax") != "1.2.840.10008.1.2.1" {
		t.Fatalf("%+v", got)
	}
	if got := parseAccept(""); len(got) != 1 || got[0].typ != "*/*" {
		t.Fatalf("empty Accept: %+v", got)
	}
	if got := parseAccept("image/png;q=0, image/jpeg"); len(got) != 1 || !got[0].matches("image/jpeg") {
		t.Fatalf("q=0 dropped: %+v", got)
	}
}
