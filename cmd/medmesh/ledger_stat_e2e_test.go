package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
)

// TestLedgerStatCLI drives `medmesh ledger stat` through the real binary:
// exit 3 without a daemon; a node alone in its network is synced and
// counts its entries; a member that joins catches up to the same entries
// and bytes and says synced; once its only peer is gone, the founder is no
// longer synced (behind on the global scope and the lab's); and a stray
// argument is exit 2.
func TestLedgerStatCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two daemons")
	}
	dir := t.TempDir()
	clinic := &cli{t: t, repo: filepath.Join(dir, "clinic")}
	clinic.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--org", "St Mary")
	clinic.must("network", "create", "--name", "e2e-stat")

	// No daemon: exit 3, one JSON error on stderr.
	out, errs, code := clinic.run("ledger", "stat", "--json")
	if code != exitNoDaemon || out != "" {
		t.Fatalf("stat without daemon: exit %d, stdout %q", code, out)
	}
	var jerr map[string]string
	if err := json.Unmarshal([]byte(errs), &jerr); err != nil || !strings.Contains(jerr["error"], "daemon") {
		t.Fatalf("stat without daemon: stderr %q (%v)", errs, err)
	}

	cd := clinic.startDaemon()
	t.Cleanup(func() { cd.Process.Signal(syscall.SIGTERM); cd.Wait() })
	stat := func(c *cli) api.LedgerStat {
		t.Helper()
		var st api.LedgerStat
		if err := json.Unmarshal([]byte(c.must("ledger", "stat", "--json")), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	// Alone in its network: synced at once, the genesis and its own
	// entries (org statement, key announcement) counted.
	alone := stat(clinic)
	// Its scopes: the global one and its own owner and audit scopes.
	id := clinic.peerID(t)
	if !alone.Synced || alone.Entries < 1 || alone.Size < 100*alone.Entries || !slices.Equal(alone.Scopes, []string{"global", "audit/" + id, "owner/" + id}) {
		t.Fatalf("a lone node's stat: %+v", alone)
	}
	if raw := clinic.must("ledger", "stat", "--json"); !strings.Contains(raw, `"behind": []`) {
		t.Fatalf("a synced node's behind is not an empty list: %s", raw)
	}
	text := clinic.must("ledger", "stat")
	for _, want := range []string{"entries  ", "bytes    ", "scopes   global", "synced   yes"} {
		if !strings.Contains(text, want) {
			t.Errorf("text output lacks %q:\n%s", want, text)
		}
	}

	lab := clinic.invite(t, dir, "lab", "Central Lab")
	ld := lab.startDaemon()
	labUp := true
	t.Cleanup(func() {
		if labUp {
			ld.Process.Signal(syscall.SIGTERM)
			ld.Wait()
		}
	})
	src := filepath.Join(dir, "report.json")
	os.WriteFile(src, []byte(`{"resourceType":"DiagnosticReport","status":"final"}`), 0o600)
	clinic.retry("add", src, "--replicas", "1")

	// The lab catches up: the same entries and bytes as the clinic, synced.
	var c, l api.LedgerStat
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, l = stat(clinic), stat(lab)
		if c.Synced && l.Synced && c.Entries == l.Entries && c.Size == l.Size && c.Entries > alone.Entries {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lab did not catch up: clinic %+v, lab %+v", c, l)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Its only peer gone, the clinic cannot say it is caught up: not with
	// the global scope, nor with the lab's scopes, which it follows (the
	// lab's replica group) and no one else can bring.
	ld.Process.Signal(syscall.SIGTERM)
	ld.Wait()
	labUp = false
	labID := lab.peerID(t)
	deadline = time.Now().Add(30 * time.Second)
	for {
		c = stat(clinic)
		if !c.Synced && slices.Equal(c.Behind, []string{"global", "audit/" + labID, "owner/" + labID}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the clinic with its only peer stopped: %+v", c)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if text := clinic.must("ledger", "stat"); !strings.Contains(text, "synced   no: catching up with global, audit/"+labID) {
		t.Errorf("text output without peers:\n%s", text)
	}

	if _, _, code := clinic.run("ledger", "stat", "extra", "--json"); code != exitInvalid {
		t.Errorf("stat extra: exit %d, want %d", code, exitInvalid)
	}
}
