package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

// chromium finds a Chromium for the console's browser test:
// $MEDMESH_CHROMIUM, else Debian's chromium.
func chromium() string {
	if p := os.Getenv("MEDMESH_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// consoleE2EResult is what scripts/console-e2e/e2e.js prints last.
type consoleE2EResult struct {
	OK       bool     `json:"ok"`
	Failures []string `json:"failures"`
	Shots    []string `json:"shots"`
	Checked  struct {
		Responses int `json:"responses"`
		Pages     int `json:"pages"`
	} `json:"checked"`
	Record   string `json:"record"`
	Download string `json:"download"`
}

// TestConsoleInBrowser drives the web console of two real daemons in
// headless Chromium (scripts/console-e2e: puppeteer-core, axe-core), as the
// issue's done-when says: sign in through `medmesh ui --url` links, add a
// record by upload (progress bar), share it with the other clinic by
// organisation, see it appear there live, read it there, see the read in
// the owner's audit, revoke (and see that live); the grantee's page behind
// a fresh `medmesh ui --url` shows the record by name, the owner's
// organisation and the grant's purpose; the same link a second time, and
// /ui/ without a session, show nothing; every answer carries the CSP; no
// page has a CSP violation, a script error or an axe-core WCAG A/AA
// finding. Imaging too (thumbnails, export, de-identify, a granted study
// opened) and research (a granted dataset fetched, with its progress).
// Screenshots of every page go to $MEDMESH_CONSOLE_SHOTS (else a temporary
// directory); the test logs where. Meanwhile `medmesh watch --json` on the
// grantee prints the same events, one object a line. And `medmesh ui` on a
// terminal with no browser to start prints the link instead.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two daemons and a browser")
	}
	browser := chromium()
	if browser == "" {
		t.Skip("chromium not installed (Debian: apt-get install chromium; or set MEDMESH_CHROMIUM): the console's browser test needs it")
	}
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed: the console's browser test needs Node.js and `npm ci` in scripts/console-e2e")
	}
	script, _ := filepath.Abs(filepath.Join("..", "..", "scripts", "console-e2e"))
	for _, m := range []string{"puppeteer-core", "axe-core"} {
		if _, err := os.Stat(filepath.Join(script, "node_modules", m)); err != nil {
			t.Skipf("%s not installed: run `npm ci` in %s", m, script)
		}
	}

	dir := t.TempDir()
	clinic, lab := &cli{t: t, repo: filepath.Join(dir, "clinic")}, &cli{t: t, repo: filepath.Join(dir, "lab")}
	local := []string{"--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"}
	clinic.must(append([]string{"init", "--org", "St Mary"}, local...)...)
	lab.must(append([]string{"init"}, local...)...)
	clinic.must("network", "create", "--name", "console")
	stop := func(d *exec.Cmd) { d.Process.Signal(syscall.SIGTERM); d.Wait() }
	d := clinic.startDaemon()
	t.Cleanup(func() { stop(d) })
	labID := decode[api.IDInfo](t, lab.must("id", "--json")).Peer
	clinicID := decode[api.IDInfo](t, clinic.must("id", "--json")).Peer
	inv := decode[api.InviteResult](t, clinic.must("network", "invite", "--peer", labID, "--org", "Central Lab", "--json"))
	lab.must("network", "join", inv.Token)
	d2 := lab.startDaemon()
	t.Cleanup(func() { stop(d2) })
	for _, c := range []*cli{clinic, lab} { // both see both members and keys
		deadline := time.Now().Add(60 * time.Second)
		for {
			ms := decode[[]api.Member](t, c.must("members", "--json"))
			keys := decode[[]api.LedgerEntry](t, c.must("ledger", "log", "--type", ledger.TypeKeyAnnounce, "--json"))
			if len(ms) == 2 && len(keys) == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d members, %d keys", c.repo, len(ms), len(keys))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// The upload (8 MiB: the progress bar has something to show), and a
	// study the clinic imports and shares with the lab from the CLI.
	upload := filepath.Join(dir, "Discharge summary.pdf")
	data := make([]byte, 8<<20)
	rand.Read(data)
	if err := os.WriteFile(upload, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := dicomtest.WriteStudy(filepath.Join(dir, "study"), dicomtest.Options{SeriesPerStudy: 2, InstancesPerSeries: 3, Rows: 32, Cols: 32, Seed: 15}); err != nil {
		t.Fatal(err)
	}
	imp := decode[api.DicomImportResult](t, clinic.must("dicom", "import", filepath.Join(dir, "study"), "--json"))
	if len(imp.Studies) != 1 {
		t.Fatalf("import: %+v", imp)
	}
	study := imp.Studies[0].ID
	clinic.must("grant", study, "--to", labID, "--purpose", "treatment")
	// A research dataset from it, under the patient's consent, granted to
	// the lab, which fetches it from the console.
	clinic.must("consent", "add", "--patient", dicomtest.PatientID(1), "--purpose", "research")
	clinic.must("dataset", "create", "cohort", "--records", study)
	clinic.must("dataset", "grant", "cohort", "--to", labID)
	fetchDir := filepath.Join(dir, "fetched")

	// `medmesh ui` on a terminal without a browser to start (no display,
	// no $BROWSER): it prints the link, with how long it works, exit 0.
	ui := lab.cmd("ui")
	ui.Env = slices.DeleteFunc(ui.Env, func(kv string) bool {
		return strings.HasPrefix(kv, "DISPLAY=") || strings.HasPrefix(kv, "WAYLAND_DISPLAY=") || strings.HasPrefix(kv, "BROWSER=")
	})
	var uiOut, uiErr bytes.Buffer
	ui.Stdout, ui.Stderr = &uiOut, &uiErr
	if err := ui.Run(); err != nil || !strings.Contains(uiOut.String(), "Open this link in a browser on this machine (it works once, until ") ||
		!strings.Contains(uiOut.String(), "  http://127.0.0.1:") || !strings.Contains(uiOut.String(), "/ui/login?code=") {
		t.Fatalf("medmesh ui without a browser: %v\nstdout: %s\nstderr: %s", err, uiOut.String(), uiErr.String())
	}
	if _, err := os.Stat(filepath.Join(lab.repo, "console-login.html")); !os.IsNotExist(err) {
		t.Errorf("medmesh ui without a browser wrote the forwarding page (%v)", err)
	}

	// `medmesh watch --json` on the lab while the browsers work.
	watch := lab.cmd("watch", "--json")
	// Read while the command writes to it (exec copies its output on a
	// goroutine of its own): a locked buffer, not a bytes.Buffer (the race
	// detector's e2e run, scripts/race-e2e.sh, caught the poll below).
	var watchOut, watchErr lockedBuffer
	watch.Stdout, watch.Stderr = &watchOut, &watchErr
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	watchDone := false
	t.Cleanup(func() {
		if !watchDone {
			watch.Process.Kill()
			watch.Wait()
		}
	})

	shots := os.Getenv("MEDMESH_CONSOLE_SHOTS")
	if shots == "" {
		shots = filepath.Join(t.TempDir(), "shots")
	}
	self, _ := os.Executable()
	cfg, _ := json.Marshal(map[string]any{
		"bin": self, "chromium": browser, "shots": shots, "downloads": filepath.Join(dir, "downloads"), "upload": upload,
		"owner":   map[string]string{"repo": clinic.repo, "peer": clinicID, "org": "St Mary"},
		"grantee": map[string]string{"repo": lab.repo, "peer": labID, "org": "Central Lab"},
		"study":   study, "dataset": "cohort", "fetch_dir": fetchDir,
	})
	run := exec.Command(nodeBin, filepath.Join(script, "e2e.js"))
	run.Env = append(os.Environ(), "MEDMESH_AS_MAIN=1", "MEDMESH_CONSOLE_E2E="+string(cfg))
	var stdout, stderr bytes.Buffer
	run.Stdout, run.Stderr = &stdout, &stderr
	timer := time.AfterFunc(10*time.Minute, func() { run.Process.Kill() })
	err = run.Run()
	timer.Stop()
	var res consoleE2EResult
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jerr != nil || err != nil || !res.OK {
		t.Fatalf("the console in Chromium: %v\nfailures:\n  %s\nscreenshots in %s\nscript log:\n%s\nstdout: %s",
			err, strings.Join(res.Failures, "\n  "), shots, stderr.String(), stdout.String())
	}
	t.Logf("console in Chromium: %d pages checked with axe-core, %d answers carried the CSP; %d screenshots in %s",
		res.Checked.Pages, res.Checked.Responses, len(res.Shots), shots)
	if res.Checked.Pages < 10 || res.Checked.Responses < 50 {
		t.Errorf("the script checked too little: %+v", res.Checked)
	}

	// What the browser did, seen from the CLI.
	got, err := os.ReadFile(res.Download)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the grantee's download differs from the upload (%v)", err)
	}
	audit := decode[[]api.AccessEvent](t, clinic.must("audit", res.Record, "--json"))
	attested := false
	for _, a := range audit {
		attested = attested || a.Reader == labID && len(a.AttestedBy) > 0 && a.Purpose == "treatment"
	}
	if !attested {
		t.Errorf("the owner's audit lacks the grantee's attested read: %+v", audit)
	}
	if csv, err := os.ReadFile(filepath.Join(fetchDir, "manifest.csv")); err != nil || bytes.Count(csv, []byte(".dcm")) != 6 {
		t.Errorf("the dataset fetched from the console: %v\n%s", err, csv)
	}
	if gs := decode[[]api.Grant](t, clinic.must("grants", res.Record, "--json")); len(gs) != 0 {
		t.Errorf("grants after the revoke: %+v", gs)
	}

	// `medmesh watch --json`: one object a line, the share and the
	// revoke, named, from the owner's organisation; exit 0 on SIGINT.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(watchOut.String(), `"revoked"`) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	watch.Process.Signal(os.Interrupt)
	werr := watch.Wait()
	watchDone = true
	if werr != nil {
		t.Errorf("watch after SIGINT: %v\n%s", werr, watchErr.String())
	}
	var types []string
	sc := bufio.NewScanner(strings.NewReader(watchOut.String())) // the command has exited
	for sc.Scan() {
		var ev api.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("watch printed a line that is not one JSON object: %q", sc.Text())
		}
		if ev.ID != res.Record {
			continue
		}
		types = append(types, ev.Type)
		if ev.Name != filepath.Base(upload) || ev.Owner != clinicID || ev.OwnerOrg != "St Mary" || ev.Grantee != labID {
			t.Errorf("watch event: %+v", ev)
		}
		if ev.Type == api.EventShared && (ev.Purpose != "treatment" || ev.Expires.IsZero()) {
			t.Errorf("shared event: %+v", ev)
		}
	}
	if fmt.Sprint(types) != "[shared revoked]" {
		t.Errorf("watch printed %v for the record, want [shared revoked]:\n%s", types, watchOut.String())
	}
}

// lockedBuffer is a bytes.Buffer safe to read while a command writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
