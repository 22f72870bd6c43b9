package replication

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/medmesh/medmesh/sharing/ledger"
	rules "github.com/medmesh/medmesh/sharing/replication"
)

// Ledger is what the manager reads from the ledger, and appends to it
// (*ledger.Ledger).
type Ledger interface {
	Subscribe() (<-chan *ledger.Entry, func())
	Holders(info ledger.RecordInfo) []peer.ID
	Members() []ledger.Member
	IsMember(p peer.ID) bool
	Record(rec cid.Cid) (ledger.RecordInfo, bool)
	// RecordIDs lists every record (the start-up pass reads them one by
	// one, so it never holds every announcement in memory).
	RecordIDs(ctx context.Context) ([]cid.Cid, error)
	// HeldIDs lists the records p holds (the ledger's holder index).
	HeldIDs(ctx context.Context, p peer.ID) ([]cid.Cid, error)
	// OwnedIDs lists the records p owns (the ledger's owner index).
	OwnedIDs(ctx context.Context, p peer.ID) ([]cid.Cid, error)
	Receipts(rec cid.Cid) []ledger.Receipt
	GrantHistory(rec cid.Cid) []ledger.Grant
	HoldAuthority(info ledger.RecordInfo) rules.Authority
	Append(ctx context.Context, typ string, payload any) (*ledger.Entry, error)
}

// Network fetches blocks from, and announces them to, the private network
// (node/p2p.Node, with FindProviders from its DHT).
type Network interface {
	// Connect dials a member (an empty AddrInfo.Addrs: the addresses known).
	Connect(ctx context.Context, ai peer.AddrInfo) error
	// Get fetches one block (or reads it from the store), storing it.
	Get(ctx context.Context, c cid.Cid) (blocks.Block, error)
	// GetMany fetches the blocks not stored yet, storing each, and calls fn
	// with every block.
	GetMany(ctx context.Context, cids []cid.Cid, fn func(blocks.Block) error) error
	// Provide announces cids on the DHT.
	Provide(ctx context.Context, cids []cid.Cid) error
	// FindProviders returns up to max providers of c on the DHT, until ctx
	// ends.
	FindProviders(ctx context.Context, c cid.Cid, max int) []peer.ID
}

// Blocks is the node's blockstore (storage/blockstore.Store.Blocks): it
// verifies every block it returns against its CID.
type Blocks interface {
	Get(ctx context.Context, c cid.Cid) (blocks.Block, error)
	Has(ctx context.Context, c cid.Cid) (bool, error)
	DeleteBlock(ctx context.Context, c cid.Cid) error
}

// Syncer makes writes durable (the node's whole datastore,
// storage/blockstore.Store.DS).
type Syncer interface {
	Sync(ctx context.Context, prefix datastore.Key) error
}

// Records is what the manager needs of the records service (node/records;
// *daemon.Daemon until it moves there): its block index, which maps every
// block this node stores for a record to the record and decides who may
// receive it, and which records this node owns.
type Records interface {
	// AddBlocks indexes bs as blocks of rec (before they are fetched: a
	// block is served only to peers allowed to read its record).
	AddBlocks(ctx context.Context, rec cid.Cid, bs []cid.Cid)
	// RecordOf returns the record block b belongs to.
	RecordOf(b cid.Cid) (cid.Cid, bool)
	// BlocksOf lists the indexed blocks of rec.
	BlocksOf(rec cid.Cid) []cid.Cid
	// IndexedBlocks returns a copy of the block index (block -> record).
	IndexedBlocks() map[cid.Cid]cid.Cid
	// Owns reports whether this node owns rec, or is adding it.
	Owns(ctx context.Context, rec cid.Cid) bool
	// Owned lists the records this node owns or is adding (it stores their
	// keys).
	Owned(ctx context.Context) ([]cid.Cid, error)
}

// Config is what a Manager needs. Every field but Options, Replicas,
// Quota, FetchTimeout, Now, Log and Metrics is required.
type Config struct {
	Self    peer.ID
	Options Options
	// Replicas is the network's default replica count (a record that does
	// not say); Quota caps the bytes of the replicas this node pins (0: no
	// cap); DiskDir is the directory whose filesystem they are stored on
	// (DiskReserve is kept free there).
	Replicas int
	Quota    int64
	DiskDir  string
	// FetchTimeout bounds how long a replica's blocks are looked for (plus
	// a second per 4 MiB of the record). Default 60s.
	FetchTimeout time.Duration

	Ledger  Ledger
	Net     Network
	Host    host.Host // the challenge protocol; connectedness; known addresses
	Blocks  Blocks
	Durable Syncer
	Pins    *Pinset
	Records Records

	Now     func() time.Time
	Log     *slog.Logger
	Metrics prometheus.Registerer
	// Erased, when set, reports record versions their owner erased
	// (node/erasure): Status shows no holders for them.
	Erased func(cid.Cid) bool
}

