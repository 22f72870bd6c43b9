package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/devnet"
	"github.com/medmesh/medmesh/node/p2p"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/record"
)

// TestRogueMemberGainsNothingBySigning is the rogue member of issue #11 on
// six real daemons: a member outside a record's placement window, and a
// revoked grantee holding its old envelope, each sign a "held" receipt for
// the record and ask for its blocks over bitswap and the bulk protocol;
// both get rejected receipts and no block. A member that never read the
// record cannot claim it did. A modified grantee that reads without
// reporting it still appears in the owner's audit, attested by the node
// that served it.
func TestRogueMemberGainsNothingBySigning(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	n, err := devnet.Start(ctx, t.TempDir(), []string{"A", "B", "C", "D", "E", "F"}, devnet.Options{Daemon: replOpts(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	A := n.Nodes[0]
	rec := replAdd(t, A, randomBytes(3<<20+5), 2) // the window is two members wide
	info := mustRecord(t, A, rec)
	// Let the replica settle first: a fetch under way when a grant makes
	// its fetcher a grantee would count as a read of it.
	waitFor(t, "the replica", 20*time.Second, func() (bool, string) { return len(heldBy(A, rec)) == 1, "" })
	blRaw, err := A.Daemon.Store.Blocks.Get(ctx, info.Blocklist)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := record.DecodeBlockList(blRaw.RawData())
	if err != nil {
		t.Fatal(err)
	}

	// V reads under a grant, then is revoked: it keeps its old envelope.
	// G gets a grant too. The others are ranked without them.
	var others []*devnet.Node
	for _, nd := range n.Nodes[1:] {
		others = append(others, nd)
	}
	V, G := others[0], others[1]
	grant(t, A, rec.String(), V, "treatment", "")
	grant(t, A, rec.String(), G, "research", "")
	sync(t, n)
	if _, err := get(V, rec.String(), 0); err != nil {
		t.Fatalf("V's read under its grant: %v", err)
	}
	if err := A.API.Do(ctx, "DELETE", api.Prefix+"/records/"+rec.String()+"/grants/"+V.ID.String(), nil, nil); err != nil {
		t.Fatal(err)
	}
	sync(t, n)
	auth := A.Daemon.Ledger.HoldAuthority(info)
	var R *devnet.Node // a member placement never asks to hold rec
	for _, nd := range others[2:] {
		// Prefer one that follows A's ledger scope (issue #16): it knows
		// the record and signs entries about it.
		if !auth.MayHold(nd.ID) && (R == nil || nd.Daemon.Ledger.Follows(ledger.OwnerScope(A.ID))) {
			R = nd
		}
	}
	// refused: the rules refuse the entry; a node that does not follow
	// the owner's scope cannot even place it there (a modified one could,
	// and every follower would refuse it: the ledger's scenario tests).
	refused := func(who *devnet.Node, err error) bool {
		if errors.Is(err, ledger.ErrUnauthorized) {
			return true
		}
		return err != nil && !who.Daemon.Ledger.Follows(ledger.OwnerScope(A.ID)) && strings.Contains(err.Error(), "not known here")
	}
	if R == nil || auth.MayHold(V.ID) || auth.MayHold(G.ID) {
		t.Fatalf("window: rogue %v, V %v, G %v", R, auth.MayHold(V.ID), auth.MayHold(G.ID))
	}

	for _, who := range []*devnet.Node{R, V} {
		// A "held" receipt of its own: rejected by its own node, and by
		// every other node were it forged and gossiped.
		_, err := who.Daemon.Ledger.Append(ctx, ledger.TypeReceipt, ledger.ReceiptPayload{Record: rec, Status: "held"})
		if !refused(who, err) {
			t.Fatalf("%s's held receipt: %v", who.Name, err)
		}
		// The blocks: none, over bitswap or the bulk protocol.
		for _, via := range []string{"bitswap", "bulk"} {
			fctx, cancel := context.WithTimeout(p2p.NoKeep(ctx), 3*time.Second)
			if via == "bulk" {
				fctx = p2p.WithHolders(fctx, A.ID)
			}
			got := 0
			_ = who.Daemon.P2P.GetMany(fctx, ids, func(blocks.Block) error { got++; return nil })
			cancel()
			if got != 0 {
				t.Fatalf("%s got %d of %d blocks over %s", who.Name, got, len(ids), via)
			}
		}
	}
	// A read claim without a grant, or under the revoked one: rejected.
	gV := ledger.Grant{}
	for _, g := range A.Daemon.Ledger.GrantHistory(rec) {
		if g.Grantee == V.ID {
			gV = g
		}
	}
	for _, who := range []*devnet.Node{R, V} {
		_, err := who.Daemon.Ledger.Append(ctx, ledger.TypeAccess, ledger.AccessPayload{Record: rec, Version: 1, Purpose: "treatment", Time: time.Now(), Grant: gV.Entry})
		if !refused(who, err) {
			t.Fatalf("%s's claim of a read: %v", who.Name, err)
		}
	}

	// G runs a modified node: it fetches the blocks itself and reports
	// nothing. The owner served them and attests the read.
	fctx, fcancel := context.WithTimeout(p2p.NoKeep(ctx), 10*time.Second)
	if err := G.Daemon.P2P.GetMany(p2p.WithHolders(fctx, A.ID), append([]cid.Cid{rec}, ids...), func(blocks.Block) error { return nil }); err != nil {
		t.Fatalf("G's unreported fetch: %v", err)
	}
	fcancel()
	var evs []api.AccessEvent
	waitFor(t, "G's unreported read in the owner's audit", 20*time.Second, func() (bool, string) {
		if err := A.API.Do(ctx, "GET", api.Prefix+"/records/"+rec.String()+"/audit", nil, &evs); err != nil {
			return false, err.Error()
		}
		// (V's claim comes with its node's next batch of claims.)
		g, v := false, false
		for _, e := range evs {
			g = g || e.Reader == G.ID.String()
			v = v || e.Reader == V.ID.String() && e.ReportedCount == 1
		}
		return g && v, fmt.Sprintf("%+v", evs)
	})
	for _, e := range evs {
		if e.Reader == G.ID.String() && (e.Count != 1 || e.ReportedCount != 0 || !e.Review || e.Purpose != "research" ||
			len(e.AttestedBy) != 1 || e.AttestedBy[0] != A.ID.String()) {
			t.Fatalf("G's read: %+v", e)
		}
		if e.Reader == V.ID.String() && (e.Count != 1 || e.ReportedCount != 1 || e.Review) {
			t.Fatalf("V's honest read: %+v\nclaims: %+v\nV's: %+v", e, A.Daemon.Ledger.Access(rec), V.Daemon.Ledger.Access(rec))
		}
	}
}
