package records

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/medmesh/medmesh/node/p2p"
	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/keywrap"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/record"
)

// Ledger is what the service reads from the ledger and appends to it
// (*ledger.Ledger). access.State is what the access policy reads.
type Ledger interface {
	access.State
	Holders(info ledger.RecordInfo) []peer.ID
	IsMember(p peer.ID) bool
	Members() []ledger.Member
	KEMKey(p peer.ID) ([]byte, bool)
	// The records a member owns, holds, or has or had a grant on (the
	// ledger's involvement indexes).
	OwnedRecords(ctx context.Context, p peer.ID) ([]ledger.RecordInfo, error)
	// OwnedListing is what `ls` shows of them, from the owner's indexes.
	OwnedListing(ctx context.Context, p peer.ID) ([]ledger.Listing, error)
	HeldIDs(ctx context.Context, p peer.ID) ([]cid.Cid, error)
	GrantedIDs(ctx context.Context, p peer.ID) ([]cid.Cid, error)
	Versions(id cid.Cid) []ledger.RecordInfo
	GrantHistory(id cid.Cid) []ledger.Grant
	Receipts(id cid.Cid) []ledger.Receipt
	Served(id cid.Cid) []ledger.Served
	Access(id cid.Cid) []ledger.AccessEvent
	Append(ctx context.Context, typ string, payload any) (*ledger.Entry, error)
}

// Keys are the node's key-wrapping keys (*keywrap.Keyring).
type Keys interface {
	// Public is the current key's public half: new envelopes of this
	// node's own are sealed to it.
	Public() []byte
	// Key finds a key by the ID an envelope names.
	Key(id keywrap.KeyID) (*keywrap.PrivateKey, bool)
}

// Network is the p2p node as the service uses it (*p2p.Node).
type Network interface {
	// GetFrom fetches one block (a manifest) from one holder at a time,
	// so the holder that serves it attests the read once.
	GetFrom(ctx context.Context, c cid.Cid, holders []peer.ID) (blocks.Block, error)
	// GetBlocks yields the blocks of cids in order, fetching at most
	// ahead of the reader.
	GetBlocks(ctx context.Context, cids []cid.Cid, ahead int) <-chan p2p.Fetched
	// Provide announces on the DHT that this node holds cids.
	Provide(ctx context.Context, cids []cid.Cid) error
	// Connected reports whether there is a live connection to p.
	Connected(p peer.ID) bool
}

// Blocks is the node's blockstore as the service reads it.
type Blocks interface {
	Has(ctx context.Context, c cid.Cid) (bool, error)
	Get(ctx context.Context, c cid.Cid) (blocks.Block, error)
}

// Syncer makes what was written to the datastore durable (the node's
// badger datastore).
type Syncer interface {
	Sync(ctx context.Context, prefix datastore.Key) error
}

// Add is one add in progress under the garbage collector's add protocol
// (node/gc.Add): the store an add writes its blocks through, which
// remembers them so that a sweep keeps them meanwhile and a failed or
// killed add leaves nothing behind.
type Add interface {
	record.CopyingPutter
	// Named records the record's ID, once known and before its key or
	// block index entries are stored.
	Named(ctx context.Context, rec cid.Cid) error
	// End ends the add: committed (on the ledger), or rolled back.
	End(committed bool)
}

