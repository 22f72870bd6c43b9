package imaging

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

// writeStudy writes a synthetic study (series x instances) and returns its
// files by series UID, and the study UID.
func writeStudy(t *testing.T, dir string, seriesN, instN int, seed int64) (map[string][]string, string) {
	t.Helper()
	paths, err := dicomtest.WriteStudy(dir, dicomtest.Options{SeriesPerStudy: seriesN, InstancesPerSeries: instN, Rows: 8, Cols: 8, Modality: "CT", Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	study := ""
	for _, p := range paths {
		in, err := dicom.ParseFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[in.SeriesInstanceUID] = append(out[in.SeriesInstanceUID], p)
		study = in.StudyInstanceUID
	}
	return out, study
}

// TestImportMergesVersions: a study imported in two parts is one record
// with two versions; importing it again stores nothing; the index knows
// only the newest version; an export gives back every file byte for byte.
func TestImportMergesVersions(t *testing.T) {
	ctx := context.Background()
	s, fr := newTestService(t, t.TempDir())
	bySeries, study := writeStudy(t, t.TempDir(), 2, 3, 11)
	var first, all []string
	for _, ps := range bySeries {
		if first == nil {
			first = ps
		}
		all = append(all, ps...)
	}

	r1, err := s.Import(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if len(r1.Studies) != 1 || r1.Studies[0].Added != 3 || r1.Studies[0].Version != 1 || r1.Studies[0].StudyUID != study {
		t.Fatalf("first import: %+v", r1.Studies)
	}
	r2, err := s.Import(ctx, all)
	if err != nil {
		t.Fatal(err)
	}
	if len(r2.Studies) != 1 {
		t.Fatalf("second import: %+v", r2)
	}
	v2 := r2.Studies[0]
	if v2.Added != 3 || v2.Instances != 6 || v2.Series != 2 || v2.Version != 2 || v2.Prev != r1.Studies[0].ID {
		t.Errorf("second import: %+v", v2)
	}
	if len(r2.Skipped) != 3 {
		t.Errorf("second import skipped %d, want the 3 stored instances: %+v", len(r2.Skipped), r2.Skipped)
	}
	r3, err := s.Import(ctx, all)
	if err != nil {
		t.Fatal(err)
	}
	if len(r3.Studies) != 1 || !r3.Studies[0].Unchanged || r3.Studies[0].ID != v2.ID || fr.Count() != 2 {
		t.Errorf("third import: %+v, %d records", r3.Studies, fr.Count())
	}

	hits, err := s.Query(ctx, dicom.Filter{StudyUID: study})
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 1 || hits[0].ID != v2.ID || hits[0].Instances != 6 || !hits[0].Mine {
		t.Errorf("query: %+v", hits)
	}

	out := t.TempDir()
	id, _ := cid.Decode(v2.ID)
	ex, err := s.Export(ctx, id, 0, out, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if ex.Instances != 6 || len(ex.Files) != 6 {
		t.Fatalf("export: %+v", ex)
	}
	for se, ps := range bySeries {
		for _, p := range ps {
			want, _ := os.ReadFile(p)
			in, _ := dicom.ParseFile(p)
			got, err := os.ReadFile(filepath.Join(out, study, se, in.SOPInstanceUID+".dcm"))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("exported %s: %v, equal %v", p, err, bytes.Equal(got, want))
			}
		}
	}
	if fr.Reads() != 1 {
		t.Errorf("export counted %d reads, want 1", fr.Reads())
	}

	o, err := s.OpenUID(ctx, study)
	if err != nil {
		t.Fatal(err)
	}
	if o.Info.ID.String() != v2.ID || len(o.Select("", "")) != 6 {
		t.Errorf("OpenUID: %s with %d instances", o.Info.ID, len(o.Select("", "")))
	}
	in := o.Select("", "")[4]
	rc := s.OpenInstance(ctx, o, in)
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || int64(len(got)) != o.Size(in) {
		t.Errorf("OpenInstance: %d bytes, %v; want %d", len(got), err, o.Size(in))
	}
	js, err := s.InstanceMetadata(ctx, o, in)
	if err != nil || !bytes.Contains(js, []byte(in.SOPInstanceUID)) {
		t.Errorf("InstanceMetadata: %v, %s", err, js)
	}
	if _, err := s.OpenUID(ctx, "1.2.3.4"); !fault.Is(err, fault.NotFound) {
		t.Errorf("OpenUID of an unknown study: %v, want NotFound", err)
	}
}

func TestImportInvalid(t *testing.T) {
	s, _ := newTestService(t, t.TempDir())
	for _, paths := range [][]string{nil, {"relative/path"}} {
		if _, err := s.Import(context.Background(), paths); !fault.Is(err, fault.Invalid) {
			t.Errorf("Import(%q): %v, want Invalid", paths, err)
		}
	}
	if _, err := s.Query(context.Background(), dicom.Filter{From: "2024-13"}); !fault.Is(err, fault.Invalid) {
		t.Errorf("Query with a bad date: %v, want Invalid", err)
	}
	if _, err := s.Find(context.Background(), dicom.Filter{From: "20241345"}); !fault.Is(err, fault.Invalid) {
		t.Errorf("Find with a bad date: %v, want Invalid", err)
	}
}

// TestStaging: streamed instances are grouped into studies as files are;
// a dropped one is not stored; a failed read leaves nothing; Close removes
// the folder.
func TestStaging(t *testing.T) {
	ctx := context.Background()
	repo := t.TempDir()
	s, _ := newTestService(t, repo)
	bySeries, study := writeStudy(t, t.TempDir(), 2, 2, 12)
	other, otherStudy := writeStudy(t, t.TempDir(), 1, 1, 13)

	st, err := s.Stage()
	if err != nil {
		t.Fatal(err)
	}
	put := func(p string) Staged {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		sd, err := st.Put(f)
		if err != nil {
			t.Fatal(err)
		}
		return sd
	}
	for _, ps := range bySeries {
		for _, p := range ps {
			put(p)
		}
	}
	var dropped Staged
	for _, ps := range other {
		dropped = put(ps[0])
	}
	if err := st.Drop(dropped); err != nil {
		t.Fatal(err)
	}
	failing := io.MultiReader(strings.NewReader("DICM"), iotestErrReader{})
	if _, err := st.Put(failing); !fault.Is(err, fault.Invalid) {
		t.Errorf("Put of a failing reader: %v, want Invalid", err)
	}
	res, err := st.Import(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Studies) != 1 || res.Studies[0].StudyUID != study || res.Studies[0].Instances != 4 || len(res.Rejected) != 0 {
		t.Errorf("staged import: %+v", res)
	}
	if len(res.Files) != 4 {
		t.Errorf("outcomes of %d files, want the 4 staged", len(res.Files))
	}
	if hits, _ := s.Find(ctx, dicom.Filter{StudyUID: otherStudy}); len(hits) != 0 {
		t.Errorf("the dropped instance's study was stored")
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(repo); len(ents) != 0 {
		t.Errorf("repo holds %d entries after Close", len(ents))
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// TestStaleStagingRemoved: what a killed daemon left staged (instances in
// clear) is removed when the service starts; nothing else is.
func TestStaleStagingRemoved(t *testing.T) {
	repo := t.TempDir()
	for _, p := range []string{".stow-123/part-000001.dcm", ".wado-meta-456", "keep/file"} {
		os.MkdirAll(filepath.Dir(filepath.Join(repo, p)), 0o700)
		if err := os.WriteFile(filepath.Join(repo, p), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	newTestService(t, repo)
	ents, _ := os.ReadDir(repo)
	if len(ents) != 1 || ents[0].Name() != "keep" {
		t.Errorf("repo after start: %v", ents)
	}
}

// TestDeidentify: a de-identified copy is a new, indexed study record with
// new UIDs and a pseudonymous patient; the source's read is counted; a
// series filter keeps only the series it selects.
func TestDeidentify(t *testing.T) {
	ctx := context.Background()
	repo := t.TempDir()
	s, fr := newTestService(t, repo)
	bySeries, study := writeStudy(t, t.TempDir(), 2, 2, 14)
	var all []string
	for _, ps := range bySeries {
		all = append(all, ps...)
	}
	res, err := s.Import(ctx, all)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := cid.Decode(res.Studies[0].ID)
	dr, err := s.DeidentifyRecord(ctx, id, deidReq(res.Studies[0].ID))
	if err != nil {
		t.Fatal(err)
	}
	if dr.Instances != 4 || dr.StudyUID == study || dr.Source != res.Studies[0].ID || fr.Reads() != 1 {
		t.Errorf("deidentify: %+v (%d reads)", dr, fr.Reads())
	}
	if fi, err := os.Stat(filepath.Join(repo, ProjectKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("default project key: %v", err)
	}
	o, err := s.OpenUID(ctx, dr.StudyUID)
	if err != nil {
		t.Fatal(err)
	}
	if o.Manifest.Name != DeidStudyName || !strings.HasPrefix(o.Study.PatientID, "ANON-") {
		t.Errorf("de-identified record %q, patient %q", o.Manifest.Name, o.Study.PatientID)
	}
	for _, in := range o.Select("", "") {
		var buf bytes.Buffer
		if err := s.WriteInstance(ctx, o, in, &buf); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(buf.Bytes(), []byte(dicomtest.PatientID(1))) || int64(buf.Len()) != in.Size {
			t.Errorf("instance %s: %d bytes (metadata says %d), patient ID left: %v", in.SOPInstanceUID, buf.Len(), in.Size, bytes.Contains(buf.Bytes(), []byte(dicomtest.PatientID(1))))
		}
	}

	src, err := s.Open(ctx, id, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	key, err := s.ProjectKey("")
	if err != nil {
		t.Fatal(err)
	}
	keep := src.Study.Series[1].UID
	one, err := s.Deidentify(ctx, src, dicom.DeidOptions{ProjectKey: key}, func(se *dicom.Series) bool { return se.UID == keep })
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Study.Series) != 1 || one.Study.NumInstances() != 2 {
		t.Errorf("one series kept: %d series, %d instances", len(one.Study.Series), one.Study.NumInstances())
	}
	if _, err := s.DeidentifyRecord(ctx, id, withKeyFile(deidReq(res.Studies[0].ID), "relative.key")); !fault.Is(err, fault.Invalid) {
		t.Errorf("relative project key path: %v, want Invalid", err)
	}
	loose := filepath.Join(t.TempDir(), "loose.key")
	os.WriteFile(loose, bytes.Repeat([]byte{7}, 32), 0o644)
	if _, err := s.DeidentifyRecord(ctx, id, withKeyFile(deidReq(res.Studies[0].ID), loose)); !fault.Is(err, fault.Invalid) || !strings.Contains(fault.HintOf(err), "chmod 600") {
		t.Errorf("project key readable by others: %v, want Invalid with a chmod hint", err)
	}
}

func deidReq(id string) api.DicomDeidRequest { return api.DicomDeidRequest{Record: id} }

func withKeyFile(r api.DicomDeidRequest, path string) api.DicomDeidRequest {
	r.ProjectKeyFile = path
	return r
}

// TestStagingConcurrentPuts: puts from several goroutines (associations
// of one staging) each get a file of their own; the import stores each
// instance once.
func TestStagingConcurrentPuts(t *testing.T) {
	s, _ := newTestService(t, t.TempDir())
	bySeries, _ := writeStudy(t, t.TempDir(), 1, 4, 15)
	st, err := s.Stage()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 2; g++ {
		for _, p := range bySeries[firstKey(bySeries)] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, err := os.Open(p)
				if err == nil {
					_, err = st.Put(f)
					f.Close()
				}
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	res, err := st.Import(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 8 || len(res.Studies) != 1 || res.Studies[0].Instances != 4 || len(res.Skipped) != 4 {
		t.Errorf("import of 8 puts of 4 instances: %d files, studies %+v, %d skipped", len(res.Files), res.Studies, len(res.Skipped))
	}
}

func firstKey(m map[string][]string) string {
	for k := range m {
		return k
	}
	return ""
}
