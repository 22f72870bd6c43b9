package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
)

func stopDaemon(d *exec.Cmd) {
	d.Process.Signal(syscall.SIGTERM)
	d.Wait()
}

// TestReplicationGraceFromConfig is issue #13's repair check through the
// real binary: five daemons whose replication.grace is 5 s (and
// replication.interval 1 s), set with `config set` before they start. A
// record with three replicas is held by its owner and two others; both
// others are stopped; the two remaining members take their places within a
// minute (with the default grace, 10 minutes, nothing would move).
func TestReplicationGraceFromConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("runs five daemons")
	}
	dir := t.TempDir()
	owner := &cli{t: t, repo: filepath.Join(dir, "owner")}
	owner.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--org", "owner")
	owner.must("network", "create", "--name", "e2e-grace")
	nodes := []*cli{owner}
	daemons := map[string]*exec.Cmd{}
	ids := map[string]*cli{}
	for _, name := range []string{"", "b", "c", "d", "e"} {
		n := owner
		if name != "" {
			n = owner.invite(t, dir, name, "org "+name)
			nodes = append(nodes, n)
		}
		n.must("config", "set", "replication.grace", "5s")
		n.must("config", "set", "replication.interval", "1s")
		if out := n.must("config", "show", "replication.grace"); !strings.Contains(out, "5s") {
			t.Fatalf("config show: %s", out)
		}
		daemons[n.repo] = n.startDaemon()
		ids[n.peerID(t)] = n
	}
	t.Cleanup(func() {
		for _, d := range daemons {
			stopDaemon(d)
		}
	})
	// Every member knows every key before the record is added.
	for _, n := range nodes {
		n.retryUntil(30*time.Second, func(out string) bool { return strings.Count(out, `"peer"`) == 5 }, "members", "--json")
	}
	src := filepath.Join(dir, "report.json")
	os.WriteFile(src, []byte(`{"resourceType":"DiagnosticReport","status":"final"}`), 0o600)
	var added api.AddResult
	json.Unmarshal([]byte(owner.must("add", src, "--replicas", "3", "--json")), &added)
	status := func() api.Status {
		var st api.Status
		json.Unmarshal([]byte(owner.must("status", added.ID, "--json")), &st)
		return st
	}
	deadline := time.Now().Add(60 * time.Second)
	st := status()
	for len(st.Reachable) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the record never reached 3 holders: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
		st = status()
	}
	first := slices.Clone(st.Holders)
	ownerID := owner.peerID(t)
	var stopped []string
	for _, h := range first {
		if h != ownerID {
			stopDaemon(daemons[ids[h].repo])
			delete(daemons, ids[h].repo)
			stopped = append(stopped, h)
		}
	}
	if len(stopped) != 2 {
		t.Fatalf("holders %v", first)
	}
	t0 := time.Now()
	for {
		st = status()
		fresh := 0
		for _, h := range st.Reachable {
			if !slices.Contains(first, h) {
				fresh++
			}
		}
		if fresh == 2 {
			break
		}
		if time.Since(t0) > time.Minute {
			t.Fatalf("not repaired a minute after two of three holders stopped: %+v", st)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("repaired %.1f s after two of three holders stopped (grace 5 s): holders now %v", time.Since(t0).Seconds(), st.Reachable)
}

// retryUntil runs the command until it exits 0 and ok accepts its output.
func (c *cli) retryUntil(d time.Duration, ok func(string) bool, args ...string) string {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		out, errs, code := c.run(args...)
		if code == 0 && ok(out) {
			return out
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("medmesh %v: exit %d: %s\n%s", args, code, errs, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