// Config is what a Service needs. Every field but HasAll, FetchTimeout,
// Replicas, Now, Logger, Metrics and Erased is required.
type Config struct {
	// Self is this node's peer ID, KEM its key-wrapping keys (a
	// *keywrap.Keyring: the current key, and the previous ones it keeps
	// after a rotation; or one *keywrap.PrivateKey).
	Self peer.ID
	KEM  Keys

	Ledger Ledger
	Blocks Blocks
	// HasAll, if set, answers Blocks.Has for many blocks at once, in one
	// pass over the store (blockstore.Store.HasAll): `ls` asks it for
	// every record it lists. Default: Blocks.Has for each.
	HasAll func(ctx context.Context, cids []cid.Cid) ([]bool, error)
	// Durable is synced before a record is announced: every block of a
	// record on the ledger is on disk.
	Durable Syncer
	// Local is the node's local bookkeeping datastore: wrapped keys
	// (/keys) and the block index (/blockidx) live in it.
	Local datastore.Batching
	// BeginAdd starts an add under the garbage collector's protocol.
	BeginAdd func(ctx context.Context) (Add, error)

	// Replicas is the replica count of a record whose add does not say
	// (the repo's replication factor). Default 3.
	Replicas int
	// FetchTimeout bounds how long a read waits for a record's manifest
	// to be found on the network. Default 60s.
	FetchTimeout time.Duration

	Now     func() time.Time
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	// Erased, when set, reports record versions their owner erased
	// (node/erasure), so a read of one says so.
	Erased func(cid.Cid) bool
}

// Service is the records service.
type Service struct {
	self    peer.ID
	kem     Keys
	ledger  Ledger
	blocks  Blocks
	durable Syncer
	local   datastore.Batching
	begin   func(ctx context.Context) (Add, error)
	cfg     Config
	log     *slog.Logger
	m       *metrics

	net    Network // set by Start
	index  *blockIndex
	attest *attestor
	claims *claimer

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds the service and loads the block index. It does not use the
// network until Start.
func New(ctx context.Context, c Config) (*Service, error) {
	switch {
	case c.Ledger == nil, c.Blocks == nil, c.Durable == nil, c.Local == nil, c.BeginAdd == nil, c.KEM == nil, c.Self == "":
		return nil, errors.New("records: Config needs Self, KEM, Ledger, Blocks, Durable, Local and BeginAdd")
	}
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
	if c.FetchTimeout <= 0 {
		c.FetchTimeout = 60 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = prometheus.NewRegistry()
	}
	m, err := newMetrics(c.Metrics)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		self: c.Self, kem: c.KEM, ledger: c.Ledger, blocks: c.Blocks, durable: c.Durable,
		local: c.Local, begin: c.BeginAdd, cfg: c, log: c.Logger, m: m,
		ctx: sctx, cancel: cancel,
	}
	s.index = newBlockIndex(s)
	if err := s.index.load(ctx); err != nil {
		cancel()
		return nil, err
	}
	s.attest = newAttestor(s)
	s.claims = newClaimer(s)
	return s, nil
}

// Start connects the service to the network (built after the service:
// the network's block filter is the service's Allow) and runs the read
// attestor until Close. Adds and reads need Start.
func (s *Service) Start(net Network) {
	s.net = net
	s.wg.Go(func() { s.attest.run(s.ctx) })
	s.wg.Go(func() { s.claims.run(s.ctx) })
}

// Close stops the background work (provides of added chunks, the
// attestor and the claimer, which attest and claim what they counted one
// last time) and waits for it. Close it before the ledger.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

// OnEntry reacts to an applied ledger entry: the cached access decisions
// it may change are dropped. Cheap; it never blocks.
func (s *Service) OnEntry(e *ledger.Entry) { s.index.onEntry(e) }

// metrics are the service's Prometheus metrics.
type metrics struct {
	recordsAdded prometheus.Counter
	bytesAdded   prometheus.Counter
	recordsRead  prometheus.Counter
	refused      prometheus.Counter
	attested     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		recordsAdded: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_records_added_total", Help: "Records stored by this node."}),
		bytesAdded:   prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_record_added_bytes_total", Help: "Plaintext bytes stored by this node."}),
		recordsRead:  prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_records_read_total", Help: "Other nodes' records this node read."}),
		refused:      prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_access_refused_blocks_total", Help: "Block requests refused because the peer may not read the record."}),
		attested:     prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_attested_reads_total", Help: "Reads by grantees this node served and attested on the ledger."}),
	}
	for _, c := range []prometheus.Collector{m.recordsAdded, m.bytesAdded, m.recordsRead, m.refused, m.attested} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
