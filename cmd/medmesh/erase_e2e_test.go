package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

func (c *cli) repoStat(t *testing.T) api.RepoStat {
	t.Helper()
	var st api.RepoStat
	if err := json.Unmarshal([]byte(c.must("repo", "stat", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestDeleteCLI is issue #13's erasure, through the real binary and three
// real daemons: a non-owner cannot erase; the owner's `delete` makes the
// record unreadable everywhere within 60 s ("erased", exit 4), drops it from
// `ls` and the DICOM index, leaves `status` without holders, and every
// holder deletes its blocks; the ledger keeps the entries.
func TestDeleteCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three daemons")
	}
	dir := t.TempDir()
	clinic := &cli{t: t, repo: filepath.Join(dir, "clinic")}
	clinic.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--org", "St Mary")
	clinic.must("network", "create", "--name", "e2e-erase")
	var ds []*cli
	cd := clinic.startDaemon()
	lab := clinic.invite(t, dir, "lab", "Central Lab")
	archive := clinic.invite(t, dir, "archive", "Archive")
	daemons := []*os.Process{cd.Process}
	waits := []func() error{cd.Wait}
	for _, m := range []*cli{lab, archive} {
		d := m.startDaemon()
		daemons, waits = append(daemons, d.Process), append(waits, d.Wait)
		ds = append(ds, m)
	}
	t.Cleanup(func() {
		for i, p := range daemons {
			p.Signal(syscall.SIGTERM)
			waits[i]()
		}
	})
	labID := lab.peerID(t)

	// A study (two versions' worth of one record chain) and a plain record.
	study := filepath.Join(dir, "study")
	if _, err := dicomtest.WriteStudy(study, dicomtest.Options{InstancesPerSeries: 2, Rows: 16, Cols: 16, Modality: "MR", Seed: 7}); err != nil {
		t.Fatal(err)
	}
	var imp api.DicomImportResult
	json.Unmarshal([]byte(clinic.retry("dicom", "import", study, "--json")), &imp)
	if len(imp.Studies) != 1 {
		t.Fatalf("import: %+v", imp)
	}
	studyID := imp.Studies[0].ID
	file := filepath.Join(dir, "note.json")
	os.WriteFile(file, []byte(`{"note":"v1"}`), 0o600)
	var rec api.AddResult
	json.Unmarshal([]byte(clinic.retry("add", file, "--replicas", "2", "--json")), &rec)
	os.WriteFile(file, []byte(`{"note":"v2"}`), 0o600)
	clinic.retry("update", rec.ID, file)
	clinic.retry("grant", rec.ID, "--to", labID)
	lab.retry("get", rec.ID, "-o", filepath.Join(dir, "lab-before.json"))

	// The archive holds a replica of both versions before the erasure.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var st api.Status
		json.Unmarshal([]byte(clinic.must("status", rec.ID, "--json")), &st)
		if len(st.Holders) >= 2 && archive.repoStat(t).HeldRecordCount >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replica on the archive: %+v", st)
		}
		time.Sleep(300 * time.Millisecond)
	}
	held := archive.repoStat(t)

	// Only the owner erases.
	if _, errs, code := lab.run("delete", rec.ID, "--json"); code != exitForbidden || !strings.Contains(errs, "owner") {
		t.Fatalf("delete by a grantee: exit %d %s", code, errs)
	}
	if _, _, code := clinic.run("delete", "nope", "--json"); code != exitInvalid {
		t.Fatalf("delete nope: exit %d", code)
	}

	var del api.DeleteResult
	if err := json.Unmarshal([]byte(clinic.must("delete", rec.ID, "--json")), &del); err != nil {
		t.Fatal(err)
	}
	erased := time.Now()
	if len(del.Versions) != 2 || len(del.Erased) != 2 || del.Entry == "" {
		t.Fatalf("delete: %+v", del)
	}
	if _, errs, code := clinic.run("delete", rec.ID, "--json"); code != exitConflict || !strings.Contains(errs, "already erased") {
		t.Fatalf("second delete: exit %d %s", code, errs)
	}
	var sdel api.DeleteResult
	json.Unmarshal([]byte(clinic.must("delete", studyID, "--json")), &sdel)

	// Within 60 s, on every node: `get` answers erased (exit 4), `ls` does
	// not list it.
	for _, n := range []*cli{clinic, lab, archive} {
		for {
			_, errs, code := n.run("get", rec.ID, "-o", filepath.Join(dir, "after.json"), "--json")
			var ls []api.Record
			json.Unmarshal([]byte(n.must("ls", "--json")), &ls)
			listed := false
			for _, r := range ls {
				listed = listed || r.ID == rec.ID || r.ID == del.Erased[0] || r.ID == del.Erased[1] || r.ID == studyID
			}
			if code == exitNotFound && strings.Contains(errs, "erased") && !listed {
				break
			}
			if time.Since(erased) > 60*time.Second {
				t.Fatalf("%s 60 s after the erasure: get exit %d %s; listed %v", n.repo, code, errs, listed)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	// Status: no holders.
	var st api.Status
	json.Unmarshal([]byte(clinic.must("status", rec.ID, "--json")), &st)
	if !st.Erased || len(st.Holders) != 0 {
		t.Fatalf("status after erasure: %+v", st)
	}
	// The DICOM index no longer finds the study.
	if out := clinic.must("dicom", "query", "--modality", "MR", "--json"); strings.Contains(out, studyID) {
		t.Fatalf("the erased study is still in the DICOM index: %s", out)
	}
	// The archive deleted the replica's blocks (not left as orphans for a
	// later gc), and so did the owner.
	for {
		now := archive.repoStat(t)
		// Ledger entries are blocks too, and more arrive meanwhile (the
		// erasures, batched read claims): count the records' blocks.
		if now.HeldRecordCount == 0 && now.BlockCount-now.LedgerEntryCount <= held.BlockCount-held.LedgerEntryCount-3 && now.OrphanBlockCount == 0 {
			break
		}
		if time.Since(erased) > 60*time.Second {
			t.Fatalf("archive keeps the erased record: before %+v, now %+v", held, now)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if st := clinic.repoStat(t); st.OwnedRecordCount != 0 || st.OrphanBlockCount != 0 {
		t.Fatalf("the owner keeps the erased records: %+v", st)
	}
	// The ledger keeps the audit.
	if out := archive.must("ledger", "log", "--type", "record.erase", "--json"); !strings.Contains(out, "record.erase") {
		t.Fatalf("no erasure on the ledger: %s", out)
	}
	_ = ds
}
