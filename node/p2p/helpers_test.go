package p2p

import (
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/multiformats/go-multiaddr"
	"github.com/multiformats/go-multihash"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	mbs "github.com/medmesh/medmesh/storage/blockstore"
)

// memberSet is a static, mutable Membership for tests.
type memberSet struct {
	mu sync.RWMutex
	m  map[peer.ID]bool
}

func newMemberSet(ids ...peer.ID) *memberSet {
	s := &memberSet{m: make(map[peer.ID]bool)}
	for _, id := range ids {
		s.m[id] = true
	}
	return s
}

func (s *memberSet) IsMember(p peer.ID) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m[p]
}

func (s *memberSet) remove(p peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, p)
}

// identity is a test node's key and peer ID.
type identity struct {
	key crypto.PrivKey
	id  peer.ID
}

func newIdentity(t testing.TB) identity {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return identity{k, id}
}

func newPSK(t testing.TB) pnet.PSK {
	t.Helper()
	psk := make([]byte, 32)
	if _, err := rand.Read(psk); err != nil {
		t.Fatal(err)
	}
	return psk
}

// testNode is a running node with its own badger store and registry.
type testNode struct {
	*Node
	store *mbs.Store
	reg   *prometheus.Registry
}

func testLogger() *slog.Logger {
	lvl := slog.LevelWarn
	if os.Getenv("P2P_TEST_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func loopback(t testing.TB) []multiaddr.Multiaddr {
	return []multiaddr.Multiaddr{multiaddr.StringCast("/ip4/127.0.0.1/tcp/0")}
}

// startNode starts a node for id; mod may adjust the config. The node and
// its store are closed when the test ends.
func startNode(t testing.TB, id identity, psk pnet.PSK, members Membership, mod func(*Config)) *testNode {
	t.Helper()
	store, err := mbs.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return startNodeWithStore(t, id, psk, members, store, mod)
}

func startNodeWithStore(t testing.TB, id identity, psk pnet.PSK, members Membership, store *mbs.Store, mod func(*Config)) *testNode {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{
		Identity:     id.key,
		ListenAddrs:  loopback(t),
		PSK:          psk,
		NetworkID:    "test",
		Members:      members,
		Blockstore:   store.Blocks,
		Metrics:      reg,
		Logger:       testLogger(),
		StallTimeout: time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := New(ctx, cfg)
	if err != nil {
		_ = store.Close()
		t.Fatal(err)
	}
	tn := &testNode{Node: n, store: store, reg: reg}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close node: %v", err)
		}
		if err := store.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return tn
}

// waitFor polls cond until it holds or d elapses.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func connected(a *Node, b peer.ID) bool {
	return a.Host.Network().Connectedness(b) == network.Connected
}

// randomBlock makes a raw CIDv1 sha2-256 block of size random bytes.
func randomBlock(t testing.TB, size int) blocks.Block {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	c, err := cid.V1Builder{Codec: cid.Raw, MhType: multihash.SHA2_256}.Sum(data)
	if err != nil {
		t.Fatal(err)
	}
	b, err := blocks.NewBlockWithCid(data, c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func putBlocks(t testing.TB, bs blockstore.Blockstore, bl ...blocks.Block) {
	t.Helper()
	if err := bs.PutMany(context.Background(), bl); err != nil {
		t.Fatal(err)
	}
}

// counterValue reads a prometheus counter.
func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// holderAndFetcher starts two members of a fresh network, the fetcher
// bootstrapping from the holder (mod, if set, adjusts the fetcher's
// config), and waits until they are connected.
func holderAndFetcher(t testing.TB, mod func(*Config)) (holder, fetcher *testNode) {
	t.Helper()
	psk := newPSK(t)
	ih, ifch := newIdentity(t), newIdentity(t)
	members := newMemberSet(ih.id, ifch.id)
	holder = startNode(t, ih, psk, members, nil)
	fetcher = startNode(t, ifch, psk, members, func(c *Config) {
		c.Bootstrap = []peer.AddrInfo{holder.AddrInfo()}
		if mod != nil {
			mod(c)
		}
	})
	waitFor(t, 10*time.Second, "connected", func() bool { return connected(fetcher.Node, holder.ID()) })
	return holder, fetcher
}
