package dicom

import (
	"bytes"
	"context"
	"testing"

	"github.com/ipfs/go-datastore/query"
	"github.com/medmesh/medmesh/storage/blockstore"
)

func TestIndexBadger(t *testing.T) {
	ctx := context.Background()
	st, err := blockstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key := bytes.Repeat([]byte{9}, 32)
	ix, err := NewIndex(st.DS, key)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(uid, pid, name, date string, mods ...string) *Study {
		s := &Study{UID: uid, PatientID: pid, PatientName: name, StudyDate: date, Description: "desc " + uid}
		for i, m := range mods {
			s.Series = append(s.Series, &Series{UID: uid + "." + m, Modality: m, Instances: []*InstanceRef{{SOPInstanceUID: uid + "." + m + ".1", FileIndex: i}}})
		}
		return s
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ix.Put(ctx, "rec-a", mk("1.2.3.1", "PATIENT-SECRET-77", "Secretname^Alice", "20240105", "CT", "MR")))
	must(ix.Put(ctx, "rec-b", mk("1.2.3.2", "PATIENT-SECRET-77", "Secretname^Alice", "20240301", "CR")))
	must(ix.Put(ctx, "rec-c", mk("1.2.3.3", "OTHER-PATIENT-88", "Othername^Bob", "20231201", "CT")))
	ids := func(f Filter) []string {
		t.Helper()
		hits, err := ix.Query(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, h := range hits {
			out = append(out, h.RecordID)
		}
		return out
	}
	eq := func(got []string, want ...string) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("got %v, want %v", got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("got %v, want %v", got, want)
			}
		}
	}
	eq(ids(Filter{}), "rec-c", "rec-a", "rec-b")
	eq(ids(Filter{PatientID: "PATIENT-SECRET-77"}), "rec-a", "rec-b")
	eq(ids(Filter{Modality: "CT"}), "rec-c", "rec-a")
	eq(ids(Filter{PatientID: "PATIENT-SECRET-77", Modality: "CT"}), "rec-a")
	// Modalities match whatever the case, and any value is a query.
	eq(ids(Filter{Modality: "ct"}), "rec-c", "rec-a")
	eq(ids(Filter{Modality: " mR"}), "rec-a")
	eq(ids(Filter{PatientID: "PATIENT-SECRET-77", Modality: "cr"}), "rec-b")
	eq(ids(Filter{Modality: "zz"}))
	eq(ids(Filter{StudyUID: "1.2.3.2"}), "rec-b")
	eq(ids(Filter{From: "20240101", To: "20240131"}), "rec-a")
	eq(ids(Filter{PatientID: "nobody"}))
	hits, _ := ix.Query(ctx, Filter{StudyUID: "1.2.3.1"})
	if h := hits[0]; h.PatientName != "Secretname^Alice" || len(h.Modalities) != 2 || h.Instances != 2 || h.Description != "desc 1.2.3.1" {
		t.Fatalf("hit %+v", h)
	}
	// Re-put changes blind keys; delete removes everything.
	must(ix.Put(ctx, "rec-a", mk("1.2.3.1", "PATIENT-SECRET-77", "Secretname^Alice", "20240105", "US")))
	eq(ids(Filter{Modality: "CT"}), "rec-c")
	must(ix.Delete(ctx, "rec-c"))
	eq(ids(Filter{Modality: "CT"}))
	if _, err := ix.Query(ctx, Filter{From: "2024-01-01"}); err == nil {
		t.Fatal("bad date accepted")
	}
	// Wrong key cannot read entries.
	other, _ := NewIndex(st.DS, bytes.Repeat([]byte{1}, 32))
	if _, err := other.Query(ctx, Filter{}); err == nil {
		t.Fatal("foreign key decrypted the index")
	}
	// No PHI in clear anywhere in the datastore (keys or values).
	res, err := st.DS.Query(ctx, query.Query{Prefix: "/"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for r := range res.Next() {
		n++
		for _, secret := range []string{"PATIENT-SECRET-77", "Secretname", "Alice", "20240105", "1.2.3.1", "desc"} {
			if bytes.Contains([]byte(r.Key), []byte(secret)) || bytes.Contains(r.Value, []byte(secret)) {
				t.Errorf("%q in clear in %s", secret, r.Key)
			}
		}
	}
	res.Close()
	if n == 0 {
		t.Fatal("datastore empty")
	}
}

// TestIndexDetail: the index keeps every study-level query attribute and
// the study's series and instances (sealed apart), and drops both with
// the record.
func TestIndexDetail(t *testing.T) {
	ctx := context.Background()
	st, err := blockstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ix, err := NewIndex(st.DS, bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	s := &Study{UID: "1.2.3", PatientID: "P-SECRET-1", PatientName: "Doe^Jane", PatientBirthDate: "19700101", PatientSex: "F",
		StudyDate: "20240102", StudyTime: "101500", AccessionNumber: "ACC-SECRET-9", ReferringPhysician: "Who^Dr", StudyID: "S77",
		Series: []*Series{{UID: "1.2.3.1", Modality: "CT", Number: 2, Instances: []*InstanceRef{
			{SOPInstanceUID: "1.2.3.1.1", SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", Rows: 512, Columns: 512, BitsAllocated: 16, Frames: 1, FileIndex: 0},
			{SOPInstanceUID: "1.2.3.1.2", SOPClassUID: "1.2.840.10008.5.1.4.1.1.4", FileIndex: 1}}}}}
	if err := ix.Put(ctx, "rec", s); err != nil {
		t.Fatal(err)
	}
	hits, err := ix.Query(ctx, Filter{})
	if err != nil || len(hits) != 1 {
		t.Fatalf("query: %v %v", hits, err)
	}
	h := hits[0]
	if !h.Detailed || h.StudyTime != "101500" || h.AccessionNumber != "ACC-SECRET-9" || h.ReferringPhysician != "Who^Dr" ||
		h.PatientBirthDate != "19700101" || h.PatientSex != "F" || h.StudyID != "S77" || h.NumSeries != 1 || len(h.SOPClasses) != 2 {
		t.Fatalf("hit %+v", h)
	}
	got, err := ix.Study(ctx, "rec")
	if err != nil || len(got.Series) != 1 || len(got.Series[0].Instances) != 2 || got.Series[0].Instances[0].Rows != 512 || got.Series[0].Instances[0].Frames != 1 {
		t.Fatalf("detail: %+v %v", got, err)
	}
	res, err := st.DS.Query(ctx, query.Query{Prefix: IndexNamespace})
	if err != nil {
		t.Fatal(err)
	}
	for r := range res.Next() {
		for _, secret := range []string{"P-SECRET-1", "ACC-SECRET-9", "Doe^Jane", "1.2.3.1.1"} {
			if bytes.Contains(r.Value, []byte(secret)) || bytes.Contains([]byte(r.Key), []byte(secret)) {
				t.Errorf("%s in clear under %s", secret, r.Key)
			}
		}
	}
	res.Close()
	if err := ix.Delete(ctx, "rec"); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Study(ctx, "rec"); err == nil {
		t.Fatal("detail survived Delete")
	}
}
