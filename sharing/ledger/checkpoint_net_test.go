package ledger

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
)

// TestCheckpointJoinOverSync: the admin's node has history, a checkpoint,
// and pruned what it covers; a node that starts with nothing but the genesis
// joins from the checkpoint over the sync protocol, fetches the entries
// after it and reaches the admin's digest; a third node that
// has the entries adopts the checkpoint without loading it.
func TestCheckpointJoinOverSync(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cw := newCkptWorld(t)
	a := cw.a
	if _, err := a.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	full := openNode(t, cw.w.members[2], cw.w.genesis)
	ingestAll(t, full, cw.before)
	j := openNode(t, cw.w.members[1], cw.w.genesis)
	mn := mocknet.New()
	defer mn.Close()
	for i, nd := range []struct {
		l   *Ledger
		who *ident
	}{{a, cw.w.admin}, {j, cw.w.members[1]}, {full, cw.w.members[2]}} {
		addr, _ := ma.NewMultiaddr(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 11000+i))
		h, err := mn.AddPeer(nd.who.key, addr)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := pubsub.NewGossipSub(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if err := nd.l.Start(ctx, h, ps); err != nil {
			t.Fatal(err)
		}
	}
	// The joiner meets the admin's node first (the full node would serve it
	// every entry), then the full node.
	hs := mn.Hosts()
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{a.self.String(): 0, j.self.String(): 1, full.self.String(): 2}
	byRole := make([]int, 3)
	for i, h := range hs {
		byRole[ids[h.ID().String()]] = i
	}
	if _, err := mn.ConnectPeers(hs[byRole[1]].ID(), hs[byRole[0]].ID()); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); !bytes.Equal(j.Digest(), a.Digest()); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 2*time.Minute {
			t.Fatal("the joiner did not sync with the admin's node")
		}
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !(bytes.Equal(j.Digest(), a.Digest()) && bytes.Equal(full.Digest(), a.Digest()) && len(chainOf(t, full)) == 1) {
		if time.Now().After(deadline) {
			t.Fatalf("not converged: joiner digest %x, full %x, admin %x, full node's chain %d",
				j.Digest(), full.Digest(), a.Digest(), len(chainOf(t, full)))
		}
		time.Sleep(50 * time.Millisecond)
	}
	st, err := j.CheckpointStat(ctx)
	if err != nil || st.Base != cw.ck.CID() {
		t.Fatalf("joiner's base checkpoint %v (%v), want %s", st.Base, err, cw.ck.CID())
	}
	if _, err := j.Entry(ctx, cw.before[len(cw.before)-1].cid); err == nil {
		t.Fatal("the joiner replayed entries the checkpoint covers")
	}
	if st, _ := full.CheckpointStat(ctx); st.Base.Defined() {
		t.Fatal("the node that has the entries loaded the checkpoint")
	}
	if err := j.Verify(ctx); err != nil {
		t.Fatal(err)
	}

	// A second joiner meets only the node that has every entry, which
	// drops its first request for checkpoints and its first for a state
	// block (a connection replaced under it): the joiner must not replay
	// the history from it, and asks again.
	j2 := openNode(t, cw.w.members[3], cw.w.genesis)
	addr, _ := ma.NewMultiaddr("/ip4/127.0.0.1/tcp/11003")
	h2, err := mn.AddPeer(cw.w.members[3].key, addr)
	if err != nil {
		t.Fatal(err)
	}
	ps2, err := pubsub.NewGossipSub(ctx, h2)
	if err != nil {
		t.Fatal(err)
	}
	if err := j2.Start(ctx, h2, ps2); err != nil {
		t.Fatal(err)
	}
	fullHost := hs[byRole[2]]
	dropped := dropFirstRequests(fullHost, full, h2.ID(), "", opCheckpoints, opStateBlock)
	if _, err := mn.LinkPeers(h2.ID(), fullHost.ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := mn.ConnectPeers(h2.ID(), fullHost.ID()); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); !bytes.Equal(j2.Digest(), a.Digest()); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 2*time.Minute {
			t.Fatal("the second joiner did not sync with the full node")
		}
	}
	if st, err := j2.CheckpointStat(ctx); err != nil || st.Base != cw.ck.CID() || slices.Contains(dropped(), false) {
		t.Fatalf("second joiner's base checkpoint %v (%v), want %s; requests dropped %v", st.Base, err, cw.ck.CID(), dropped())
	}
}

// dropFirstRequests makes h's sync handler (serving l) reset the first
// request of each of ops that peer from sends for wire scope scope, as a
// connection replaced under it would, and serve everything else as
// handleSync does. The function it returns says which were dropped.
func dropFirstRequests(h host.Host, l *Ledger, from peer.ID, scope string, ops ...uint8) func() []bool {
	dropped := make([]atomic.Bool, len(ops))
	h.SetStreamHandler(SyncProtocol, func(s network.Stream) {
		defer s.Close()
		var req syncReq
		if err := readMsg(bufio.NewReader(s), maxSyncRequest, &req); err != nil {
			s.Reset()
			return
		}
		if i := slices.Index(ops, req.Op); i >= 0 && req.Scope == scope && s.Conn().RemotePeer() == from && dropped[i].CompareAndSwap(false, true) {
			s.Reset()
			return
		}
		if err := writeMsg(s, l.serveFrom(context.Background(), &req, s.Conn().RemotePeer())); err != nil {
			s.Reset()
		}
	})
	return func() []bool {
		out := make([]bool, len(ops))
		for i := range dropped {
			out[i] = dropped[i].Load()
		}
		return out
	}
}
