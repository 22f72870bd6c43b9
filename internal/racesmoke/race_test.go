package racesmoke

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// minTime is the time left before this binary's deadline (go test
// -timeout) below which the race run does not start: with go test's
// default of 10 minutes it would be cut off.
const minTime = 25 * time.Minute

// slowUnderRace are tests that assert what the kernel does within a few
// seconds (writeback of dirty pages): under the detector, with the whole
// suite sharing two cores, they measure the load, not the code.
var slowUnderRace = []string{"TestWritebackStartsEarly"}

func TestNoDataRaces(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the module's tests under the race detector")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	list := exec.Command("go", "list", "./...")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []string
	for _, p := range strings.Fields(string(out)) {
		switch {
		case strings.Contains(p, "/scripts/"),
			strings.HasSuffix(p, "/cmd/medmesh"),
			strings.HasSuffix(p, "/internal/fuzzsmoke"),
			strings.HasSuffix(p, "/internal/racesmoke"):
			continue
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 30 {
		t.Fatalf("found only %d packages below %s", len(pkgs), root)
	}
	if only := os.Getenv("MEDMESH_RACE_PKGS"); only != "" {
		pkgs = strings.Fields(only) // e.g. "./sharing/ledger ./node/records"
	}
	// One package at a time (-p 1), at the lowest priority (below): the
	// rest of the suite, whose tests have deadlines of their own, goes
	// first; 12-15 minutes on two cores beside it.
	timeout := 40 * time.Minute
	if d, ok := t.Deadline(); ok {
		left := time.Until(d)
		if left < minTime {
			t.Skipf("the race run needs %v and this test binary has %v left: run go test -timeout 45m ./... (the README's and CI's command)", minTime, left.Round(time.Minute))
		}
		timeout = min(timeout, left-time.Minute)
	}
	start := time.Now()
	args := append([]string{"test", "-race", "-count=1", "-p=1", "-timeout=" + timeout.String(), "-skip=^(" + strings.Join(slowUnderRace, "|") + ")$"}, pkgs...)
	// At the lowest priority: the detector's builds and tests take the
	// cores only when the rest of the suite leaves them idle, so its
	// tests' deadlines see the machine they saw without this run (seen:
	// a ledger test's one-minute adoption wait missed beside it).
	name := "go"
	if nice, err := exec.LookPath("nice"); err == nil {
		name, args = nice, append([]string{"-n", "19", "go"}, args...)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = root
	cmd.Env = env()
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err = cmd.Run()
	text := buf.String()
	if strings.Contains(text, "-race requires cgo") || strings.Contains(text, "race detector not supported") {
		t.Skipf("no race detector here (it needs cgo and a C compiler: .ci/run installs gcc): %s", firstLine(text))
	}
	races := strings.Count(text, "WARNING: DATA RACE")
	switch {
	case races > 0 || strings.Contains(text, "race detected during execution of test"):
		t.Fatalf("%d data race report(s) under go test -race:\n%s", races, excerpt(text))
	case strings.Contains(text, "panic: "):
		t.Fatalf("a panic under go test -race:\n%s", excerpt(text))
	case err != nil:
		// No race reported: a test that failed only under the detector's
		// slowdown (the ordinary run of the suite judges it).
		t.Logf("tests failed under -race without a race report or a panic (%v); the ordinary run judges them:\n%s", err, failures(text))
	}
	t.Logf("%d packages under the race detector in %v", len(pkgs), time.Since(start).Round(time.Second))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// failures returns the FAIL and --- FAIL lines of go test's output, with
// the line after each "--- FAIL" (the reason).
func failures(s string) string {
	var out []string
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "FAIL") || strings.HasPrefix(strings.TrimSpace(l), "--- FAIL") {
			out = append(out, l)
			if strings.HasPrefix(strings.TrimSpace(l), "--- FAIL") && i+1 < len(lines) {
				out = append(out, lines[i+1])
			}
		}
	}
	return strings.Join(out, "\n")
}

// excerpt keeps go test's output whole up to 256 KiB, else its first
// race reports and the failures.
func excerpt(s string) string {
	const limit = 256 << 10
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "\n[...]\n" + failures(s[limit:])
}

// env is this process's environment without GORACE: the nested go test
// must write its race reports to its output, which this test reads, not
// to a log_path set for the suite.
func env() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GORACE=") {
			out = append(out, kv)
		}
	}
	return out
}