// Manager runs placement, repair, proofs of storage and reprovides for one
// node. It decides only for its own node (sharing/replication's doc).
type Manager struct {
	self    peer.ID
	o       Options
	cfg     Config
	ledger  Ledger
	net     Network
	host    host.Host
	blocks  Blocks
	pins    *Pinset
	records Records
	now     func() time.Time
	log     *slog.Logger
	live    *rules.Liveness
	m       *metrics

	ctx    context.Context // ends at Close (or when Start's ctx ends)
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}
	sem    chan struct{}
	start  sync.Once
	closed sync.Once

	mu       sync.Mutex
	fetching map[cid.Cid]bool
	lost     map[cid.Cid]bool // releasing after a failed self-check
	upSet    map[peer.ID]bool // last liveness snapshot: a change re-plans the involved records
	dialing  map[peer.ID]bool // one re-dial in flight per absent member
	// failing are records with a holder failing its proofs of storage:
	// re-planned every Interval until the holder passes again (it stops
	// counting as alive for the record once it has failed for Grace).
	failing map[cid.Cid]bool

	// What the loop evaluates next (only the loop goroutine touches
	// these): records an entry was about, or every record after a change
	// of membership (and at start).
	dirty    map[cid.Cid]bool
	dirtyAll bool
	// changed are members that joined, left, changed org or whose
	// liveness changed since the last pass (followChanges).
	changed map[peer.ID]bool
	// loaded are owners whose scope the ledger loaded from a checkpoint
	// since the last pass (followLoaded).
	loaded map[peer.ID]bool
	// involved are the records this node may have to act on: it owns,
	// pins, fetches or declined them, or may hold them (placement's
	// window). Liveness changes and the periodic sweep re-plan only these,
	// so a node's idle work follows its own records, not the network's.
	involved map[cid.Cid]bool
	// short is when this node first saw each involved record short of
	// replicas (placement's Shortfall): a decline is withdrawn, or an
	// owner names holders beyond the window, once it lasts.
	short map[cid.Cid]time.Time
	// sweep is the rest of the current sweep over the involved records,
	// planned at most SweepBatch an Interval (loop).
	sweep []cid.Cid
	// fullProof makes the next proof round challenge every held record,
	// not a sample: a holder failed a challenge (verifyAll).
	fullProof bool
}

// New makes a manager; Start runs it.
func New(cfg Config) (*Manager, error) {
	if cfg.Ledger == nil || cfg.Net == nil || cfg.Host == nil || cfg.Blocks == nil || cfg.Durable == nil ||
		cfg.Pins == nil || cfg.Records == nil || cfg.Self == "" {
		return nil, errors.New("replication: Config lacks a dependency")
	}
	o := cfg.Options
	o.defaults()
	if cfg.Replicas <= 0 {
		cfg.Replicas = 3
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 60 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		self: cfg.Self, o: o, cfg: cfg, ledger: cfg.Ledger, net: cfg.Net, host: cfg.Host, blocks: cfg.Blocks,
		pins: cfg.Pins, records: cfg.Records, now: cfg.Now, log: cfg.Log,
		live: rules.NewLiveness(o.Grace, cfg.Now()), m: newMetrics(cfg.Metrics),
		ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1), sem: make(chan struct{}, o.FetchConcurrency),
		fetching: map[cid.Cid]bool{}, lost: map[cid.Cid]bool{}, upSet: map[peer.ID]bool{}, dialing: map[peer.ID]bool{}, failing: map[cid.Cid]bool{},
		short: map[cid.Cid]time.Time{}, dirty: map[cid.Cid]bool{}, dirtyAll: true, involved: map[cid.Cid]bool{}, changed: map[peer.ID]bool{}, loaded: map[peer.ID]bool{},
	}
	m.m.pinned.Set(float64(m.pins.Len()))
	return m, nil
}

// Start answers proof-of-storage challenges and, unless Options.Disabled,
// runs placement, repair, challenges and reprovides until ctx ends or
// Close.
func (m *Manager) Start(ctx context.Context) {
	m.start.Do(func() {
		context.AfterFunc(ctx, m.cancel)
		// Proofs are served even when the manager is disabled: holders answer.
		m.host.SetStreamHandler(rules.ChallengeProtocol, m.serveChallenge)
		if m.o.Disabled {
			return
		}
		m.wg.Add(3)
		go m.loop()
		go m.verifyLoop()
		go m.reprovideLoop()
	})
}

// Close stops answering challenges and waits for the manager's work to
// end. Call it before the host closes.
func (m *Manager) Close() {
	m.closed.Do(func() {
		m.host.RemoveStreamHandler(rules.ChallengeProtocol)
		m.cancel()
		m.wg.Wait()
	})
}

// Hold marks rec as in flight until the returned function is called: gc
// keeps its blocks meanwhile (Pinset.Hold).
func (m *Manager) Hold(rec cid.Cid) (release func()) { return m.pins.Hold(rec) }

type metrics struct {
	fetches      *prometheus.CounterVec
	fetchSeconds prometheus.Histogram
	fetchedBytes prometheus.Counter
	receipts     *prometheus.CounterVec
	challenges   *prometheus.CounterVec
	reprovided   prometheus.Counter
	reprovideBPS prometheus.Gauge
	pinned       prometheus.Gauge
	planned      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		fetches:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medmesh_replica_fetches_total", Help: "Replica fetches by result."}, []string{"result"}),
		fetchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "medmesh_replica_fetch_seconds", Help: "Time to fetch and pin a replica.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 14)}),
		fetchedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_replica_fetched_bytes_total", Help: "Block bytes fetched for replicas."}),
		receipts:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medmesh_replica_receipts_total", Help: "Replica receipts published by status."}, []string{"status"}),
		challenges:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medmesh_replica_challenges_total", Help: "Proof-of-storage challenges sent, by result."}, []string{"result"}),
		reprovided:   prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_reprovided_blocks_total", Help: "Blocks re-announced on the DHT."}),
		reprovideBPS: prometheus.NewGauge(prometheus.GaugeOpts{Name: "medmesh_reprovide_blocks_per_second", Help: "Throughput of the last reprovide run."}),
		pinned:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "medmesh_replicas_pinned", Help: "Records this node pins as a replica holder."}),
		planned:      prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_replication_plans_total", Help: "Records whose placement this node evaluated (work that should follow changes, not time)."}),
	}
	reg.MustRegister(m.fetches, m.fetchSeconds, m.fetchedBytes, m.receipts, m.challenges, m.reprovided, m.reprovideBPS, m.pinned, m.planned)
	return m
}
