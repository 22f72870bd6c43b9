package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
)

func repoStat(t *testing.T, c *cli) api.RepoStat {
	t.Helper()
	var st api.RepoStat
	if err := json.Unmarshal([]byte(c.must("repo", "stat", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestKilledAddsLeaveNoOrphans is the crash story of issue #11 item 5 with
// real processes: `medmesh add` of a large file, its daemon SIGKILLed while
// the blocks stream in, three times. The restarted daemon removes the
// killed adds' blocks (repo stat: no orphans, the blocks and bytes of
// before), gc finds nothing more, and the record added before reads back.
func TestKilledAddsLeaveNoOrphans(t *testing.T) {
	if testing.Short() {
		t.Skip("writes three large files")
	}
	dir := t.TempDir()
	c := &cli{t: t, repo: filepath.Join(dir, "clinic")}
	c.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0")
	c.must("network", "create", "--name", "e2e")
	d := c.startDaemon()
	defer func() { d.Process.Signal(syscall.SIGTERM); d.Wait() }()

	good := make([]byte, 3<<20+123)
	rand.Read(good)
	goodPath := filepath.Join(dir, "good.bin")
	os.WriteFile(goodPath, good, 0o600)
	goodID := strings.TrimSpace(c.must("add", goodPath))

	big := filepath.Join(dir, "big.bin")
	f, _ := os.Create(big)
	io.CopyN(f, rand.Reader, 192<<20)
	f.Close()

	before := repoStat(t, c)
	if before.OrphanBlockCount != 0 || before.RecordCount != 1 || before.OwnedRecordCount != 1 || before.BlockCount < 6 || before.Size < int64(len(good)) {
		t.Fatalf("repo stat before: %+v", before)
	}
	// The human form says the same.
	if out := c.must("repo", "stat"); !strings.Contains(out, "orphan blocks:  0") || !strings.Contains(out, "records:        1 (1 owned") {
		t.Fatalf("repo stat:\n%s", out)
	}

	killed := 0
	for i := 0; i < 3; i++ {
		add := c.cmd("add", big)
		add.Stdout, add.Stderr = io.Discard, io.Discard
		if err := add.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill the daemon once the add is storing blocks.
		cl, err := api.ClientForRepo(c.repo)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			var st api.RepoStat
			if cl.Do(context.Background(), "GET", api.Prefix+"/repo/stat", nil, &st) == nil && st.RunningAddCount > 0 && st.BlockCount >= before.BlockCount+4 {
				if st.OrphanBlockCount != 0 {
					t.Fatalf("an add in progress counted as orphans: %+v", st)
				}
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		d.Process.Signal(syscall.SIGKILL)
		d.Wait()
		if err := add.Wait(); err != nil {
			killed++
		}
		d = c.startDaemon()
	}
	if killed == 0 {
		t.Fatal("no add was interrupted")
	}

	// The restart cleaned up: nothing but what was there before (and any
	// add that finished before its kill, a record like any other).
	var recs []api.Record
	json.Unmarshal([]byte(c.must("ls", "--json")), &recs)
	after := repoStat(t, c)
	if after.OrphanBlockCount != 0 || after.RunningAddCount != 0 || after.RecordCount != len(recs) {
		t.Fatalf("repo stat after the restarts: %+v (%d records listed)", after, len(recs))
	}
	if len(recs) == 1 && (after.BlockCount != before.BlockCount || after.Size != before.Size) {
		t.Fatalf("killed adds left blocks: before %d blocks, %d bytes; after %d, %d", before.BlockCount, before.Size, after.BlockCount, after.Size)
	}
	var gc api.GCResult
	if err := json.Unmarshal([]byte(c.must("gc", "--json")), &gc); err != nil || gc.RemovedBlockCount != 0 || gc.KeptBlockCount != after.BlockCount || gc.KeptRecordCount != len(recs) {
		t.Fatalf("gc --json after the restarts: %+v %v", gc, err)
	}
	if st := repoStat(t, c); st.OrphanBlockCount != 0 || st.BlockCount != after.BlockCount {
		t.Fatalf("repo stat after gc: %+v", st)
	}
	t.Logf("%d adds killed; %d blocks, %d bytes before; %d, %d after (disk %d -> %d)", killed, before.BlockCount, before.Size, after.BlockCount, after.Size, before.DiskSize, gc.DiskSize)

	out := filepath.Join(dir, "out.bin")
	c.must("get", goodID, "-o", out)
	if got, _ := os.ReadFile(out); !bytes.Equal(got, good) {
		t.Fatal("the record added before the crashes changed")
	}
	for _, r := range recs {
		if r.ID != goodID {
			c.must("get", r.ID, "-o", out) // an add that beat its kill reads back whole
		}
	}
	c.must("ledger", "verify")
}

// repo stat and gc need the daemon, say so, and follow the exit codes.
func TestRepoStatAndGCWithoutDaemon(t *testing.T) {
	c := &cli{t: t, repo: filepath.Join(t.TempDir(), "n")}
	c.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0")
	for _, args := range [][]string{{"repo", "stat", "--json"}, {"gc", "--json"}} {
		out, errs, code := c.run(args...)
		var e api.Error
		if code != 3 || out != "" || json.Unmarshal([]byte(errs), &e) != nil || !strings.Contains(e.Error, "no medmesh daemon") {
			t.Fatalf("%v without a daemon: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	if _, errs, code := c.run("repo", "nope"); code != 2 || !strings.Contains(errs, "stat") {
		t.Fatalf("repo nope: exit %d: %s", code, errs)
	}
	if out := c.must("repo", "stat", "--help"); !strings.Contains(out, "orphan") || !strings.Contains(out, "medmesh repo stat --json") {
		t.Fatalf("repo stat --help:\n%s", out)
	}
}
