package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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

// TestHealthAndMetrics: a node alone in its network that owns a record
// wanting two copies is unhealthy: `health` exits 7, prints its report on
// stdout (with --json too) and the problem on stderr. The daemon's metrics
// name API routes by pattern, never by raw path, and carry the gauges
// operators graph and the build info `version` prints.
func TestHealthAndMetrics(t *testing.T) {
	c, dir := oneNode(t)
	src := filepath.Join(dir, "report.json")
	os.WriteFile(src, []byte(`{"resourceType":"DiagnosticReport"}`), 0o600)
	id := strings.TrimSpace(c.must("add", src, "--replicas", "2"))
	out, errs, code := c.run("health", "--json")
	var h api.Health
	if err := json.Unmarshal([]byte(out), &h); err != nil || code != exitUnavailable {
		t.Fatalf("health: exit %d, %v\n%s\n%s", code, err, out, errs)
	}
	if h.Healthy || h.OwnedCount != 1 || h.UnderReplicatedCount != 1 || h.UnderReplicatedIDs[0] != id || !h.Member || h.MemberCount != 0 ||
		len(h.Problems) != 1 || !strings.Contains(errs, `"error":"unhealthy: 1 of the 1 records`) {
		t.Fatalf("health: %+v\nstderr: %s", h, errs)
	}
	out, _, code = c.run("health")
	if code != exitUnavailable || !strings.Contains(out, "UNHEALTHY") || !strings.Contains(out, "under-replicated: "+id) {
		t.Fatalf("health (text): exit %d\n%s", code, out)
	}
	c.must("status", id)
	cl, err := api.ClientForRepo(c.repo)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cl.HTTP.Do(mustReq(t, cl, "/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	metrics := string(b)
	var v api.VersionInfo
	json.Unmarshal([]byte(c.must("version", "--json")), &v)
	for _, want := range []string{
		`medmesh_api_requests_total{code="200",method="GET",route="/api/v1/records/{id}/status"} 1`,
		`medmesh_api_requests_total{code="200",method="GET",route="/api/v1/health"} 2`,
		`medmesh_api_request_duration_seconds_count{method="GET",route="/api/v1/health"} 2`,
		`medmesh_build_info{commit="` + v.Commit + `",go="` + v.Go + `",version="` + v.Version + `"} 1`,
		"medmesh_network_members 1", "medmesh_p2p_connected_peers 0", "medmesh_owned_records 1",
		"medmesh_owned_under_replicated_records 1", "medmesh_datastore_disk_used_bytes ", "medmesh_datastore_disk_free_bytes ",
		"medmesh_record_added_bytes_total ",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(metrics, id) {
		t.Error("a record ID is in a metric label")
	}
	// Every medmesh metric ends in its unit (or _total after it).
	for _, line := range strings.Split(metrics, "\n") {
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		if strings.HasPrefix(line, "#") || !strings.HasPrefix(name, "medmesh_") {
			continue
		}
		for _, unit := range []string{"_bytes_", "_seconds_"} {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_total"), "_bucket"), "_sum"), "_count")
			if strings.Contains(base+"_", unit) && !strings.HasSuffix(base, strings.TrimSuffix(unit, "_")) {
				t.Errorf("metric %s: its unit is not last", name)
			}
		}
	}
}

func mustReq(t *testing.T, cl *api.Client, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", cl.Base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cl.Token)
	return req
}

// TestSystemdUnit checks contrib/systemd/medmesh.service with systemd's own
// tools, where they are installed: `systemd-analyze verify` accepts it and
// `systemd-analyze security` rates its exposure at most 2.0 (it is 1.1).
func TestSystemdUnit(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd)")
	}
	b, err := os.ReadFile("../../contrib/systemd/medmesh.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify wants the binary to exist: point ExecStart at this one.
	unit := filepath.Join(t.TempDir(), "medmesh.service")
	os.WriteFile(unit, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/medmesh", os.Args[0])), 0o644)
	if out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput(); err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command("systemd-analyze", "security", "--offline=yes", unit).CombinedOutput()
	if err != nil {
		t.Skipf("systemd-analyze security --offline needs systemd 250 or later: %v", err)
	}
	_, score, ok := strings.Cut(string(out), "Overall exposure level for medmesh.service: ")
	var exposure float64
	if _, err := fmt.Sscanf(score, "%f", &exposure); !ok || err != nil || exposure > 2.0 {
		t.Fatalf("exposure %v (%v):\n%s", exposure, err, out)
	}
	t.Logf("systemd-analyze security: exposure %.1f", exposure)
}
