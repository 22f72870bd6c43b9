package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/medmesh/medmesh/storage/blockstore"
)

type meshNode struct {
	h   host.Host
	ps  *pubsub.PubSub
	l   *Ledger
	st  *blockstore.Store
	dir string
	who *ident
}

// newMesh builds n ledgers on a mocknet with real GossipSub. Node 0 writes
// the setup entries before anyone is connected; the others catch up by sync.
func newMesh(t testing.TB, w *world, n int) (mocknet.Mocknet, []*meshNode) {
	t.Helper()
	// Generous: forming a 50-node mesh (BenchmarkPropagation) took 1.5 to 3
	// minutes on two cores shared with other builds. What the benchmark
	// measures starts after this.
	return startMesh(t, w, n, 10000, 5*time.Minute, func(l *Ledger) {
		w.setup(t, l)
		w.grantAll(t, l)
	})
}

// startMesh opens n ledgers of w's network, each on a mocknet host (ports
// from port) with its own GossipSub; setup writes node 0's first entries
// before anyone is connected; then all are linked, started, connected and
// waited for (converge) to reach the same state.
func startMesh(t testing.TB, w *world, n, port int, converge time.Duration, setup func(*Ledger)) (mocknet.Mocknet, []*meshNode) {
	t.Helper()
	return startMeshEvery(t, w, n, port, converge, 500*time.Millisecond, setup)
}

// startMeshEvery is startMesh with the ledgers syncing every syncInterval.
func startMeshEvery(t testing.TB, w *world, n, port int, converge, syncInterval time.Duration, setup func(*Ledger)) (mocknet.Mocknet, []*meshNode) {
	t.Helper()
	return startMeshWith(t, w, n, port, converge, syncInterval, setup, nil)
}

// startMeshWith is startMeshEvery with node i's GossipSub given the options
// psOpts(i) returns (psOpts may be nil).
func startMeshWith(t testing.TB, w *world, n, port int, converge, syncInterval time.Duration, setup func(*Ledger), psOpts func(int) []pubsub.Option) (mocknet.Mocknet, []*meshNode) {
	t.Helper()
	return startMeshOpts(t, w, n, port, converge, syncInterval, setup, psOpts, nil)
}

// startMeshOpts is startMeshWith with node i's ledger options changed by
// ledgerOpts(i, &o) (ledgerOpts may be nil).
func startMeshOpts(t testing.TB, w *world, n, port int, converge, syncInterval time.Duration, setup func(*Ledger), psOpts func(int) []pubsub.Option, ledgerOpts func(int, *Options)) (mocknet.Mocknet, []*meshNode) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	mn := mocknet.New()
	t.Cleanup(func() { cancel(); mn.Close() })
	nodes := make([]*meshNode, n)
	for i := 0; i < n; i++ {
		addr, _ := ma.NewMultiaddr(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port+i))
		h, err := mn.AddPeer(w.members[i].key, addr)
		if err != nil {
			t.Fatal(err)
		}
		var opts []pubsub.Option
		if psOpts != nil {
			opts = psOpts(i)
		}
		ps, err := pubsub.NewGossipSub(ctx, h, opts...)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		var lo []func(*Options)
		if ledgerOpts != nil {
			lo = append(lo, func(o *Options) { ledgerOpts(i, o) })
		}
		l, st := openAtEvery(t, dir, w.members[i], w.genesis, syncInterval, lo...)
		nd := &meshNode{h: h, ps: ps, l: l, st: st, dir: dir, who: w.members[i]}
		t.Cleanup(func() { nd.l.Close(); nd.st.Close() })
		nodes[i] = nd
	}
	setup(nodes[0].l)
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		if err := nd.l.Start(ctx, nd.h, nd.ps); err != nil {
			t.Fatal(err)
		}
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, nodes, converge)
	return mn, nodes
}

