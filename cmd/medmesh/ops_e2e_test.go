package main

import (
	"bytes"
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
	"github.com/medmesh/medmesh/sharing/auditlog"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
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

// TestBackupRestore is issue #13's restore check through the real binary:
// the network's founding node (the hardest case: its config names no
// bootstrap peer) adds a report and imports a DICOM study, both held by two
// other members; `backup` writes them an encrypted file; the repo is wiped;
// `restore` and `daemon` bring back the same peer ID, the report (read
// back byte for byte after its blocks came back from the holders) and the
// same `dicom query` results, unattended. Bad inputs: a short passphrase,
// a wrong one, a restore over an existing repo.
func TestBackupRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three daemons")
	}
	dir := t.TempDir()
	owner := &cli{t: t, repo: filepath.Join(dir, "owner")}
	owner.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--org", "St Mary")
	owner.must("network", "create", "--name", "e2e-backup")
	od := owner.startDaemon()
	var others []*exec.Cmd
	var reader *cli // a referral clinic the report is granted to: it holds no replica
	for _, name := range []string{"b", "c", "reader"} {
		m := owner.invite(t, dir, name, "org "+name)
		others = append(others, m.startDaemon())
		reader = m
	}
	t.Cleanup(func() {
		for _, d := range others {
			stopDaemon(d)
		}
	})
	owner.retryUntil(30*time.Second, func(out string) bool { return strings.Count(out, `"peer"`) == 4 }, "members", "--json")
	peer := owner.peerID(t)

	report := []byte(`{"resourceType":"DiagnosticReport","status":"final","conclusion":"restored"}`)
	os.WriteFile(filepath.Join(dir, "report.json"), report, 0o600)
	var added api.AddResult
	json.Unmarshal([]byte(owner.must("add", filepath.Join(dir, "report.json"), "--replicas", "3", "--json")), &added)
	owner.retry("grant", added.ID, "--to", reader.peerID(t), "--json")
	// Two reads: the owner's audit log gets their claims and attestations.
	for i := range 2 {
		reader.retry("get", added.ID, "-o", filepath.Join(dir, fmt.Sprintf("read-%d.json", i)))
	}
	headFile := filepath.Join(dir, "head.txt")
	var head api.AuditHead
	owner.retryUntil(30*time.Second, func(out string) bool {
		return json.Unmarshal([]byte(out), &head) == nil && head.TreeSize >= 2
	}, "audit", "head", "-o", headFile, "--json")
	if _, err := dicomtest.WriteStudy(filepath.Join(dir, "study"), dicomtest.Options{InstancesPerSeries: 3, Rows: 16, Cols: 16, Modality: "CT", Seed: 7}); err != nil {
		t.Fatal(err)
	}
	owner.must("dicom", "import", filepath.Join(dir, "study"))
	if cl, err := api.ClientForRepo(owner.repo); err == nil {
		if resp, err := cl.HTTP.Do(mustReq(t, cl, "/metrics")); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(b), "medmesh_dicom_stored_instances_total 3") {
				t.Errorf("metrics do not count the 3 instances imported")
			}
		}
	}
	query := owner.must("dicom", "query", "--json")
	var hits []api.DicomStudyHit
	if json.Unmarshal([]byte(query), &hits); len(hits) != 1 {
		t.Fatalf("query before: %s", query)
	}
	for _, id := range []string{added.ID, hits[0].ID} {
		owner.retryUntil(60*time.Second, func(out string) bool {
			var st api.Status
			json.Unmarshal([]byte(out), &st)
			return len(st.Reachable) == 3
		}, "status", id, "--json")
	}

	// The export endpoint the backup streams from refuses a size it cannot
	// serve, with an error that says what to ask for.
	if cl, err := api.ClientForRepo(owner.repo); err == nil {
		for _, q := range []string{"size=0", "size=banana", fmt.Sprintf("size=%d", head.TreeSize+1000000)} {
			resp, err := cl.HTTP.Do(mustReq(t, cl, api.Prefix+"/backup/auditlog?"+q))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "tree size") {
				t.Errorf("GET backup/auditlog?%s: %d %s", q, resp.StatusCode, b)
			}
		}
	}
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("correct horse battery staple\n"), 0o600)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("hunter2\n"), 0o600)
	backup := filepath.Join(dir, "owner.age")
	if _, errs, code := owner.run("backup", "-o", backup, "--passphrase-file", short, "--json"); code != exitInvalid || !strings.Contains(errs, "at least 12") {
		t.Fatalf("short passphrase: exit %d %s", code, errs)
	}
	var br api.BackupResult
	json.Unmarshal([]byte(owner.must("backup", "-o", backup, "--passphrase-file", pass, "--json")), &br)
	if br.Peer != peer || br.PeerCount != 3 || br.Size == 0 || !slices.Contains(br.Files, "identity.key") ||
		!slices.Contains(br.Files, "network/psk") || slices.Contains(br.Files, "api.token") || br.AuditLogTreeSize < head.TreeSize {
		t.Fatalf("backup: %+v (audit log of %d entries)", br, head.TreeSize)
	}
	// Never the keys in clear.
	raw, _ := os.ReadFile(backup)
	ident, _ := os.ReadFile(filepath.Join(owner.repo, "identity.key"))
	if !bytes.HasPrefix(raw, []byte("age-encryption.org/v1")) || bytes.Contains(raw, ident) {
		t.Fatal("the backup is not age-encrypted, or holds the identity in clear")
	}

	// After the backup: two more reads, and a head an auditor keeps. The
	// backup does not hold their leaves; the segment written with the head
	// does, a hidden record of the owner's that two other nodes hold.
	for i := 2; i < 4; i++ {
		reader.retry("get", added.ID, "-o", filepath.Join(dir, fmt.Sprintf("read-%d.json", i)))
	}
	laterFile := filepath.Join(dir, "head-later.txt")
	var later api.AuditHead
	owner.retryUntil(60*time.Second, func(out string) bool {
		return json.Unmarshal([]byte(out), &later) == nil && later.TreeSize >= br.AuditLogTreeSize+2
	}, "audit", "head", "-o", laterFile, "--json")
	if later.Segment == "" {
		t.Fatalf("a new head names no segment keeping its order: %+v", later)
	}
	if out := owner.must("audit", "head"); !strings.Contains(out, "order kept in segment "+later.Segment) {
		t.Errorf("audit head does not name its segment:\n%s", out)
	}
	owner.retryUntil(60*time.Second, func(out string) bool {
		var st api.Status
		json.Unmarshal([]byte(out), &st)
		return len(st.Reachable) == 3
	}, "status", later.Segment, "--json")
	if ls := owner.must("ls", "--json"); strings.Contains(ls, later.Segment) || !strings.Contains(ls, added.ID) {
		t.Fatalf("ls lists the segment, or not the report:\n%s", ls)
	}
	var before api.RepoStat
	json.Unmarshal([]byte(owner.must("repo", "stat", "--json")), &before)

	// The disk is lost.
	stopDaemon(od)
	if err := os.RemoveAll(owner.repo); err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(dir, "wrong")
	os.WriteFile(wrong, []byte("incorrect horse battery staple\n"), 0o600)
	if _, errs, code := owner.run("restore", backup, "--passphrase-file", wrong, "--json"); code != exitInvalid || !strings.Contains(errs, "passphrase") {
		t.Fatalf("wrong passphrase: exit %d %s", code, errs)
	}
	if _, err := os.Stat(owner.repo); !os.IsNotExist(err) {
		t.Fatal("a failed restore left a repo")
	}
	var rr api.RestoreResult
	json.Unmarshal([]byte(owner.must("restore", backup, "--passphrase-file", pass, "--json")), &rr)
	if rr.Peer != peer || rr.Repo != owner.repo || rr.AuditLogTreeSize != br.AuditLogTreeSize {
		t.Fatalf("restore: %+v, backup %+v", rr, br)
	}
	if _, errs, code := owner.run("restore", backup, "--passphrase-file", pass, "--json"); code != exitConflict || !strings.Contains(errs, "already holds") {
		t.Fatalf("restore over a repo: exit %d %s", code, errs)
	}
	t0 := time.Now()
	od = owner.startDaemon()
	defer stopDaemon(od)
	if got := owner.peerID(t); got != peer {
		t.Fatalf("restored peer %s, want %s", got, peer)
	}
	out := filepath.Join(dir, "report-restored.json")
	owner.retry("get", added.ID, "-o", out)
	if b, _ := os.ReadFile(out); !bytes.Equal(b, report) {
		t.Fatalf("the restored report reads %q", b)
	}
	owner.retryUntil(90*time.Second, func(out string) bool { return out == query }, "dicom", "query", "--json")
	t.Logf("restored node: report read back and DICOM query equal after %.1f s", time.Since(t0).Seconds())
	// Unattended: the owned records' blocks come back to the node itself,
	// and the restore marker goes once the ledger and index are back.
	owner.retryUntil(90*time.Second, func(out string) bool {
		var st api.RepoStat
		json.Unmarshal([]byte(out), &st)
		_, err := os.Stat(filepath.Join(owner.repo, "restore.json"))
		return st.OwnedRecordCount == before.OwnedRecordCount && st.OrphanBlockCount == 0 && st.BlockCount > 10 && os.IsNotExist(err)
	}, "repo", "stat", "--json")
	owner.retryUntil(60*time.Second, func(string) bool { return true }, "health", "--json")
	t.Logf("restore complete after %.1f s", time.Since(t0).Seconds())
	// The audit log came back in its order: the tree head signed before
	// the disk was lost is consistent with the restored log, as an
	// auditor checks it, and the reads are still proven in it.
	grew := filepath.Join(dir, "grew.json")
	owner.must("audit", "consistency", headFile, "-o", grew, "--json")
	if out := owner.must("audit", "verify-proof", grew, "--head", headFile, "--json"); !strings.Contains(out, `"verified": true`) {
		t.Fatalf("consistency with the head signed before the backup: %s", out)
	}
	// And the head signed after the backup: its leaves came back from the
	// segment in the order it signed, not in the order they synced.
	grewLater := filepath.Join(dir, "grew-later.json")
	owner.must("audit", "consistency", laterFile, "-o", grewLater, "--json")
	if out := owner.must("audit", "verify-proof", grewLater, "--head", laterFile, "--json"); !strings.Contains(out, `"verified": true`) {
		t.Fatalf("consistency with the head signed after the backup: %s", out)
	}
	// The restored node answers with that very head (the segment carried
	// it), not a head of the same size signed again.
	var cons auditlog.ProofFile
	b, _ := os.ReadFile(grewLater)
	if laterNote, _ := os.ReadFile(laterFile); json.Unmarshal(b, &cons) != nil || cons.OldTreeHead != string(laterNote) {
		t.Fatalf("the restored node's head of size %d is not the one it signed before the loss:\n%s\nwant\n%s", later.TreeSize, cons.OldTreeHead, laterNote)
	}
	var proof auditlog.ProofFile
	json.Unmarshal([]byte(owner.must("audit", "prove", added.ID, "--json")), &proof)
	if int64(len(proof.Proofs)) < later.TreeSize {
		t.Fatalf("the restored log proves %d entries about the report, want the %d it held when the disk was lost", len(proof.Proofs), later.TreeSize)
	}
	if ls := owner.must("ls", "--json"); strings.Contains(ls, later.Segment) {
		t.Fatalf("the restored node lists its audit log segment:\n%s", ls)
	}
	if f, ok := od.Stdout.(*os.File); ok {
		log, _ := os.ReadFile(f.Name())
		for _, want := range []string{"restored from a backup", "the ledger has caught up", "fetched back an owned record",
			"the leaves added after the backup are back in their order", "restore complete"} {
			if !bytes.Contains(log, []byte(want)) {
				t.Errorf("the restored daemon's log lacks %q:\n%s", want, log)
			}
		}
	}
}

