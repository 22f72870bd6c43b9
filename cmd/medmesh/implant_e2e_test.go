package main

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
)

// retryJSON runs a command with --json until it exits with code and ready
// accepts its stdout (ledger entries take a moment to reach a node).
func (c *cli) retryJSON(code int, ready func(out string) bool, args ...string) (string, string) {
	c.t.Helper()
	args = append(args, "--json")
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, errs, got := c.run(args...)
		if got == code && (ready == nil || ready(out)) {
			return out, errs
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("medmesh %v: exit %d (want %d)\nstdout: %s\nstderr: %s", args, got, code, out, errs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// grepTree reports the files under dir whose bytes contain s.
func grepTree(t *testing.T, dir, s string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(s)) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// TestImplantTraceabilityCLI is issue #17's implant story through the real
// binary on three real daemons (distributor, hospital, another clinic): a
// UDI with a wrong check digit is refused; the distributor registers and
// transfers a device to the hospital; the other clinic cannot transfer it;
// the hospital implants it into P-4711 and cannot implant it twice; the
// distributor's recall of the lot makes `implant recalls --json` on the
// hospital name P-4711, while the clinic's recall list, its ledger and its
// whole repo (badger files, uncompressed) never contain P-4711, and the
// hospital's repo has it only sealed.
func TestImplantTraceabilityCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three daemons")
	}
	dir := t.TempDir()
	dist := &cli{t: t, repo: filepath.Join(dir, "distributor")}
	dist.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--org", "Spine Supply")
	dist.must("network", "create", "--name", "e2e-implants")
	stop := map[*cli]func(){}
	dd := dist.startDaemon()
	stop[dist] = func() { dd.Process.Signal(syscall.SIGTERM); dd.Wait() }
	t.Cleanup(stop[dist])
	hosp := dist.invite(t, dir, "hospital", "St Mary Hospital")
	clinic := dist.invite(t, dir, "clinic", "Other Clinic")
	for _, c := range []*cli{hosp, clinic} {
		d := c.startDaemon()
		stop[c] = func() { d.Process.Signal(syscall.SIGTERM); d.Wait() }
		t.Cleanup(stop[c])
	}
	hospID, clinicID := hosp.peerID(t), clinic.peerID(t)

	// A wrong check digit: exit 2, one JSON error naming it.
	_, errs, code := dist.run("implant", "register", "--udi", "(01)09506000134353(17)301231(10)LOT42(21)SN0001", "--json")
	if code != exitInvalid || !strings.Contains(errs, "check digit") {
		t.Fatalf("wrong check digit: exit %d: %s", code, errs)
	}
	var dev api.ImplantDevice
	if err := json.Unmarshal([]byte(dist.must("implant", "register", "--udi", "(01)09506000134352(17)301231(10)LOT42(21)SN0001", "--json")), &dev); err != nil {
		t.Fatal(err)
	}
	// The hospital must be a member on the distributor's ledger first.
	dist.retryJSON(0, nil, "implant", "transfer", dev.Device, "--to", hospID)

	// The other clinic, once it sees the device, cannot move it.
	_, errs = clinic.retryJSON(exitForbidden, nil, "implant", "transfer", dev.Device, "--to", clinicID)
	if !strings.Contains(errs, "custodian") {
		t.Fatalf("clinic's transfer: %s", errs)
	}
	out, _ := hosp.retryJSON(0, nil, "implant", "use", dev.Device, "--patient", "P-4711", "--procedure", "L4-L5 posterior fusion")
	if !strings.Contains(out, `"patient": "P-4711"`) {
		t.Fatalf("use: %s", out)
	}
	_, errs, code = hosp.run("implant", "use", dev.Device, "--patient", "P-4711", "--procedure", "again", "--json")
	if code != exitConflict || !strings.Contains(errs, "implanted once") {
		t.Fatalf("second use: exit %d: %s", code, errs)
	}

	// The distributor (once it sees the use) recalls the lot.
	dist.retryJSON(0, func(out string) bool { return strings.Contains(out, `"status": "implanted"`) }, "implant", "history", dev.Device)
	dist.must("implant", "recall", "--gtin", "09506000134352", "--lot", "LOT42", "--reason", "FSCA-2026-017: screw fracture")

	recalled := func(out string) bool { return strings.Contains(out, "FSCA-2026-017") }
	out, _ = hosp.retryJSON(0, recalled, "implant", "recalls")
	var rs []api.ImplantRecall
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || len(rs[0].Devices) != 1 || rs[0].Devices[0].Patient != "P-4711" || rs[0].Devices[0].Device != dev.Device {
		t.Fatalf("hospital's recalls: %s", out)
	}
	out, _ = clinic.retryJSON(0, recalled, "implant", "recalls")
	if strings.Contains(out, "P-4711") || !strings.Contains(out, dev.Device) {
		t.Fatalf("clinic's recalls: %s", out)
	}
	log := clinic.must("ledger", "log", "--limit", "0", "--json")
	if strings.Contains(log, "P-4711") || !strings.Contains(log, "implant.use") {
		t.Fatalf("the clinic's ledger log has P-4711, or lacks the use:\n%s", log)
	}

	// The whole of the clinic's repo, and the hospital's, once their
	// daemons are down: the patient appears in neither in clear (the
	// recall's reason, on the ledger in clear, shows the grep sees it).
	stop[clinic]()
	stop[hosp]()
	for _, c := range []*cli{clinic, hosp} {
		if hits := grepTree(t, c.repo, "P-4711"); len(hits) > 0 {
			t.Fatalf("P-4711 in clear in %v", hits)
		}
		if hits := grepTree(t, c.repo, "FSCA-2026-017"); len(hits) == 0 {
			t.Fatalf("%s: the recall's reason is nowhere in the repo: the grep sees nothing", c.repo)
		}
	}
}
