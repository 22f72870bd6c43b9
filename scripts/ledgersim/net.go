package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/medmesh/medmesh/node/p2p"
	"github.com/medmesh/medmesh/sharing/keywrap"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// Designs the simulation can run.
const (
	// DesignSingle is the ledger as it is before issue #16's scopes: one
	// GossipSub topic, every entry to every node, kept forever.
	DesignSingle = "single"
	// DesignScoped is issue #16's design: global, owner and audit scopes.
	DesignScoped = "scoped"
)

// Designs lists the -design choices.
func Designs() []string { return []string{DesignSingle, DesignScoped} }

// designGenesis founds the simulated network in the given design: the
// simulation's only switch between designs (a scoped network is one whose
// genesis says so). Everything else — the workload, the seed, the network,
// the measurements — is the same.
func designGenesis(design string, admin *ident, now time.Time) ([]byte, error) {
	var g []byte
	var err error
	switch design {
	case DesignSingle:
		g, _, err = ledger.NewGenesis(admin.key, "ledgersim", now, ledger.Builtin())
	case DesignScoped:
		g, _, err = ledger.NewGenesis(admin.key, "ledgersim", now, ledger.Builtin(), ledger.WithScopes())
	default:
		return nil, fmt.Errorf("unknown design %q (choices: %v)", design, Designs())
	}
	return g, err
}

// ident is a clinic's identity: its libp2p key and its HPKE key.
type ident struct {
	key crypto.PrivKey
	id  peer.ID
	kem *keywrap.PrivateKey
	org string
}

func newIdent(i int) (*ident, error) {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	kem, err := keywrap.Generate()
	if err != nil {
		return nil, err
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return &ident{key: k, id: id, kem: kem, org: fmt.Sprintf("clinic-%03d", i)}, nil
}

// delivery is one entry applied at one node.
type delivery struct {
	c  cid.Cid
	at time.Time
}

// node is one clinic: a mocknet host, GossipSub and a ledger on an
// in-memory store.
type node struct {
	idx   int
	who   *ident
	h     *countingHost
	ps    *pubsub.PubSub
	l     *ledger.Ledger
	st    *countingStore
	tr    traffic
	att   *attestor
	alive atomic.Bool
	// started is when the node came up: entries published before a
	// joiner started reach it by catch-up, not propagation.
	started time.Time

	cancel    context.CancelFunc
	unsub     func()
	delivMu   sync.Mutex
	delivered []delivery
	subDone   chan struct{}
}

func (n *node) deliveries() []delivery {
	n.delivMu.Lock()
	defer n.delivMu.Unlock()
	return append([]delivery(nil), n.delivered...)
}

// sim is one run: the network, its nodes and the setup entries.
type sim struct {
	cfg     Config
	mn      mocknet.Mocknet
	genesis []byte
	setup   []*ledger.Entry // genesis and the admissions and keys of the first cfg.Nodes clinics
	setupKV []kvPair        // the state those entries leave

	mu     sync.Mutex
	nodes  []*node // by index (nil until started)
	ids    []*ident
	byPeer map[peer.ID]int // written before the nodes start, then only read
	w      *workload

	pubMu     sync.Mutex
	published map[cid.Cid]pubInfo
}

type kvPair struct {
	k string
	v []byte
}

// pubInfo is what the simulation knows of an entry it appended.
type pubInfo struct {
	typ    string
	scope  string
	author int
	at     time.Time // when Append returned (the entry was applied locally and published)
	// followers are the nodes (by index) that followed the entry's scope
	// when it was published, for an entry about records and reads: the
	// nodes it propagates to. A node that starts following the scope later
	// (a grant to it, a change of replica groups) gets it by catch-up.
	followers map[int]bool
}

func (s *sim) notePublished(e *ledger.Entry, author int, at time.Time) {
	p := pubInfo{typ: e.Type, scope: e.ScopeName(), author: author, at: at}
	if !GlobalType(e.Type) {
		p.followers = map[int]bool{}
		for _, n := range s.allNodes() {
			if n.alive.Load() && n.l.Follows(e.Scope) {
				p.followers[n.idx] = true
			}
		}
	}
	s.pubMu.Lock()
	s.published[e.CID()] = p
	s.pubMu.Unlock()
}

func (s *sim) node(i int) *node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nodes[i]
}

// up reports whether clinic i's node has started and not left.
func (s *sim) up(i int) bool {
	n := s.node(i)
	return n != nil && n.alive.Load()
}