// waitConverged waits until every node has the same heads and digest.
func waitConverged(t testing.TB, nodes []*meshNode, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		h0, d0 := nodes[0].l.Heads(), nodes[0].l.Digest()
		for _, nd := range nodes[1:] {
			if !equalCids(h0, nd.l.Heads()) || !bytes.Equal(d0, nd.l.Digest()) {
				ok = false
				break
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for i, nd := range nodes {
				t.Logf("node %d: heads %v digest %x pending %d", i, nd.l.Heads(), nd.l.Digest()[:6], nd.l.core.pend.len())
			}
			t.Fatal("nodes did not converge")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// randomEntry appends a random audit/receipt/grant entry at node i.
func randomEntry(t testing.TB, w *world, nodes []*meshNode, i int, rng *rand.Rand) {
	t.Helper()
	nd := nodes[i]
	owner := (i + 1 + rng.IntN(len(nodes)-1)) % len(nodes) // someone else
	rec := recordPayload(t, w.members[owner], string(rune('a'+owner))).Record
	var err error
	switch rng.IntN(3) {
	case 0:
		_, err = nd.l.Append(context.Background(), TypeAccess, w.claim(t, owner, i, testEpoch))
	case 1:
		// Every member is a grantee of every setup record (grantAll), so
		// none may say it holds one.
		_, err = nd.l.Append(context.Background(), TypeReceipt, ReceiptPayload{Record: rec, Status: []string{"declined", "released"}[rng.IntN(2)]})
	default:
		own := recordPayload(t, nd.who, string(rune('a'+i))).Record
		to := w.members[rng.IntN(len(nodes))]
		_, err = nd.l.Append(context.Background(), TypeGrant, GrantPayload{Record: own, Grantee: to.id, Envelope: envelopeFor(t, to, "r"), Purpose: PurposeResearch})
	}
	if err != nil {
		t.Error(err)
	}
}

func TestTenNodesConverge(t *testing.T) {
	w := newWorld(t, 10)
	_, nodes := newMesh(t, w, 10)
	const total, writers = 1000, 4
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 1))
			for k := 0; k < total/writers; k++ {
				randomEntry(t, w, nodes, rng.IntN(len(nodes)), rng)
			}
		}(uint64(g))
	}
	wg.Wait()
	waitConverged(t, nodes, 60*time.Second)
	logs, err := nodes[3].l.Log(context.Background(), "", 0)
	if err != nil || len(logs) < total+30 {
		t.Fatalf("log has %d entries: %v", len(logs), err)
	}
	if err := nodes[5].l.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestPartitionHeals(t *testing.T) {
	w := newWorld(t, 10)
	mn, nodes := newMesh(t, w, 10)
	left, right := nodes[:5], nodes[5:]
	for _, a := range left {
		for _, b := range right {
			if err := mn.UnlinkPeers(a.h.ID(), b.h.ID()); err != nil {
				t.Fatal(err)
			}
			mn.DisconnectPeers(a.h.ID(), b.h.ID())
		}
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for k := 0; k < 100; k++ {
		randomEntry(t, w, nodes, rng.IntN(5), rng)   // left
		randomEntry(t, w, nodes, 5+rng.IntN(5), rng) // right
	}
	waitConverged(t, left, 30*time.Second)
	waitConverged(t, right, 30*time.Second)
	if bytes.Equal(left[0].l.Digest(), right[0].l.Digest()) {
		t.Fatal("halves cannot agree while partitioned")
	}
	for _, a := range left {
		for _, b := range right {
			if _, err := mn.LinkPeers(a.h.ID(), b.h.ID()); err != nil {
				t.Fatal(err)
			}
			if _, err := mn.ConnectPeers(a.h.ID(), b.h.ID()); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitConverged(t, nodes, 60*time.Second)
}

func TestRestartCatchesUp(t *testing.T) {
	w := newWorld(t, 5)
	_, nodes := newMesh(t, w, 5)
	rng := rand.New(rand.NewPCG(3, 3))
	down := nodes[4]
	for k := 0; k < 500; k++ {
		if k == 100 {
			down.l.Close()
			down.st.Close()
		}
		randomEntry(t, w, nodes[:4], rng.IntN(4), rng)
	}
	waitConverged(t, nodes[:4], 30*time.Second)
	l, st := openAt(t, down.dir, down.who, w.genesis)
	down.l, down.st = l, st
	if len(l.Heads()) == 0 || bytes.Equal(l.Digest(), nodes[0].l.Digest()) {
		t.Fatal("restarted node should hold its old state and be behind")
	}
	if err := l.Start(context.Background(), down.h, down.ps); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, nodes, 30*time.Second)
}

// TestCheckpointAskLogLevel: a scope checkpoint ask that got no answer (a
// peer down) is logged at debug, as a failed sync is, not as a warning
// each second per scope; a refused checkpoint is still a warning.
func TestCheckpointAskLogLevel(t *testing.T) {
	down := fmt.Errorf("ledger: ask p for checkpoints of owner/x: %w", fmt.Errorf("%w: %w", errNoAnswer, errors.New("all dials failed")))
	if got := ckptAskLevel(down); got != slog.LevelDebug {
		t.Fatalf("no answer: level %v", got)
	}
	if got := ckptAskLevel(fmt.Errorf("x: %w", ErrCheckpointMismatch)); got != slog.LevelWarn {
		t.Fatalf("a refused checkpoint: level %v", got)
	}
}
