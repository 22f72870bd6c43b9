package records_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	bstore "github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/node/p2p"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/keywrap"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/blockstore"
)

// A network in memory for the records service: every node has a real
// ledger (in-memory datastores), and what one appends every other ingests
// at once (the bus), as gossip would; blocks move through a fake network
// that applies each holder's block filter (Allow) and tells it what it
// served (Served), as bitswap and the bulk protocol do. Nothing here
// listens on a socket.

// clock is the network's shared clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type testNet struct {
	t     testing.TB
	clock *clock
	// disk: each node keeps its ledger and blocks in a badger datastore
	// of its own (blockstore.Open), as a daemon does, and the service
	// answers HasAll from it.
	disk   bool
	mu     sync.Mutex
	nodes  []*node
	erased map[cid.Cid]bool // record versions erased (Config.Erased)
}

// erase marks record version id erased on every node, as a record.erase
// entry does.
func (tn *testNet) erase(id cid.Cid) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if tn.erased == nil {
		tn.erased = map[cid.Cid]bool{}
	}
	tn.erased[id] = true
}

func (tn *testNet) isErased(id cid.Cid) bool {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.erased[id]
}

type node struct {
	net    *testNet
	id     peer.ID
	kem    *keywrap.PrivateKey
	led    *ledger.Ledger
	store  bstore.Blockstore
	disk   *blockstore.Store // with testNet.disk
	local  datastore.Batching
	svc    *records.Service
	adds   *addLog
	synced int // Durable.Sync calls
	// waits: a block no node serves is waited for until the fetch's
	// context ends (as the network does while it looks for providers),
	// instead of failing at once.
	waits bool
}

// bus is a node's ledger as its service sees it: what it appends reaches
// every other node's ledger before Append returns, and every service
// hears of it (OnEntry), as the daemon's followLedger tells it.
type bus struct {
	*ledger.Ledger
	n *node
}

func (b bus) Append(ctx context.Context, typ string, payload any) (*ledger.Entry, error) {
	e, err := b.Ledger.Append(ctx, typ, payload)
	if err != nil {
		return nil, err
	}
	b.n.net.deliver(b.n, e)
	return e, nil
}

func (b bus) AppendAt(ctx context.Context, typ string, payload any, pos ledger.Position, at time.Time) (*ledger.Entry, error) {
	e, err := b.Ledger.AppendAt(ctx, typ, payload, pos, at)
	if err != nil {
		return nil, err
	}
	b.n.net.deliver(b.n, e)
	return e, nil
}

func (nd *node) bus() bus { return bus{Ledger: nd.led, n: nd} }

func (tn *testNet) deliver(from *node, e *ledger.Entry) {
	tn.mu.Lock()
	nodes := append([]*node(nil), tn.nodes...)
	tn.mu.Unlock()
	for _, n := range nodes {
		if n != from {
			if err := n.led.Ingest(context.Background(), e.Bytes()); err != nil {
				tn.t.Errorf("%s ingests %s from %s: %v", n.id.ShortString(), e.Type, from.id.ShortString(), err)
			}
		}
		if n.svc != nil {
			n.svc.OnEntry(e)
		}
	}
}

// newNet starts a network of n nodes; node 0 is its admin, every node a
// member with an announced key. Node i gets roles[i], if given.
func newNet(t testing.TB, n int, roles ...[]string) *testNet {
	t.Helper()
	return startNet(&testNet{t: t, clock: &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}}, n, roles...)
}

// newDiskNet is newNet with every node on badger (testNet.disk).
func newDiskNet(t testing.TB, n int) *testNet {
	t.Helper()
	return startNet(&testNet{t: t, disk: true, clock: &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}}, n)
}