// TestAnnounceThroughTheDaemon: a node behind NAT sets addresses.announce;
// its daemon advertises that address (`medmesh id` shows the host's
// advertised addresses) and no longer its listen address.
func TestAnnounceThroughTheDaemon(t *testing.T) {
	c := &cli{t: t, repo: filepath.Join(t.TempDir(), "natted")}
	c.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0")
	c.must("config", "set", "addresses.announce", "/ip4/203.0.113.7/tcp/4101")
	c.must("network", "create", "--name", "e2e-nat")
	d := c.startDaemon()
	defer stopDaemon(d)
	var id api.IDInfo
	json.Unmarshal([]byte(c.must("id", "--json")), &id)
	if len(id.Addrs) != 1 || id.Addrs[0] != "/ip4/203.0.113.7/tcp/4101/p2p/"+id.Peer {
		t.Fatalf("advertised %v, want the announce address only", id.Addrs)
	}
}

// TestDaemonProfileContention: `daemon --profile-contention` turns on the
// lock contention and blocking profiles at /debug/pprof (behind the
// token); a daemon started without it samples neither.
func TestDaemonProfileContention(t *testing.T) {
	for _, on := range []bool{false, true} {
		dir := t.TempDir()
		c := &cli{t: t, repo: filepath.Join(dir, "clinic")}
		c.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0")
		c.must("network", "create", "--name", "e2e")
		var flags []string
		if on {
			flags = append(flags, "--profile-contention")
		}
		d := c.startDaemon(flags...)
		cl, err := api.ClientForRepo(c.repo)
		if err != nil {
			t.Fatal(err)
		}
		get := func(path string) string {
			t.Helper()
			resp, err := cl.HTTP.Do(mustReq(t, cl, path))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %s", path, resp.Status)
			}
			return string(b)
		}
		want := "sampling period=0\n"
		if on {
			want = "sampling period=10\n"
		}
		if got := get("/debug/pprof/mutex?debug=1"); !strings.Contains(got, want) {
			t.Errorf("--profile-contention %v: the mutex profile says\n%s", on, got)
		}
		if got := get("/debug/pprof/block?debug=1"); !strings.Contains(got, "--- contention:\n") {
			t.Errorf("the block profile says\n%s", got)
		}
		resp, err := http.Get(cl.Base + "/debug/pprof/mutex?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			t.Errorf("/debug/pprof/mutex without the token: %s", resp.Status)
		}
		d.Process.Signal(syscall.SIGTERM)
		d.Wait()
	}
}
