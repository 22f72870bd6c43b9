package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// A small network (the 200-node run is scripts/ledgersim.sh, not the test
// suite's): the workload runs, and what is measured is collected and
// plausible. In today's design every live clinic ends with every entry.
func TestSmallNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a 20-node simulation takes a while on two busy cores")
	}
	cfg := DefaultConfig()
	cfg.Nodes, cfg.Duration, cfg.Joins, cfg.Leaves = 20, 8*time.Second, 1, 1
	cfg.Records, cfg.Grants, cfg.Reads, cfg.Revokes = 2, 1, 8, 0.2
	cfg.Settle, cfg.OpTimeout = 2*time.Minute, 45*time.Second
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	PrintTable(&out, []*Report{rep})
	t.Logf("\n%s", out.String())

	if !rep.Converged {
		t.Fatal("the live clinics did not reach the same ledger")
	}
	if rep.NodesStart != 20 || rep.NodesEnd != 20 || rep.NodesMeasure != 20 {
		t.Errorf("clinics: %d at the start, %d live at the end, %d measured; want 20 (one joined, one left)",
			rep.NodesStart, rep.NodesEnd, rep.NodesMeasure)
	}
	// Setup: genesis, 19 admissions, the admin's org, 20 keys.
	if rep.EntriesByType["member.add"] < 20 || rep.EntriesByType["key.announce"] < 21 || rep.EntriesByType["member.remove"] != 1 {
		t.Errorf("entries by type %v: want 19 admissions and one join's, 21 keys, one removal", rep.EntriesByType)
	}
	for _, k := range []string{"record", "receipt", "grant", "read", "attest", "join", "leave"} {
		o := rep.Ops[k]
		if o.OK == 0 || o.Failed > (o.OK+o.Failed)/10 {
			t.Errorf("operation %s: %d ok, %d failed (%v)", k, o.OK, o.Failed, rep.Errors)
		}
	}
	// Today's design: every live node stores every entry.
	if rep.StoredEntries.Min != float64(rep.Entries) || rep.StoredShare.Min != 1 || rep.StoredScoped.Min != 1 || rep.StoredGlobal.Min != 1 {
		t.Errorf("stored entries per node %+v of %d: every node should store every entry", rep.StoredEntries, rep.Entries)
	}
	if rep.StoredBytes.Min != float64(rep.EntryBytes) || rep.EntryBytes < int64(rep.Entries)*100 {
		t.Errorf("stored bytes per node %+v, %d in the network of %d entries", rep.StoredBytes, rep.EntryBytes, rep.Entries)
	}
	if rep.StateBytes.Min <= 0 {
		t.Errorf("state bytes %+v", rep.StateBytes)
	}
	if rep.GlobalReach != 1 {
		t.Errorf("global entries reached %.3f of the nodes up", rep.GlobalReach)
	}
	// Traffic: everyone sends and receives; what is sent is received (the
	// leaver's last bytes and those in flight aside).
	if rep.Sent.Min <= 0 || rep.Received.Min <= 0 {
		t.Errorf("a node sent or received nothing: sent %+v received %+v", rep.Sent, rep.Received)
	}
	sent, recv := rep.Sent.Mean, rep.Received.Mean
	if recv < sent*0.8 || recv > sent*1.25 {
		t.Errorf("mean sent %.0f vs received %.0f bytes per node", sent, recv)
	}
	// An entry reaches the other nodes in every (entry, node) pair.
	if rep.PropGlobal.Count < 19 || int64(rep.PropScoped.Count) < 19*rep.Ops["record"].OK {
		t.Errorf("propagation samples: %d global, %d scoped", rep.PropGlobal.Count, rep.PropScoped.Count)
	}
	for _, l := range []Lat{rep.PropGlobal, rep.PropScoped, rep.ReadAudit, rep.ReadClaim} {
		if l.P50 < 0 || l.P50 > l.P99 || l.P99 > l.Max {
			t.Errorf("latencies out of order: %+v", l)
		}
	}
	// Almost every read is in its owner's audit (a read of a leaver's
	// holding may not be).
	if rep.Reads == 0 || rep.ReadAudit.Count < rep.Reads*9/10 || rep.ReadClaim.Count < rep.Reads*9/10 {
		t.Errorf("%d reads, %d in the owner's audit, %d claims at the owner", rep.Reads, rep.ReadAudit.Count, rep.ReadClaim.Count)
	}
	if !strings.Contains(out.String(), "propagation of scoped entries") {
		t.Error("the table lacks a row")
	}
}

func TestDesignSwitch(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Design = "sharded"
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "choices") {
		t.Fatalf("unknown design: %v", err)
	}
}

// The scoped design on a small fully connected network (a scope's
// followers are then always adjacent): the run converges, every node has
// every global entry, and the reads reach their owners' audits.
func TestSmallNetworkScoped(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a 12-node simulation takes a while on two busy cores")
	}
	cfg := DefaultConfig()
	cfg.Design = DesignScoped
	cfg.Nodes, cfg.Degree, cfg.Duration, cfg.Joins, cfg.Leaves = 12, 11, 8*time.Second, 1, 1
	cfg.Records, cfg.Grants, cfg.Reads, cfg.Revokes = 2, 1, 6, 0.2
	cfg.Settle, cfg.OpTimeout = 2*time.Minute, 45*time.Second
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	PrintTable(&out, []*Report{rep})
	t.Logf("\n%s", out.String())
	if !rep.Converged {
		t.Fatal("the live clinics did not reach the same global state")
	}
	if rep.StoredGlobal.Min != 1 {
		t.Errorf("global entries per node %+v: every node should have all of them", rep.StoredGlobal)
	}
	if rep.StoredScoped.Median > 1 || rep.StoredEntries.Max > float64(rep.Entries) {
		t.Errorf("stored %+v of %d entries, scoped share %+v", rep.StoredEntries, rep.Entries, rep.StoredScoped)
	}
	for _, k := range []string{"record", "receipt", "grant", "read", "attest"} {
		o := rep.Ops[k]
		if o.OK == 0 || o.Failed > (o.OK+o.Failed)/10 {
			t.Errorf("operation %s: %d ok, %d failed (%v)", k, o.OK, o.Failed, rep.Errors)
		}
	}
	if rep.Reads == 0 || rep.ReadAudit.Count < rep.Reads*9/10 {
		t.Errorf("%d reads, %d in the owner's audit", rep.Reads, rep.ReadAudit.Count)
	}
	// A scoped entry reaches the nodes that followed its scope when it was
	// published; those that follow it later catch it up.
	if rep.PropScoped.Count == 0 || rep.ScopedReach < 0.9 {
		t.Errorf("scoped propagation: %d samples, reached %.2f of the followers", rep.PropScoped.Count, rep.ScopedReach)
	}
}
