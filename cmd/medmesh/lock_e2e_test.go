package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medmesh/medmesh/node/api"
)

// TestSecondDaemonLeavesFirstUsable: a second `medmesh daemon` on a repo
// whose daemon runs fails at once, with exit 6 and a message naming the
// running daemon's pid, and touches nothing: the first keeps its api file
// and answers as before.
func TestSecondDaemonLeavesFirstUsable(t *testing.T) {
	c, dir := oneNode(t)
	apiFile := filepath.Join(c.repo, "api")
	before, err := os.ReadFile(apiFile)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "note.txt")
	os.WriteFile(src, []byte("note"), 0o600)
	id := strings.TrimSpace(c.must("add", src))

	pidb, _ := os.ReadFile(filepath.Join(c.repo, "repo.lock"))
	pid := strings.TrimSpace(string(pidb))
	for _, asJSON := range []bool{false, true} {
		args := []string{"daemon"}
		if asJSON {
			args = append(args, "--json")
		}
		_, errs, code := c.run(args...)
		if code != 6 {
			t.Fatalf("second daemon (json %v): exit %d, want 6: %s", asJSON, code, errs)
		}
		want := fmt.Sprintf("another medmesh daemon (pid %s) is running on this repo", pid)
		if !strings.Contains(errs, want) {
			t.Fatalf("second daemon: %q lacks %q", errs, want)
		}
		if asJSON {
			var e api.Error
			if err := json.Unmarshal([]byte(errs), &e); err != nil || e.Hint == "" {
				t.Fatalf("second daemon --json stderr: %q %v", errs, err)
			}
		}
		if after, err := os.ReadFile(apiFile); err != nil || string(after) != string(before) {
			t.Fatalf("second daemon changed the api file: %q -> %q (%v)", before, after, err)
		}
	}

	// The first daemon still answers: id comes from it (a member, with
	// its real listening port), and its record reads back.
	var info api.IDInfo
	if err := json.Unmarshal([]byte(c.must("id", "--json")), &info); err != nil || !info.Member || len(info.Addrs) == 0 || strings.Contains(info.Addrs[0], "/tcp/0/") {
		t.Fatalf("id after a second daemon: %+v %v", info, err)
	}
	out := filepath.Join(dir, "out.txt")
	c.must("get", id, "-o", out)
	if b, _ := os.ReadFile(out); string(b) != "note" {
		t.Fatalf("get after a second daemon: %q", b)
	}
	if p, _ := os.ReadFile(filepath.Join(c.repo, "repo.lock")); strings.TrimSpace(string(p)) != pid || pid == fmt.Sprint(os.Getpid()) {
		t.Fatalf("repo.lock names %q, want the first daemon's pid %s", p, pid)
	}
}
