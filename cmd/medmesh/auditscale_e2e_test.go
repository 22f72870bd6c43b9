package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
)

// auditReads is how many reads TestAuditCountsEveryRead makes.
const auditReads = 300

// sixNodes starts six daemons through the CLI: a clinic that founds the
// network and five members. It returns them in that order, each with a
// function that stops its daemon (SIGTERM) and one that starts it again.
type e2eNode struct {
	*cli
	name string
	d    *exec.Cmd
}

func (n *e2eNode) stop() {
	if n.d != nil {
		n.d.Process.Signal(syscall.SIGTERM)
		n.d.Wait()
		n.d = nil
	}
}

func (n *e2eNode) start() { n.d = n.startDaemon() }

func sixNodes(t *testing.T, dir string) []*e2eNode {
	t.Helper()
	owner := &e2eNode{cli: &cli{t: t, repo: filepath.Join(dir, "clinic")}, name: "clinic"}
	owner.must("init", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--org", "clinic")
	owner.must("network", "create", "--name", "e2e-audit")
	owner.start()
	t.Cleanup(owner.stop)
	nodes := []*e2eNode{owner}
	for i, name := range []string{"hospital", "lab-a", "lab-b", "lab-c", "lab-d"} {
		m := &e2eNode{cli: owner.invite(t, dir, name, fmt.Sprintf("org-%d", i)), name: name}
		m.start()
		t.Cleanup(m.stop)
		nodes = append(nodes, m)
	}
	return nodes
}

// TestAuditCountsEveryRead is issue #16's done-when item with six real
// daemons: a grantee's 300 reads of one record, served by several holders
// (the holder readers ask first goes offline for a third of them, the
// second for another third, read four at a time), are counted exactly in
// the owner's `audit --json`: the counts of that reader's lines add up to
// 300, every line attested by the nodes that served it and reported by the
// reader, none flagged.
func TestAuditCountsEveryRead(t *testing.T) {
	if testing.Short() {
		t.Skip("runs six daemons")
	}
	dir := t.TempDir()
	nodes := sixNodes(t, dir)
	owner, reader := nodes[0], nodes[1]
	readerID := reader.peerID(t)

	file := filepath.Join(dir, "labs.json")
	os.WriteFile(file, []byte(`{"resourceType":"Observation","status":"final"}`), 0o600)
	var added api.AddResult
	json.Unmarshal([]byte(owner.retry("add", file, "--replicas", "4", "--json")), &added)
	owner.retry("grant", added.ID, "--to", readerID, "--json")

	// The owner and three replicas hold it, the reader not among them: a
	// replica placed on it before its grant applied is released (a grantee
	// holds no ciphertext), and another member takes its place.
	var holders []string
	waitFor(t, "three replicas", 60*time.Second, func() error {
		var st api.Status
		json.Unmarshal([]byte(owner.must("status", added.ID, "--json")), &st)
		if len(st.Holders) < 4 || slices.Contains(st.Holders, readerID) {
			return fmt.Errorf("holders %v (the reader is %s)", st.Holders, readerID)
		}
		holders = st.Holders
		return nil
	})
	// Readers ask the holders in peer ID order: the first serves while it is
	// up. Each third of the reads goes without one of the first two, so at
	// least two holders serve.
	slices.Sort(holders)
	byID := map[string]*e2eNode{}
	for _, n := range nodes {
		byID[n.peerID(t)] = n
	}
	first, second := byID[holders[0]], byID[holders[1]]
	if first == nil || second == nil || first == reader || second == reader {
		t.Fatalf("holders %v", holders)
	}
	// The reader's ledger knows the replicas too before the owner leaves.
	waitFor(t, "the reader sees the holders", 30*time.Second, func() error {
		var st api.Status
		json.Unmarshal([]byte(reader.must("status", added.ID, "--json")), &st)
		if len(st.Holders) < 4 {
			return fmt.Errorf("holders on the reader: %v", st.Holders)
		}
		return nil
	})

	// Reads, n of them, par at a time (several reads of the same record
	// in the same attestation interval).
	read := func(n, par int) {
		var wg sync.WaitGroup
		for w := range par {
			wg.Go(func() {
				out := filepath.Join(dir, fmt.Sprintf("read-%d.json", w))
				for range n / par {
					reader.retry("get", added.ID, "-o", out)
				}
			})
		}
		wg.Wait()
	}
	start := time.Now()
	read(auditReads/3, 1)
	first.stop() // the next holder serves the next third
	read(auditReads/3, 1)
	first.start()
	second.stop() // and the others the last, four at a time
	read(auditReads/3, 4)
	second.start() // its last attestations reach the others
	t.Logf("%d reads in %v", auditReads, time.Since(start))

	var evs []api.AccessEvent
	var sum, reported int
	attestedBy := map[string]bool{}
	waitFor(t, "every read in the owner's audit", 60*time.Second, func() error {
		evs = decode[[]api.AccessEvent](t, owner.must("audit", added.ID, "--json"))
		sum, reported = 0, 0
		clear(attestedBy)
		for _, e := range evs {
			if e.Reader != readerID {
				continue
			}
			sum += e.Count
			reported += e.ReportedCount
			for _, a := range e.AttestedBy {
				attestedBy[a] = true
			}
		}
		if sum != auditReads || reported != auditReads {
			return fmt.Errorf("reads counted %d, reported %d (want %d)", sum, reported, auditReads)
		}
		for _, e := range evs {
			if e.Reader == readerID && (len(e.AttestedBy) == 0 || e.Review) {
				return fmt.Errorf("a line not attested, or flagged: %+v", e)
			}
		}
		return nil
	})
	if len(attestedBy) < 2 {
		t.Fatalf("the reads were attested by %v only: several holders should have served them", attestedBy)
	}
	t.Logf("%d lines, attested by %d holders", len(evs), len(attestedBy))
}
