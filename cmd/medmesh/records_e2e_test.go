package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/medmesh/medmesh/node/api"
)

// oneNode initialises a repo, creates a network and starts its daemon
// (stopped with SIGTERM when the test ends).
func oneNode(t *testing.T) (*cli, string) {
	t.Helper()
	dir := t.TempDir()
	c := &cli{t: t, repo: filepath.Join(dir, "clinic")}
	c.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0")
	c.must("network", "create", "--name", "e2e")
	d := c.startDaemon()
	t.Cleanup(func() { d.Process.Signal(syscall.SIGTERM); d.Wait() })
	return c, dir
}

// TestEmptyFileRecord: an empty file is a record like any other: add,
// ls and get (a 0-byte file) through the real CLI and daemon.
func TestEmptyFileRecord(t *testing.T) {
	c, dir := oneNode(t)
	src := filepath.Join(dir, "empty.txt")
	if err := os.WriteFile(src, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, code := c.run("add", src, "--json")
	if code != 0 {
		t.Fatalf("add empty file: exit %d: %s", code, errs)
	}
	var added api.AddResult
	if err := json.Unmarshal([]byte(out), &added); err != nil || added.ID == "" || added.Size != 0 || added.Version != 1 {
		t.Fatalf("add --json: %+v %v\n%s", added, err, out)
	}
	var recs []api.Record
	if err := json.Unmarshal([]byte(c.must("ls", "--json")), &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ID != added.ID || recs[0].Size != 0 {
		t.Fatalf("ls --json: %+v", recs)
	}
	got := filepath.Join(dir, "got.txt")
	var res struct {
		ID   string `json:"id"`
		File string `json:"file"`
		Size *int64 `json:"size"`
	}
	if err := json.Unmarshal([]byte(c.must("get", added.ID, "-o", got, "--json")), &res); err != nil || res.ID != added.ID || res.Size == nil || *res.Size != 0 {
		t.Fatalf("get --json: %+v %v", res, err)
	}
	st, err := os.Stat(got)
	if err != nil || st.Size() != 0 || !st.Mode().IsRegular() {
		t.Fatalf("get wrote %v %v", st, err)
	}
}

// TestGetIntoDirectory: `get -o DIR` with an existing directory writes the
// record into it under the record's name, as cp does, and says where.
func TestGetIntoDirectory(t *testing.T) {
	c, dir := oneNode(t)
	data := []byte("radiology report, 2 pages\n")
	src := filepath.Join(dir, "scan report (é).pdf")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(c.must("add", src))
	outDir := filepath.Join(dir, "downloads")
	if err := os.Mkdir(outDir, 0o700); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(outDir, "scan report (é).pdf")

	out := c.must("get", id, "-o", outDir)
	if !strings.Contains(out, want) {
		t.Fatalf("get -o DIR does not say where it wrote: %q", out)
	}
	if got, err := os.ReadFile(want); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get -o DIR: %v", err)
	}

	// Again, with --json: the file is replaced, and "file" names it.
	os.WriteFile(want, []byte("stale"), 0o600)
	var res struct {
		ID   string `json:"id"`
		File string `json:"file"`
		Size int64  `json:"size"`
	}
	if err := json.Unmarshal([]byte(c.must("get", id, "-o", outDir+"/", "--json")), &res); err != nil || res.File != want || res.Size != int64(len(data)) || res.ID != id {
		t.Fatalf("get -o DIR --json: %+v %v", res, err)
	}
	if got, _ := os.ReadFile(want); !bytes.Equal(got, data) {
		t.Fatal("get -o DIR did not replace the stale file")
	}
	if ents, _ := os.ReadDir(outDir); len(ents) != 1 {
		t.Fatalf("get -o DIR left %d entries in the directory", len(ents))
	}

	// A directory in the way of the file: a clear error, nothing written.
	os.Remove(want)
	os.Mkdir(want, 0o700)
	if _, errs, code := c.run("get", id, "-o", outDir); code != 2 || !strings.Contains(errs, "is a directory") {
		t.Fatalf("get into a directory whose entry is a directory: %d %s", code, errs)
	}
}

// TestAddFromPipe: a pipe's size is unknown, not 0: `medmesh add` of a
// FIFO (or /dev/stdin) stores what comes through it, whole.
func TestAddFromPipe(t *testing.T) {
	c, dir := oneNode(t)
	fifo := filepath.Join(dir, "report.pdf")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no FIFOs here: %v", err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 200<<10) // 3.2 MiB
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		f.Write(data)
		f.Close()
	}()
	var added api.AddResult
	if err := json.Unmarshal([]byte(c.must("add", fifo, "--json")), &added); err != nil || added.Size != int64(len(data)) {
		t.Fatalf("add of a FIFO: %+v %v", added, err)
	}
	out := filepath.Join(dir, "out.pdf")
	c.must("get", added.ID, "-o", out)
	if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
		t.Fatal("the piped record does not read back")
	}
}
