package imaging

import (
	"context"
	"testing"

	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

// TestSearch: the query engine at the four levels over imported studies,
// with the keys C-FIND and QIDO-RS send.
func TestSearch(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestService(t, t.TempDir())
	a, err := dicomtest.WriteStudy(t.TempDir(), dicomtest.Options{Patients: 2, SeriesPerStudy: 2, InstancesPerSeries: 3, Rows: 8, Cols: 8, Modality: "MR", Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, a); err != nil {
		t.Fatal(err)
	}
	count := func(level Level, fuzzy bool, kv ...any) int {
		t.Helper()
		keys := map[uint32]string{}
		for i := 0; i < len(kv); i += 2 {
			keys[kv[i].(uint32)] = kv[i+1].(string)
		}
		rows, _, err := s.Search(ctx, Query{Level: level, Keys: keys, Fuzzy: fuzzy})
		if err != nil {
			t.Fatal(err)
		}
		return len(rows)
	}
	for _, c := range []struct {
		name string
		got  int
		want int
	}{
		{"patients", count(LevelPatient, false), 2},
		{"studies", count(LevelStudy, false), 2},
		{"series", count(LevelSeries, false), 4},
		{"instances", count(LevelImage, false), 12},
		{"one patient's studies", count(LevelStudy, false, uint32(0x00100020), dicomtest.PatientID(1)), 1},
		{"name wildcard, lower case", count(LevelStudy, false, uint32(0x00100010), "demo^patient1*"), 1},
		{"fuzzy name", count(LevelStudy, true, uint32(0x00100010), "patient2"), 1},
		{"not fuzzy", count(LevelStudy, false, uint32(0x00100010), "patient2"), 0},
		{"modality", count(LevelSeries, false, uint32(0x00080060), "mr"), 4},
		{"modalities in study", count(LevelStudy, false, uint32(0x00080061), `CT\MR`), 2},
		{"date range", count(LevelStudy, false, uint32(0x00080020), "19000101-19001231"), 0},
		{"instance number", count(LevelImage, false, uint32(0x00200013), "2"), 4},
		{"rows", count(LevelImage, false, uint32(0x00280010), "8"), 12},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d rows, want %d", c.name, c.got, c.want)
		}
	}
	rows, ignored, err := s.Search(ctx, Query{Level: LevelStudy, Keys: map[uint32]string{0x00081080: "X", 0x00080018: "1.2"}})
	if err != nil || len(rows) != 2 || len(ignored) != 2 {
		t.Errorf("unknown and lower-level keys are ignored and named: %d rows, ignored %v, %v", len(rows), ignored, err)
	}
	pr, _, _ := s.Search(ctx, Query{Level: LevelPatient})
	if a, _ := AttributeByKeyword("NumberOfPatientRelatedInstances"); len(pr) != 2 || a.Values(pr[0])[0] != "6" {
		t.Errorf("patient counts: %+v", pr)
	}
}
