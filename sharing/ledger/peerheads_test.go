package ledger

import (
	"bufio"
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
)

// TestPeerHeadsWalksNothing: the health check's PeerHeads asks a peer 1,000
// entries ahead for its heads and gets them with one request that walks no
// difference on the server (it used to ask for one entry of the
// difference, which walked all of it); a server older than opHeads, which
// answers "unknown op", is asked the old way and still gives its heads.
func TestPeerHeadsWalksNothing(t *testing.T) {
	ctx := context.Background()
	w, src := claimHistory(t, 1000)
	behind := openNode(t, w.members[1], w.genesis)

	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	addr := func(port string) ma.Multiaddr {
		a, _ := ma.NewMultiaddr("/ip4/127.0.0.1/tcp/" + port)
		return a
	}
	hs, err := mn.AddPeer(w.admin.key, addr("12001"))
	if err != nil {
		t.Fatal(err)
	}
	hc, err := mn.AddPeer(w.members[1].key, addr("12002"))
	if err != nil {
		t.Fatal(err)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	// The server: src's answers, as handleSync gives them, with the ops
	// asked recorded; old makes it answer opHeads as a server without it.
	var mu sync.Mutex
	var ops []uint8
	old := false
	hs.SetStreamHandler(SyncProtocol, func(s network.Stream) {
		defer s.Close()
		var req syncReq
		if err := readMsg(bufio.NewReader(s), maxSyncRequest, &req); err != nil {
			s.Reset()
			return
		}
		mu.Lock()
		ops = append(ops, req.Op)
		o := old
		mu.Unlock()
		resp := &syncResp{Err: "unknown op"}
		if !o || req.Op != opHeads {
			resp = src.serveFrom(ctx, &req, s.Conn().RemotePeer())
		}
		if err := writeMsg(s, resp); err != nil {
			s.Reset()
		}
	})
	ask := func(wantOps ...uint8) {
		t.Helper()
		mu.Lock()
		ops = nil
		mu.Unlock()
		walks := src.cursors.walks
		got, err := behind.PeerHeads(ctx, hc, hs.ID())
		if err != nil {
			t.Fatal(err)
		}
		if !equalCids(got, src.Heads()) || equalCids(got, behind.Heads()) {
			t.Fatalf("PeerHeads gave %v, want the server's %v", got, src.Heads())
		}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(ops, wantOps) {
			t.Fatalf("requests %v, want %v", ops, wantOps)
		}
		if n := src.cursors.walks - walks; n != uint64(len(wantOps)-1) {
			t.Fatalf("the server walked the difference %d times for the heads, want %d", n, len(wantOps)-1)
		}
	}
	ask(opHeads)
	mu.Lock()
	old = true
	mu.Unlock()
	ask(opHeads, opDiff)
}