func startNet(tn *testNet, n int, roles ...[]string) *testNet {
	t := tn.t
	keys := make([]crypto.PrivKey, n)
	for i := range keys {
		keys[i] = newKey(t)
	}
	genesis, _, err := ledger.NewGenesis(keys[0], "records-test", tn.clock.Now(), ledger.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		tn.addNode(keys[i], genesis)
	}
	ctx := context.Background()
	admin := tn.nodes[0]
	for i, nd := range tn.nodes[1:] {
		var r []string
		if i+1 < len(roles) {
			r = roles[i+1]
		}
		if _, err := admin.bus().Append(ctx, ledger.TypeMemberAdd, ledger.MemberAddPayload{Peer: nd.id, Org: "clinic", Roles: r}); err != nil {
			t.Fatal(err)
		}
	}
	for _, nd := range tn.nodes {
		if _, err := nd.bus().Append(ctx, ledger.TypeKeyAnnounce, ledger.KeyAnnouncePayload{Public: nd.kem.Public()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, nd := range tn.nodes {
		nd.start()
	}
	return tn
}

func memDS() datastore.Batching { return dssync.MutexWrap(datastore.NewMapDatastore()) }

func (tn *testNet) addNode(key crypto.PrivKey, genesis []byte) *node {
	t := tn.t
	id, _ := peer.IDFromPrivateKey(key)
	kem, err := keywrap.Generate()
	if err != nil {
		t.Fatal(err)
	}
	nd := &node{net: tn, id: id, kem: kem, store: bstore.NewBlockstore(memDS()), local: memDS()}
	ds, entries := memDS(), bstore.NewBlockstore(memDS())
	if tn.disk {
		store, err := blockstore.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() }) // after the ledger's and the service's
		nd.disk, nd.store, nd.local = store, store.Blocks, namespace.Wrap(store.DS, datastore.NewKey("/medmesh/local"))
		ds, entries = store.DS, store.Blocks
	}
	led, err := ledger.Open(context.Background(), ledger.Options{
		DS: ds, Blocks: entries, Key: key, Genesis: genesis,
		Logger: slog.New(slog.DiscardHandler), Now: tn.clock.Now, Types: ledger.Builtin(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	nd.led = led
	nd.adds = &addLog{store: nd.store}
	tn.mu.Lock()
	tn.nodes = append(tn.nodes, nd)
	tn.mu.Unlock()
	return nd
}

func (nd *node) start() {
	t := nd.net.t
	cfg := records.Config{
		Self: nd.id, KEM: nd.kem, Ledger: nd.bus(), Blocks: nd.store, Durable: syncer{nd}, Local: nd.local,
		BeginAdd: nd.adds.begin, Replicas: 1, FetchTimeout: 5 * time.Second,
		Now: nd.net.clock.Now, Logger: slog.New(slog.DiscardHandler), Erased: nd.net.isErased,
	}
	if nd.disk != nil {
		cfg.HasAll = nd.disk.HasAll
	}
	svc, err := records.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc.Start(fakeNet{nd})
	t.Cleanup(svc.Close)
	nd.svc = svc
}

type syncer struct{ n *node }

func (s syncer) Sync(context.Context, datastore.Key) error { s.n.synced++; return nil }

// addLog is the garbage collector's add protocol, as far as the service
// sees it: it counts the adds that end, committed or not, and rolls back
// the blocks of those that do not commit.
type addLog struct {
	store     bstore.Blockstore
	mu        sync.Mutex
	committed int
	rolled    int
	named     []cid.Cid
}

type fakeAdd struct {
	l   *addLog
	put []cid.Cid
}

func (l *addLog) begin(context.Context) (records.Add, error) { return &fakeAdd{l: l}, nil }

func (a *fakeAdd) PutCopies() bool { return false }
func (a *fakeAdd) Put(ctx context.Context, b blocks.Block) error {
	a.put = append(a.put, b.Cid())
	return a.l.store.Put(ctx, b)
}
func (a *fakeAdd) PutMany(ctx context.Context, bs []blocks.Block) error {
	for _, b := range bs {
		if err := a.Put(ctx, b); err != nil {
			return err
		}
	}
	return nil
}
func (a *fakeAdd) Named(_ context.Context, rec cid.Cid) error {
	a.l.mu.Lock()
	a.l.named = append(a.l.named, rec)
	a.l.mu.Unlock()
	return nil
}
func (a *fakeAdd) End(committed bool) {
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	if committed {
		a.l.committed++
		return
	}
	a.l.rolled++
	for _, c := range a.put {
		a.l.store.DeleteBlock(context.Background(), c)
	}
}

// fakeNet is the network as node n sees it: a block comes from the first
// other node that stores it and whose block filter lets n have it.
type fakeNet struct{ n *node }

func (f fakeNet) from(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	if b, err := f.n.store.Get(ctx, c); err == nil {
		return b, nil
	}
	for _, o := range f.n.net.nodes {
		if o == f.n || o.svc == nil {
			continue
		}
		b, err := o.store.Get(ctx, c)
		if err != nil || !o.svc.Allow(f.n.id, c) {
			continue
		}
		o.svc.Served(f.n.id, c)
		return b, nil
	}
	if f.n.waits {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, p2p.ErrNotFetched
}

func (f fakeNet) GetFrom(ctx context.Context, c cid.Cid, _ []peer.ID) (blocks.Block, error) {
	return f.from(ctx, c)
}

func (f fakeNet) GetBlocks(ctx context.Context, cids []cid.Cid, _ int) <-chan p2p.Fetched {
	ch := make(chan p2p.Fetched)
	go func() {
		defer close(ch)
		for _, c := range cids {
			b, err := f.from(ctx, c)
			select {
			case ch <- p2p.Fetched{Block: b, Err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

func (fakeNet) Provide(context.Context, []cid.Cid) error { return nil }
func (fakeNet) Connected(peer.ID) bool                   { return true }

// add stores data as a one-file record on nd.
func (nd *node) add(t testing.TB, name string, data []byte, mod ...func(*records.AddRequest)) *records.AddResult {
	t.Helper()
	req := records.AddRequest{Name: name, Files: []records.FileSource{{Path: name, Open: func() (io.Reader, error) { return bytes.NewReader(data), nil }}}}
	for _, m := range mod {
		m(&req)
	}
	res, err := nd.svc.Add(context.Background(), req)
	if err != nil {
		t.Fatalf("add %s: %v", name, err)
	}
	return res
}

// get reads a record on nd.
func (nd *node) get(id cid.Cid, version int) ([]byte, error) {
	var buf bytes.Buffer
	err := nd.svc.Get(context.Background(), id, records.GetRequest{File: -1, Version: version}, &buf)
	return buf.Bytes(), err
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func newKey(t testing.TB) crypto.PrivKey {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
