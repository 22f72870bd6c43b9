package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
)

// TestKeysRotateCLI is issue #13's key rotation, through the real binary
// and real daemons: after the grantee rotates its key-wrapping key, it
// still reads what it was granted (its owner's node re-issued the grant,
// sealed to the new key), and with --destroy-old its previous key is
// destroyed once that is done; an owner that rotates still reads its own
// records, after a restart too.
func TestKeysRotateCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two daemons")
	}
	dir := t.TempDir()
	clinic := &cli{t: t, repo: filepath.Join(dir, "clinic")}
	clinic.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--org", "St Mary")
	clinic.must("network", "create", "--name", "e2e-keys")
	daemons := map[*cli]*exec.Cmd{clinic: clinic.startDaemon()}
	lab := clinic.invite(t, dir, "lab", "Central Lab")
	daemons[lab] = lab.startDaemon()
	t.Cleanup(func() {
		for _, d := range daemons {
			d.Process.Signal(syscall.SIGTERM)
			d.Wait()
		}
	})
	labID := lab.peerID(t)
	file := filepath.Join(dir, "report.json")
	os.WriteFile(file, []byte(`{"resourceType":"DiagnosticReport"}`), 0o600)
	var rec api.AddResult
	json.Unmarshal([]byte(clinic.retry("add", file, "--replicas", "1", "--json")), &rec)
	clinic.retry("grant", rec.ID, "--to", labID, "--expires", "720h")
	lab.retry("get", rec.ID, "-o", filepath.Join(dir, "before.json"))

	// The grantee rotates, and asks for its old key to be destroyed.
	var res api.KeyRotateResult
	if err := json.Unmarshal([]byte(lab.must("keys", "rotate", "--destroy-old", "--json")), &res); err != nil {
		t.Fatal(err)
	}
	if res.KeyID == "" || res.Entry == "" || len(res.OldKeys) > 1 {
		t.Fatalf("rotate: %+v", res)
	}
	// The owner's node re-issues the grant sealed to the new key; the old
	// key is destroyed once nothing needs it.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var gs []api.Grant
		json.Unmarshal([]byte(clinic.must("grants", rec.ID, "--json")), &gs)
		old, _ := filepath.Glob(filepath.Join(lab.repo, "kem.*.key"))
		if len(gs) >= 2 && len(old) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s: grants %+v, old keys %v", gs, old)
		}
		time.Sleep(300 * time.Millisecond)
	}
	lab.must("get", rec.ID, "-o", filepath.Join(dir, "after.json"))
	if b, _ := os.ReadFile(filepath.Join(dir, "after.json")); string(b) != `{"resourceType":"DiagnosticReport"}` {
		t.Fatalf("the grantee read %q after rotating", b)
	}
	// Idempotent: nothing more is issued.
	time.Sleep(2 * time.Second)
	var gs []api.Grant
	json.Unmarshal([]byte(clinic.must("grants", rec.ID, "--json")), &gs)
	if len(gs) != 2 {
		t.Fatalf("grants after the rotation: %d, want 2", len(gs))
	}

	// The owner rotates: its record's key is re-sealed, and it reads it,
	// after a restart too.
	var own api.KeyRotateResult
	json.Unmarshal([]byte(clinic.must("keys", "rotate", "--json")), &own)
	if own.RewrappedCount != 1 || len(own.OldKeys) != 1 || own.OldKeys[0].Destroy {
		t.Fatalf("owner's rotation: %+v", own)
	}
	d := daemons[clinic]
	d.Process.Signal(syscall.SIGTERM)
	d.Wait()
	daemons[clinic] = clinic.startDaemon()
	clinic.must("get", rec.ID, "-o", filepath.Join(dir, "own.json"))
	if _, _, code := clinic.run("keys", "rotate", "extra"); code != exitInvalid {
		t.Fatalf("keys rotate extra: exit %d", code)
	}
}
