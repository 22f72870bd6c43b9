package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
)

// metric reads one counter of a node's /metrics (0 if absent).
func (c *cli) metric(t *testing.T, name string) float64 {
	t.Helper()
	cl, err := api.ClientForRepo(c.repo)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", cl.Base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+cl.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func (c *cli) members(t *testing.T) map[string]api.Member {
	t.Helper()
	var ms []api.Member
	if err := json.Unmarshal([]byte(c.must("members", "--json")), &ms); err != nil {
		t.Fatal(err)
	}
	out := map[string]api.Member{}
	for _, m := range ms {
		out[m.Peer] = m
	}
	return out
}

// TestNetworkRemoveCLI is issue #13's removal, through the real binary and
// three real daemons: after `network remove` the removed member cannot read
// a record it was granted, is no longer listed, and once the network's key
// has switched it cannot even reconnect; the remaining members switch keys
// without their daemons stopping, and a restarted one reconnects under the
// new key.
func TestNetworkRemoveCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three daemons")
	}
	dir := t.TempDir()
	clinic := &cli{t: t, repo: filepath.Join(dir, "clinic")}
	clinic.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--org", "St Mary")
	clinic.must("network", "create", "--name", "e2e-remove")
	cd := clinic.startDaemon()
	t.Cleanup(func() { cd.Process.Signal(syscall.SIGTERM); cd.Wait() })
	lab := clinic.invite(t, dir, "lab", "Central Lab")
	research := clinic.invite(t, dir, "research", "Uni Research")
	daemons := map[*cli]*exec.Cmd{}
	for _, m := range []*cli{lab, research} {
		daemons[m] = m.startDaemon()
	}
	t.Cleanup(func() {
		for _, d := range daemons {
			d.Process.Signal(syscall.SIGTERM)
			d.Wait()
		}
	})
	labID, researchID := lab.peerID(t), research.peerID(t)

	// Every node lists every organisation given at init.
	want := map[string]string{clinic.peerID(t): "St Mary", labID: "Central Lab", researchID: "Uni Research"}
	for _, n := range []*cli{clinic, lab, research} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			ms := n.members(t)
			ok := len(ms) == 3
			for p, org := range want {
				ok = ok && ms[p].Org == org
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s lists %+v", n.repo, ms)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	file := filepath.Join(dir, "report.json")
	os.WriteFile(file, []byte(`{"resourceType":"DiagnosticReport","status":"final"}`), 0o600)
	var rec api.AddResult
	json.Unmarshal([]byte(clinic.retry("add", file, "--replicas", "1", "--json")), &rec)
	clinic.retry("grant", rec.ID, "--to", labID)
	clinic.retry("grant", rec.ID, "--to", researchID)
	out := filepath.Join(dir, "lab.json")
	lab.retry("get", rec.ID, "-o", out)

	// The removal.
	var rm api.RemoveResult
	if err := json.Unmarshal([]byte(clinic.must("network", "remove", "--peer", labID, "--reason", "contract ended", "--key-overlap", "1s", "--json")), &rm); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	if rm.Peer != labID || rm.Epoch != 1 || len(rm.Unreached) != 0 {
		t.Fatalf("remove: %+v", rm)
	}

	// Within 30 s: the lab cannot read the record it was granted (the
	// holders refuse it, whatever its own ledger says), and the others no
	// longer list it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	get := exec.CommandContext(ctx, os.Args[0], "--repo", lab.repo, "get", rec.ID, "-o", filepath.Join(dir, "after.json"))
	get.Env = append(os.Environ(), "MEDMESH_AS_MAIN=1")
	if err := get.Run(); err == nil {
		t.Fatal("the removed member still reads the record")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "after.json")); err == nil {
		t.Fatalf("the removed member wrote %q", b)
	}
	for _, n := range []*cli{clinic, research} {
		for {
			if _, listed := n.members(t)[labID]; !listed {
				break
			}
			if time.Since(removed) > 30*time.Second {
				t.Fatalf("%s still lists the removed member after 30 s", n.repo)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// After the switch and the overlap, the lab's redials are refused on
	// the key, before any handshake.
	time.Sleep(time.Until(rm.Retire.Add(time.Second)))
	deadline := time.Now().Add(60 * time.Second)
	for clinic.metric(t, "medmesh_p2p_network_key_refused_connections_total") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the removed member's connections were never refused on the network key")
		}
		time.Sleep(500 * time.Millisecond)
	}
	var id api.IDInfo
	json.Unmarshal([]byte(lab.must("id", "--json")), &id)
	if id.PeerCount != 0 {
		t.Fatalf("the removed member has %d peers", id.PeerCount)
	}

	// A remaining member restarted after the switch reconnects under the
	// new key (kept in its repo) and still reads what it was granted.
	rd := daemons[research]
	rd.Process.Signal(syscall.SIGTERM)
	rd.Wait()
	daemons[research] = research.startDaemon()
	research.retry("get", rec.ID, "-o", filepath.Join(dir, "research.json"))
	if b, _ := os.ReadFile(filepath.Join(dir, "research.json")); !strings.Contains(string(b), "DiagnosticReport") {
		t.Fatalf("research read %q", b)
	}
	if b, err := os.ReadFile(filepath.Join(research.repo, "network", "keys")); err != nil || len(b) == 0 {
		t.Fatalf("research keeps no key schedule: %v", err)
	}
}
