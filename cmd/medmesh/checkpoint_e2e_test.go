package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/node/api"
)

// TestJoinFromCheckpointCLI drives issue #16's checkpoints through the real
// binary and real daemons: the clinic (the admin) and a lab build history
// (records, grants, reads); the clinic signs a checkpoint (`ledger
// checkpoint --json`), the lab adopts it and both prune what they do not
// need (`ledger prune --json`); a node invited afterwards joins from the
// checkpoint instead of replaying (its `ledger checkpoints --json` marks
// it base), reports `synced` in `ledger stat --json` within 30 s of its
// daemon's start with the clinic's heads and state digest, stores fewer
// entries than the checkpoint covers, and its `ledger verify` passes. The lab cannot sign one (exit 5).
func TestJoinFromCheckpointCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three daemons")
	}
	dir := t.TempDir()
	clinic := &cli{t: t, repo: filepath.Join(dir, "clinic")}
	clinic.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--org", "clinic")
	clinic.must("network", "create", "--name", "e2e-checkpoint")
	cd := clinic.startDaemon()
	t.Cleanup(func() { cd.Process.Signal(syscall.SIGTERM); cd.Wait() })
	lab := clinic.invite(t, dir, "lab", "lab")
	ld := lab.startDaemon()
	t.Cleanup(func() { ld.Process.Signal(syscall.SIGTERM); ld.Wait() })
	labID := lab.peerID(t)

	// History: records on both sides, grants, reads.
	for i := 0; i < 6; i++ {
		f := filepath.Join(dir, fmt.Sprintf("report-%d.json", i))
		os.WriteFile(f, []byte(fmt.Sprintf(`{"resourceType":"DiagnosticReport","status":"final","id":"r%d"}`, i)), 0o600)
		var r api.AddResult
		if err := json.Unmarshal([]byte(clinic.must("add", f, "--class", "report", "--replicas", "1", "--json")), &r); err != nil {
			t.Fatal(err)
		}
		clinic.retry("grant", r.ID, "--to", labID, "--json")
		lab.retry("get", r.ID, "-o", filepath.Join(dir, fmt.Sprintf("got-%d", i)))
		lab.retry("add", f, "--class", "report", "--replicas", "1", "--json")
	}

	// The clinic has the lab's records and the reads of its own before it
	// signs, so the checkpoint covers entries the clinic may prune (a
	// quiet machine got here before they arrived).
	clinicID := clinic.peerID(t)
	for _, scope := range []string{"owner/" + labID, "audit/" + clinicID} {
		waitFor(t, "the clinic and the lab agreeing on "+scope, 60*time.Second, func() error {
			a, b := clinic.must("ledger", "heads", "--scope", scope, "--json"), lab.must("ledger", "heads", "--scope", scope, "--json")
			if a != b {
				return fmt.Errorf("clinic %s, lab %s", a, b)
			}
			return nil
		})
	}

	// Only an admin signs a checkpoint.
	if _, errs, code := lab.run("ledger", "checkpoint", "--json"); code != exitForbidden {
		t.Fatalf("lab's checkpoint: exit %d, want %d: %s", code, exitForbidden, errs)
	}
	var ck api.Checkpoint
	if err := json.Unmarshal([]byte(clinic.must("ledger", "checkpoint", "--json")), &ck); err != nil {
		t.Fatal(err)
	}
	if ck.Index != 0 || ck.EntryCount < 4 || len(ck.Signatures) != 1 || !ck.Trusted || ck.Quorum != 1 {
		t.Fatalf("checkpoint: %+v", ck)
	}
	// The lab adopts it at its next sync, then both prune.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var cks []api.Checkpoint
		if err := json.Unmarshal([]byte(lab.must("ledger", "checkpoints", "--json")), &cks); err != nil {
			t.Fatal(err)
		}
		if len(cks) == 1 && cks[0].Checkpoint == ck.Checkpoint {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lab did not adopt checkpoint %s: %+v", ck.Checkpoint, cks)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A global checkpoint of a scoped network covers the global scope
	// alone, none of whose types is pruned: prune has nothing to drop.
	for _, n := range []*cli{clinic, lab} {
		var pr api.PruneResult
		if err := json.Unmarshal([]byte(n.must("ledger", "prune", "--json")), &pr); err != nil {
			t.Fatal(err)
		}
		if pr.Checkpoint != ck.Checkpoint || pr.PrunedCount != 0 || pr.KeptCount == 0 {
			t.Fatalf("%s prune: %+v", n.repo, pr)
		}
		if out := n.must("ledger", "verify", "--json"); !json.Valid([]byte(out)) {
			t.Fatalf("verify after prune: %s", out)
		}
	}

	// A node invited now joins from the checkpoint.
	joiner := clinic.invite(t, dir, "joiner", "joiner")
	start := time.Now()
	jd := joiner.startDaemon("-v") // its syncs, for the log shown if it is not synced in time
	t.Cleanup(func() { jd.Process.Signal(syscall.SIGTERM); jd.Wait() })
	var took time.Duration
	var st api.LedgerStat
	for {
		json.Unmarshal([]byte(joiner.must("ledger", "stat", "--json")), &st)
		if st.Synced {
			took = time.Since(start)
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the joiner did not report synced within 30 s: %+v\nits ledger's log:\n%s", st, joiner.logLines("component=ledger"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("joined from checkpoint %s (%d entries behind it) and reported synced %v after its daemon started", ck.Checkpoint, ck.EntryCount, took.Round(time.Millisecond))
	// Synced means caught up on the global scope: the clinic's heads and
	// digest (the clinic is quiet), from the checkpoint.
	var hj, hc api.Heads
	var cks []api.Checkpoint
	json.Unmarshal([]byte(joiner.must("ledger", "heads", "--json")), &hj)
	json.Unmarshal([]byte(clinic.must("ledger", "heads", "--json")), &hc)
	json.Unmarshal([]byte(joiner.must("ledger", "checkpoints", "--json")), &cks)
	if hj.State != hc.State || fmt.Sprint(hj.Heads) != fmt.Sprint(hc.Heads) || len(cks) != 1 || !cks[0].Base {
		t.Fatalf("synced joiner: heads %v state %s, clinic %v %s, checkpoints %+v", hj.Heads, hj.State, hc.Heads, hc.State, cks)
	}
	// The checkpoint held the global scope only; the joiner, in both
	// members' replica groups, then catches up their owner and audit
	// scopes by sync, to the same heads and scope digests.
	for _, scope := range []string{"owner/" + clinicID, "audit/" + clinicID, "owner/" + labID, "audit/" + labID} {
		waitFor(t, "the joiner catching up "+scope, 60*time.Second, func() error {
			a, b := clinic.must("ledger", "heads", "--scope", scope, "--json"), joiner.must("ledger", "heads", "--scope", scope, "--json")
			if a != b {
				return fmt.Errorf("clinic %s, joiner %s", a, b)
			}
			return nil
		})
	}
	// It never fetched the global entries the checkpoint covers.
	var sc api.LedgerStat
	json.Unmarshal([]byte(joiner.must("ledger", "stat", "--json")), &st)
	json.Unmarshal([]byte(clinic.must("ledger", "stat", "--json")), &sc)
	if st.Entries >= sc.Entries {
		t.Fatalf("the joiner stores %d entries, the clinic %d: it replayed the %d the checkpoint covers", st.Entries, sc.Entries, ck.EntryCount)
	}
	var v api.VerifyResult
	if err := json.Unmarshal([]byte(joiner.must("ledger", "verify", "--json")), &v); err != nil || !v.OK {
		t.Fatalf("joiner's verify: %+v %v", v, err)
	}
	// Human output.
	if out := joiner.must("ledger", "checkpoints"); !strings.Contains(out, ck.Checkpoint) || !strings.Contains(out, "base") {
		t.Fatalf("ledger checkpoints:\n%s", out)
	}
}

// TestScopeCheckpointCLI drives checkpoints of an owner's scopes through
// the real binary and real daemons: the clinic's records are granted to
// and read by the lab; the lab and the imaging centre (the clinic's
// replica group) sign checkpoints of the clinic's owner and audit scopes
// (`ledger checkpoint --scope ... [--cosign]`; a grant comes between the
// two, so the audit scope's depends on owner scope entries newer than the
// owner scope's checkpoint), which the clinic itself may not (exit 5; a
// malformed scope exits 2); every node adopts them; a
// node that joins afterwards, in the clinic's replica group, loads both
// instead of replaying them (`ledger checkpoints --scope` marks them
// base), reaches the clinic's heads and scope digests, stores fewer
// entries than the clinic by what they cover, and passes `ledger verify`;
// the lab prunes what they cover (`ledger prune --json`) while the clinic
// keeps its own records' history.
func TestScopeCheckpointCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs four daemons")
	}
	dir := t.TempDir()
	clinic := &cli{t: t, repo: filepath.Join(dir, "clinic")}
	clinic.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--org", "clinic")
	clinic.must("network", "create", "--name", "e2e-scope-checkpoint")
	stop := func(d *exec.Cmd) { t.Cleanup(func() { d.Process.Signal(syscall.SIGTERM); d.Wait() }) }
	stop(clinic.startDaemon())
	lab := clinic.invite(t, dir, "lab", "lab")
	stop(lab.startDaemon())
	imaging := clinic.invite(t, dir, "imaging", "imaging")
	stop(imaging.startDaemon())
	clinicID, labID := clinic.peerID(t), lab.peerID(t)
	os_, as := "owner/"+clinicID, "audit/"+clinicID

	var lastID string
	for i := 0; i < 4; i++ {
		f := filepath.Join(dir, fmt.Sprintf("report-%d.json", i))
		os.WriteFile(f, []byte(fmt.Sprintf(`{"resourceType":"DiagnosticReport","status":"final","id":"s%d"}`, i)), 0o600)
		var r api.AddResult
		if err := json.Unmarshal([]byte(clinic.must("add", f, "--class", "report", "--replicas", "1", "--json")), &r); err != nil {
			t.Fatal(err)
		}
		lastID = r.ID
		clinic.retry("grant", r.ID, "--to", labID, "--json")
		lab.retry("get", r.ID, "-o", filepath.Join(dir, fmt.Sprintf("got-%d", i)))
	}
	group := []*cli{lab, imaging}
	agree := func(what string, args ...string) {
		t.Helper()
		waitFor(t, what, 60*time.Second, func() error {
			want := clinic.must(args...)
			for _, n := range group {
				if got := n.must(args...); got != want {
					return fmt.Errorf("%s: %s, clinic: %s", n.repo, got, want)
				}
			}
			return nil
		})
	}
	agree("the global scope", "ledger", "heads", "--json")
	for _, s := range []string{os_, as} {
		agree(s, "ledger", "heads", "--scope", s, "--json")
	}

	if _, errs, code := lab.run("ledger", "checkpoint", "--scope", "owner/nobody", "--json"); code != exitInvalid || !strings.Contains(errs, `"error"`) {
		t.Fatalf("malformed scope: exit %d, want %d: %s", code, exitInvalid, errs)
	}
	if _, errs, code := clinic.run("ledger", "checkpoint", "--scope", os_, "--json"); code != exitForbidden || !strings.Contains(errs, "replica group") {
		t.Fatalf("the owner signing its scope's checkpoint: exit %d, want %d: %s", code, exitForbidden, errs)
	}
	sign := func(scope string) api.Checkpoint {
		t.Helper()
		var prop, ck api.Checkpoint
		if err := json.Unmarshal([]byte(lab.must("ledger", "checkpoint", "--scope", scope, "--json")), &prop); err != nil {
			t.Fatal(err)
		}
		if prop.Trusted || prop.Quorum != 2 || len(prop.Signers) != 2 || prop.Proposal == "" || prop.Scope != scope || len(prop.Deps) == 0 {
			t.Fatalf("%s: one signature of two: %+v", scope, prop)
		}
		if err := json.Unmarshal([]byte(imaging.must("ledger", "checkpoint", "--scope", scope, "--cosign", prop.Proposal, "--json")), &ck); err != nil {
			t.Fatal(err)
		}
		if !ck.Trusted || len(ck.Signatures) != 2 || ck.Checkpoint != prop.Checkpoint || ck.EntryCount == 0 {
			t.Fatalf("%s: co-signed: %+v", scope, ck)
		}
		return ck
	}
	ck := sign(os_)
	// An owner scope entry after the owner scope's checkpoint and before
	// the audit scope's (a grant to the imaging centre): the audit
	// scope's checkpoint depends on it, so a node that loads the owner
	// scope's must catch the owner scope up before loading the audit's.
	clinic.must("grant", lastID, "--to", imaging.peerID(t), "--json")
	agree("the global scope", "ledger", "heads", "--json")
	for _, s := range []string{os_, as} {
		agree(s, "ledger", "heads", "--scope", s, "--json")
	}
	ack := sign(as)
	// The owner and the proposer adopt them at their next sync.
	for _, c := range []api.Checkpoint{ck, ack} {
		for _, n := range []*cli{clinic, lab, imaging} {
			waitFor(t, n.repo+" adopting "+c.Checkpoint, 60*time.Second, func() error {
				var cks []api.Checkpoint
				if err := json.Unmarshal([]byte(n.must("ledger", "checkpoints", "--scope", c.Scope, "--json")), &cks); err != nil {
					return err
				}
				if len(cks) == 0 || cks[len(cks)-1].Checkpoint != c.Checkpoint {
					return fmt.Errorf("%+v", cks)
				}
				return nil
			})
		}
	}

	// A fourth member is in the clinic's replica group: it loads both.
	joiner := clinic.invite(t, dir, "joiner", "joiner")
	stop(joiner.startDaemon())
	for _, s := range []string{os_, as} {
		waitFor(t, "the joiner catching up "+s, 60*time.Second, func() error {
			a, b := clinic.must("ledger", "heads", "--scope", s, "--json"), joiner.must("ledger", "heads", "--scope", s, "--json")
			if a != b {
				return fmt.Errorf("clinic %s, joiner %s", a, b)
			}
			return nil
		})
	}
	for _, c := range []api.Checkpoint{ck, ack} {
		var cks []api.Checkpoint
		if err := json.Unmarshal([]byte(joiner.must("ledger", "checkpoints", "--scope", c.Scope, "--json")), &cks); err != nil {
			t.Fatal(err)
		}
		if len(cks) != 1 || cks[0].Checkpoint != c.Checkpoint || !cks[0].Base {
			t.Fatalf("the joiner's checkpoints of %s: %+v", c.Scope, cks)
		}
	}
	var sj, sc api.LedgerStat
	json.Unmarshal([]byte(joiner.must("ledger", "stat", "--json")), &sj)
	json.Unmarshal([]byte(clinic.must("ledger", "stat", "--json")), &sc)
	if sj.Entries+int64(ck.EntryCount+ack.EntryCount) > sc.Entries {
		t.Fatalf("the joiner stores %d entries, the clinic %d: it replayed some of the %d the checkpoints cover", sj.Entries, sc.Entries, ck.EntryCount+ack.EntryCount)
	}
	var v api.VerifyResult
	if err := json.Unmarshal([]byte(joiner.must("ledger", "verify", "--json")), &v); err != nil || !v.OK {
		t.Fatalf("the joiner's verify: %+v %v", v, err)
	}
	if out := joiner.must("ledger", "checkpoints", "--scope", as); !strings.Contains(out, ack.Checkpoint) || !strings.Contains(out, "base") {
		t.Fatalf("ledger checkpoints --scope %s:\n%s", as, out)
	}

	// The lab, in the clinic's replica group, drops the owner scope's
	// entries they cover and keeps the clinic's reads (the clinic's audit
	// log comes back from its group if its disk fails); the clinic keeps
	// its records' whole history.
	pruned := func(n *cli) map[string]api.ScopePrune {
		t.Helper()
		var pr api.PruneResult
		if err := json.Unmarshal([]byte(n.must("ledger", "prune", "--json")), &pr); err != nil {
			t.Fatal(err)
		}
		out := map[string]api.ScopePrune{}
		for _, s := range pr.Scopes {
			out[s.Scope] = s
		}
		return out
	}
	if p := pruned(lab); p[os_].PrunedCount == 0 || p[as].PrunedCount != 0 || p[as].KeptCount == 0 || p[as].Checkpoint != ack.Checkpoint {
		t.Fatalf("the lab's prune: %+v", p)
	}
	if p := pruned(clinic); p[os_].PrunedCount != 0 || p[as].PrunedCount != 0 || p[as].KeptCount == 0 {
		t.Fatalf("the clinic's prune: %+v", p)
	}
	for _, n := range []*cli{lab, clinic} {
		if err := json.Unmarshal([]byte(n.must("ledger", "verify", "--json")), &v); err != nil || !v.OK {
			t.Fatalf("%s verify after prune: %+v %v", n.repo, v, err)
		}
	}
	agree(as+" after pruning", "ledger", "heads", "--scope", as, "--json")
}