// allNodes returns the nodes started so far, by index.
func (s *sim) allNodes() []*node {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*node
	for _, n := range s.nodes {
		if n != nil {
			out = append(out, n)
		}
	}
	return out
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// buildSetup signs the network's founding entries on a builder ledger: the
// admin's admission of every first clinic (with its org) and every clinic's
// key announcement. Every node starts from the state they leave, as a
// node does after it has caught up once; the joiners of the workload start
// from the genesis alone.
func (s *sim) buildSetup(ctx context.Context) error {
	admin := s.ids[0]
	var err error
	s.genesis, err = designGenesis(s.cfg.Design, admin, time.Now())
	if err != nil {
		return err
	}
	g, err := ledger.DecodeEntry(s.genesis)
	if err != nil {
		return err
	}
	store := ledger.NewMemStore()
	core, err := ledger.NewCore(ctx, ledger.CoreConfig{Store: store, Genesis: s.genesis, Types: ledger.Builtin()})
	if err != nil {
		return err
	}
	s.setup = []*ledger.Entry{g}
	add := func(key crypto.PrivKey, typ string, pl any) error {
		e, _, err := core.Append(ctx, key, typ, pl, time.Now())
		if err != nil {
			return fmt.Errorf("setup %s: %w", typ, err)
		}
		s.setup = append(s.setup, e)
		return nil
	}
	for _, m := range s.ids[1:s.cfg.Nodes] {
		if err := add(admin.key, ledger.TypeMemberAdd, ledger.MemberAddPayload{Peer: m.id, Org: m.org}); err != nil {
			return err
		}
	}
	if err := add(admin.key, ledger.TypeMemberOrg, ledger.MemberOrgPayload{Peer: admin.id, Org: admin.org}); err != nil {
		return err
	}
	for _, m := range s.ids[:s.cfg.Nodes] {
		if err := add(m.key, ledger.TypeKeyAnnounce, ledger.KeyAnnouncePayload{Public: m.kem.Public()}); err != nil {
			return err
		}
	}
	return store.Scan(ctx, "", false, func(k string, v []byte) bool {
		s.setupKV = append(s.setupKV, kvPair{k, append([]byte(nil), v...)})
		return true
	})
}

// newStore returns a node's store: a copy of the setup's, or empty for a
// joiner (whose ledger then applies the genesis and syncs everything else).
func (s *sim) newStore(ctx context.Context, withSetup bool) (*countingStore, error) {
	st := newCountingStore(ledger.NewMemStore())
	if !withSetup {
		return st, nil
	}
	b, err := st.Batch(ctx)
	if err != nil {
		return nil, err
	}
	for _, kv := range s.setupKV {
		if err := b.Put(kv.k, kv.v); err != nil {
			return nil, err
		}
	}
	if err := st.PutEntries(ctx, s.setup); err != nil {
		return nil, err
	}
	return st, b.Commit(ctx)
}

// addNode creates clinic i's host, GossipSub and ledger, links it to every
// clinic (the configured latency) so that any may dial it, starts the
// ledger and connects it to peers (indexes of live nodes). It records every
// entry the ledger applies from then on.
func (s *sim) addNode(ctx context.Context, i int, withSetup bool, peers []int) (*node, error) {
	who := s.ids[i]
	addr, err := ma.NewMultiaddr(fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4001", i>>16&255, i>>8&255, i&255))
	if err != nil {
		return nil, err
	}
	h, err := s.mn.AddPeer(who.key, addr)
	if err != nil {
		return nil, err
	}
	n := &node{idx: i, who: who, subDone: make(chan struct{}), started: time.Now()}
	n.h = &countingHost{Host: h, t: &n.tr}
	st, err := s.newStore(ctx, withSetup)
	if err != nil {
		return nil, err
	}
	n.st = st
	o := ledger.Options{Store: st, Key: who.key, Genesis: s.genesis, Types: ledger.Builtin(), Logger: quietLogger(),
		SyncInterval: s.cfg.SyncInterval, ScopeCheckpointEvery: s.cfg.ScopeCheckpointEvery, GossipRepairAfter: s.cfg.GossipRepairAfter}
	n.l, err = ledger.Open(ctx, o)
	if err != nil {
		return nil, err
	}
	nctx, cancel := context.WithCancel(ctx)
	n.cancel = cancel
	// As node/p2p configures it: only members take part, messages signed,
	// a node's own messages flooded to its topic peers.
	n.ps, err = pubsub.NewGossipSub(nctx, n.h, p2p.GossipSubOptions(n.l)...)
	if err != nil {
		cancel()
		n.l.Close()
		return nil, err
	}
	ch, unsub := n.l.Subscribe()
	n.unsub = unsub
	go func() {
		defer close(n.subDone)
		for e := range ch {
			now := time.Now()
			n.delivMu.Lock()
			n.delivered = append(n.delivered, delivery{e.CID(), now})
			n.delivMu.Unlock()
		}
	}()
	n.att = newAttestor(s, n)
	n.alive.Store(true)
	s.mu.Lock()
	s.nodes[i] = n
	s.mu.Unlock()
	if err := n.l.Start(nctx, n.h, n.ps); err != nil {
		return nil, err
	}
	// Every clinic can reach every other (a ledger may dial a peer it
	// needs, as a node finds any member through the DHT); it connects to
	// peers.
	for _, o := range s.allNodes() {
		if o != n {
			if _, err := s.mn.LinkPeers(h.ID(), o.h.ID()); err != nil {
				return nil, err
			}
		}
	}
	for _, j := range peers {
		if _, err := s.mn.ConnectPeers(h.ID(), s.node(j).h.ID()); err != nil {
			return nil, fmt.Errorf("connect %d to %d: %w", i, j, err)
		}
	}
	return n, nil
}

// stopNode takes a clinic off the network: its ledger closes and its links
// go.
func (s *sim) stopNode(n *node) {
	if !n.alive.CompareAndSwap(true, false) {
		return
	}
	n.att.stop()
	n.unsub()
	<-n.subDone
	n.l.Close()
	n.cancel()
	for _, p := range n.h.Network().Peers() {
		_ = s.mn.UnlinkPeers(n.h.ID(), p)
		_ = s.mn.DisconnectPeers(n.h.ID(), p)
	}
}
