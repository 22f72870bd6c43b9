package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
)

// The test binary doubles as the medmesh binary: with MEDMESH_AS_MAIN=1 it
// runs main(), so the end-to-end tests exercise the real CLI and a real
// daemon process without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("MEDMESH_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type cli struct {
	t    *testing.T
	repo string
	log  string // the log of the daemon startDaemon started last
}

// logLines returns the lines of the daemon's log (startDaemon) that hold
// every one of words, for a failing test to show what the daemon did.
func (c *cli) logLines(words ...string) string {
	b, err := os.ReadFile(c.log)
	if err != nil {
		return fmt.Sprintf("(no daemon log: %v)", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func (c *cli) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"--repo", c.repo}, args...)...)
	cmd.Env = append(os.Environ(), "MEDMESH_AS_MAIN=1")
	// No controlling terminal, as under cron or CI: a command that would
	// prompt (a backup's passphrase) must fail, not wait for a person.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd
}

// run runs the CLI and returns stdout, stderr and the exit code.
func (c *cli) run(args ...string) (string, string, int) {
	c.t.Helper()
	cmd := c.cmd(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func (c *cli) must(args ...string) string {
	c.t.Helper()
	out, errs, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("medmesh %v: exit %d: %s", args, code, errs)
	}
	return out
}

// startDaemon starts `medmesh daemon` and waits for its api file.
func (c *cli) startDaemon(flags ...string) *exec.Cmd {
	c.t.Helper()
	cmd := c.cmd(append([]string{"daemon"}, flags...)...)
	c.log = filepath.Join(c.t.TempDir(), "daemon.log")
	logf, _ := os.Create(c.log)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	// A test that fails before it stops its daemon must not leave it
	// running (one stayed up for an hour after a failed TestBackupRestore).
	// The daemon a test stopped itself has been waited for.
	c.t.Cleanup(func() {
		if cmd.ProcessState != nil {
			return
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		// A killed daemon leaves a stale api file: wait until the API answers.
		if cl, err := api.ClientForRepo(c.repo); err == nil {
			var id api.IDInfo
			if cl.Do(context.Background(), "GET", api.Prefix+"/id", nil, &id) == nil {
				return cmd
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(logf.Name())
	c.t.Fatalf("daemon did not become ready:\n%s", b)
	return nil
}

func TestCLIWithoutDaemon(t *testing.T) {
	c := &cli{t: t, repo: filepath.Join(t.TempDir(), "n")}
	if _, errs, code := c.run("ls"); code == 0 || !strings.Contains(errs, "medmesh init") {
		t.Fatalf("ls without repo: %d %s", code, errs)
	}
	c.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0")
	if _, errs, code := c.run("init"); code == 0 || !strings.Contains(errs, "refusing") {
		t.Fatalf("second init: %d %s", code, errs)
	}
	var id struct {
		PeerID string   `json:"peer"`
		Addrs  []string `json:"addrs"`
		KEM    string   `json:"kem_public_key"`
	}
	if err := json.Unmarshal([]byte(c.must("id", "--json")), &id); err != nil || !strings.HasPrefix(id.PeerID, "12D3Koo") || id.KEM == "" || len(id.Addrs) == 0 {
		t.Fatalf("id --json: %+v %v", id, err)
	}
	if _, errs, code := c.run("ls"); code == 0 || !strings.Contains(errs, "medmesh daemon") {
		t.Fatalf("ls without daemon: %d %s", code, errs)
	}
	if _, errs, code := c.run("daemon"); code == 0 || !strings.Contains(errs, "network create") {
		t.Fatalf("daemon without network: %d %s", code, errs)
	}
	if _, errs, code := c.run("network", "join", "medmesh-invite-1:garbage"); code == 0 || !strings.Contains(errs, "invitation token") {
		t.Fatalf("bad token: %d %s", code, errs)
	}
	for _, f := range []string{"identity.key", "kem.key", "api.token", "config.json"} {
		st, err := os.Stat(filepath.Join(c.repo, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, err, st.Mode())
		}
	}
}

// TestKilledDaemonMidAdd: a daemon killed with SIGKILL in the middle of an
// add leaves the repo usable and every record add had reported intact.
func TestKilledDaemonMidAdd(t *testing.T) {
	dir := t.TempDir()
	c := &cli{t: t, repo: filepath.Join(dir, "clinic")}
	c.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0")
	c.must("network", "create", "--name", "e2e")
	d := c.startDaemon()

	data := make([]byte, 3<<20)
	rand.Read(data)
	src := filepath.Join(dir, "report.bin")
	os.WriteFile(src, data, 0o600)
	var added api.AddResult
	if err := json.Unmarshal([]byte(c.must("add", src, "--json")), &added); err != nil || added.ID == "" || added.Size != int64(len(data)) {
		t.Fatalf("add --json: %+v %v", added, err)
	}

	// Missing file: a clear error, non-zero exit.
	if _, errs, code := c.run("add", filepath.Join(dir, "nope.pdf")); code == 0 || !strings.Contains(errs, "cannot read") {
		t.Fatalf("add missing file: %d %s", code, errs)
	}

	// Start a large add that streams slowly, and kill the daemon in the middle.
	client, err := api.ClientForRepo(c.repo)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 256<<10)
		for i := 0; i < 400; i++ {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		pw.Close()
	}()
	addErr := make(chan error, 1)
	go func() {
		var res api.AddResult
		addErr <- client.Upload(context.Background(), api.Prefix+"/records?name=big", pr, 100<<20, &res)
	}()
	time.Sleep(700 * time.Millisecond)
	d.Process.Signal(syscall.SIGKILL)
	d.Wait()
	pr.CloseWithError(io.ErrClosedPipe)
	if err := <-addErr; err == nil {
		t.Fatal("add survived its daemon being killed")
	}

	// Restart: the repo opens, the reported record is intact, the ledger verifies.
	d = c.startDaemon()
	defer func() { d.Process.Signal(syscall.SIGTERM); d.Wait() }()
	out := filepath.Join(dir, "out.bin")
	c.must("get", added.ID, "-o", out)
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, data) {
		t.Fatal("record changed after the crash")
	}
	c.must("ledger", "verify")
	var recs []api.Record
	json.Unmarshal([]byte(c.must("ls", "--json")), &recs)
	if len(recs) != 1 || recs[0].ID != added.ID || recs[0].Owner == "" {
		t.Fatalf("ls after crash: %+v", recs)
	}

	// A failed get writes nothing.
	bad := filepath.Join(dir, "bad.bin")
	if _, _, code := c.run("get", "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "-o", bad); code == 0 {
		t.Fatal("get of an unknown record succeeded")
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, "*bad.bin*")); len(ents) != 0 {
		t.Fatalf("failed get left %v", ents)
	}

	// The API needs the token and is on loopback.
	client, err = api.ClientForRepo(c.repo)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(client.Base + api.Prefix + "/records")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API without token: %d", resp.StatusCode)
	}
	if !strings.HasPrefix(client.Base, "http://127.0.0.1:") {
		t.Fatalf("API not on loopback: %s", client.Base)
	}

	// SIGTERM shuts down cleanly and removes the api file.
	d.Process.Signal(syscall.SIGTERM)
	if err := d.Wait(); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
	if _, err := os.Stat(filepath.Join(c.repo, "api")); !os.IsNotExist(err) {
		t.Fatal("api file left after shutdown")
	}
	d = c.startDaemon() // for the deferred stop
}

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("demo runs three nodes")
	}
	var out bytes.Buffer
	if err := runDemo(context.Background(), t.TempDir(), &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{"identical: true", "was refused: no key for this record", "audit trail", "byte for byte identical: true", "de-identified copy"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