// TestAutoScopeCheckpointCLI: with `ledger.scope_checkpoint_every` set, the
// owner's replica group checkpoints the owner's scope by itself once it has
// grown that much (nobody runs `ledger checkpoint`); the owner adopts it,
// `ledger checkpoints` shows it with a majority of the group's signatures,
// and a member that joins afterwards starts the scope from it, storing
// only the entries after it, and reads a record granted to it.
func TestAutoScopeCheckpointCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs four daemons")
	}
	dir := t.TempDir()
	clinic := &cli{t: t, repo: filepath.Join(dir, "clinic")}
	clinic.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--org", "clinic")
	clinic.must("network", "create", "--name", "e2e-auto-checkpoint")
	const every = 20
	// off is the repo of the node with automatic checkpoints off.
	var off string
	start := func(n *cli) {
		if n.repo == off {
			n.must("config", "set", "ledger.scope_checkpoint_every", "0")
		} else {
			n.must("config", "set", "ledger.scope_checkpoint_every", fmt.Sprint(every))
		}
		if n.repo == filepath.Join(dir, "imaging") {
			n.must("config", "set", "ledger.prune_after_checkpoint", "true")
		}
		var flags []string
		if n.repo == filepath.Join(dir, "archive") {
			flags = append(flags, "-v") // its syncs, for the log shown if it does not start from the checkpoint
		}
		d := n.startDaemon(flags...)
		t.Cleanup(func() { d.Process.Signal(syscall.SIGTERM); d.Wait() })
	}
	if _, errs, code := clinic.run("config", "set", "ledger.scope_checkpoint_every", "--", "-1"); code != exitInvalid || !strings.Contains(errs, "ledger.scope_checkpoint_every") {
		t.Fatalf("a negative ledger.scope_checkpoint_every: exit %d: %s", code, errs)
	}
	start(clinic)
	lab := clinic.invite(t, dir, "lab", "lab")
	imaging := clinic.invite(t, dir, "imaging", "imaging")
	// The clinic's replica group is lab and imaging; the first of them in
	// peer ID order proposes the group's checkpoints. Its own setting has
	// them off: the other member proposes instead once the scope has
	// twice the count past its latest checkpoint.
	first, other := lab, imaging
	if mustDecodePeer(t, imaging.peerID(t)) < mustDecodePeer(t, lab.peerID(t)) {
		first, other = imaging, lab
	}
	off = first.repo
	start(lab)
	start(imaging)
	clinicID := clinic.peerID(t)
	os_ := "owner/" + clinicID

	var ids []string
	for i := 0; i < 2*every+5; i++ {
		f := filepath.Join(dir, fmt.Sprintf("report-%d.json", i))
		os.WriteFile(f, []byte(fmt.Sprintf(`{"resourceType":"DiagnosticReport","status":"final","id":"a%d"}`, i)), 0o600)
		var r api.AddResult
		if err := json.Unmarshal([]byte(clinic.must("add", f, "--class", "report", "--replicas", "1", "--json")), &r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	// Made by the group, adopted by the owner, without anyone asking.
	var ck api.Checkpoint
	waitFor(t, "an automatic checkpoint of "+os_+" on the owner", 90*time.Second, func() error {
		var cks []api.Checkpoint
		if err := json.Unmarshal([]byte(clinic.must("ledger", "checkpoints", "--scope", os_, "--json")), &cks); err != nil {
			return err
		}
		if len(cks) == 0 {
			return fmt.Errorf("none yet")
		}
		ck = cks[len(cks)-1]
		return nil
	})
	if ck.EntryCount < every || len(ck.Signatures) < ck.Quorum || ck.Quorum < 2 || !ck.Trusted {
		t.Fatalf("the automatic checkpoint: %+v", ck)
	}
	for _, s := range ck.Signers {
		if s == clinicID {
			t.Fatalf("the owner signs its own scope's checkpoint: %+v", ck)
		}
	}
	// imaging prunes what the checkpoint covers by itself
	// (ledger.prune_after_checkpoint); lab, the other member of the
	// group, keeps it.
	waitFor(t, "imaging to prune "+os_+" after the checkpoint", 60*time.Second, func() error {
		var si, sl api.LedgerStat
		json.Unmarshal([]byte(imaging.must("ledger", "stat", "--json")), &si)
		json.Unmarshal([]byte(lab.must("ledger", "stat", "--json")), &sl)
		if si.Entries+every/2 > sl.Entries {
			return fmt.Errorf("imaging stores %d entries, lab %d", si.Entries, sl.Entries)
		}
		return nil
	})
	var v struct {
		OK bool `json:"ok"`
	}
	if err := json.Unmarshal([]byte(imaging.must("ledger", "verify", "--json")), &v); err != nil || !v.OK {
		t.Fatalf("imaging's ledger after it pruned: %+v %v", v, err)
	}
	// Drafts (the group's, the owner's adoption, imaging's verify) ran
	// in a database under each repo's scratch/, deleted when done.
	waitFor(t, "drafts' scratch databases to be gone", 30*time.Second, func() error {
		for _, n := range []*cli{clinic, lab, imaging} {
			ents, err := os.ReadDir(filepath.Join(n.repo, "scratch"))
			if err != nil {
				return fmt.Errorf("%s: no draft ran in its scratch directory: %w", n.repo, err)
			}
			if len(ents) > 0 {
				return fmt.Errorf("%s: %d left in scratch/", n.repo, len(ents))
			}
		}
		return nil
	})
	// Each node keeps the latest checkpoint's state blocks as files under
	// checkpoints/ (dropping the older ones is an unlink, not value-log
	// garbage in the datastore), exactly those blocks.
	waitFor(t, "the checkpoint's state blocks as files on each node", 30*time.Second, func() error {
		for _, n := range []*cli{clinic, lab, imaging} {
			var cks []api.Checkpoint
			if err := json.Unmarshal([]byte(n.must("ledger", "checkpoints", "--scope", os_, "--json")), &cks); err != nil || len(cks) == 0 {
				return fmt.Errorf("%s: checkpoints %v %v", n.repo, cks, err)
			}
			last := cks[len(cks)-1]
			ents, err := os.ReadDir(filepath.Join(n.repo, "checkpoints", "owner-"+clinicID))
			if err != nil {
				return fmt.Errorf("%s: %w", n.repo, err)
			}
			var size uint64
			for _, e := range ents {
				fi, err := e.Info()
				if err != nil || strings.HasPrefix(e.Name(), ".") {
					return fmt.Errorf("%s: %s in checkpoints/ (%v)", n.repo, e.Name(), err)
				}
				size += uint64(fi.Size())
			}
			if len(ents) != last.BlockCount || size != last.Size {
				return fmt.Errorf("%s: %d files of %d bytes, the latest checkpoint %s has %d blocks of %d", n.repo, len(ents), size, last.Checkpoint, last.BlockCount, last.Size)
			}
		}
		return nil
	})
	made := `medmesh_ledger_scope_checkpoints_total{result="made"}`
	cosigned := `medmesh_ledger_scope_checkpoints_total{result="cosigned"}`
	if m, c := other.metric(t, made), first.metric(t, cosigned); m < 1 || c < 1 {
		t.Fatalf("the group member with automatic checkpoints on made %v checkpoints, the first (off) co-signed %v: want one of each at least", m, c)
	}
	if m := first.metric(t, made); m != 0 {
		t.Fatalf("the member with automatic checkpoints off made %v", m)
	}

	// A member that joins afterwards starts the scope from it.
	archive := clinic.invite(t, dir, "archive", "archive")
	start(archive)
	archiveID := archive.peerID(t)
	clinic.retry("grant", ids[0], "--to", archiveID, "--json")
	archive.retry("get", ids[0], "-o", filepath.Join(dir, "got"))
	var cks []api.Checkpoint
	if err := json.Unmarshal([]byte(archive.must("ledger", "checkpoints", "--scope", os_, "--json")), &cks); err != nil {
		t.Fatal(err)
	}
	if len(cks) == 0 || !cks[0].Base {
		// Seen once in a loaded full run (session 8), not reproduced
		// since: the daemon's log says how the scope started.
		t.Fatalf("the new member's checkpoints of %s: %+v\nits log on the scope:\n%s", os_, cks, archive.logLines(clinicID))
	}
	var sa, sc api.LedgerStat
	json.Unmarshal([]byte(archive.must("ledger", "stat", "--json")), &sa)
	json.Unmarshal([]byte(clinic.must("ledger", "stat", "--json")), &sc)
	if sa.Entries+int64(cks[0].EntryCount) > sc.Entries+5 {
		t.Fatalf("the new member stores %d entries, the clinic %d: it synced some of the %d its checkpoint covers", sa.Entries, sc.Entries, cks[0].EntryCount)
	}
	t.Logf("checkpoint of %d entries signed by %d of %d; the new member stores %d entries, the owner %d", ck.EntryCount, len(ck.Signatures), len(ck.Signers), sa.Entries, sc.Entries)
}

// mustDecodePeer decodes a peer ID as `medmesh id` prints it.
func mustDecodePeer(t *testing.T, s string) peer.ID {
	t.Helper()
	p, err := peer.Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
