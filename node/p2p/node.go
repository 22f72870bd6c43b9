package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/boxo/bitswap"
	bsmsg "github.com/ipfs/boxo/bitswap/message"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/routing"
	"github.com/libp2p/go-libp2p/core/transport"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// Membership tells whether a peer belongs to the network. The gossip ledger
// implements it; it must be safe for concurrent use and fast (it is called on
// every connection and every bitswap request).
type Membership interface {
	IsMember(peer.ID) bool
}

// Config configures a Node. Fields marked required must be set.
type Config struct {
	// Identity is the node's Ed25519 private key (required).
	Identity crypto.PrivKey
	// ListenAddrs are TCP multiaddrs to listen on, e.g. /ip4/127.0.0.1/tcp/0.
	// Empty means dial-only.
	ListenAddrs []multiaddr.Multiaddr
	// Announce says which addresses the node advertises (identify, the
	// DHT, invitations), when not its listen addresses.
	Announce Announce
	// PSK is the network's 32-byte pre-shared key (required), unless
	// NetworkKeys gives a schedule of them.
	PSK pnet.PSK
	// NetworkKeys, when set, is the schedule of pre-shared keys (see
	// NetworkKey and SetNetworkKeys); PSK is then ignored.
	NetworkKeys []NetworkKey
	// Now is the clock the key schedule follows; default time.Now.
	Now func() time.Time
	// NetworkID names the network; the DHT protocol prefix is
	// "/medmesh/"+NetworkID (required; letters, digits, '-', '_', '.').
	NetworkID string
	// Members admits peers (required).
	Members Membership
	// Guests, when set, names peers that may connect although they are
	// not members (yet): a node redeeming its invitation and, on the
	// invitee, its inviter. A guest only gets a connection: bitswap, the
	// DHT and GossipSub still serve members only. Called on every
	// connection; it must be fast and concurrency-safe.
	Guests func(peer.ID) bool
	// Blockstore holds the node's blocks (required), normally
	// storage/blockstore.Open(...).Blocks.
	Blockstore blockstore.Blockstore
	// Datastore, when set, keeps the DHT's provider records (ours and those
	// other members stored with us) under /p2p/dht, so they survive a
	// restart. Nil keeps them in memory. Normally storage/blockstore's DS.
	Datastore datastore.Batching
	// BlockFilter decides whether bitswap serves block c to peer p. Nil
	// serves any block to any member. It is called on the bitswap engine's
	// goroutines and must be fast and concurrency-safe.
	BlockFilter func(p peer.ID, c cid.Cid) bool
	// Served, when set, is told of every block sent to a peer, by bitswap
	// or the bulk protocol, once it is written to the peer's stream (read
	// attestations count these). Called on serving goroutines; it must be
	// fast and concurrency-safe.
	Served func(p peer.ID, c cid.Cid)
	// Bootstrap peers are dialed at start and re-dialed with backoff while
	// they are away.
	Bootstrap []peer.AddrInfo
	// Metrics receives the node's prometheus metrics (and libp2p's). Nil
	// disables registration.
	Metrics prometheus.Registerer
	// Logger receives the node's logs. Nil uses slog.Default().
	Logger *slog.Logger

	// StallTimeout is how long a fetch may make no progress before its wants
	// are cancelled and re-sent and providers are looked up again.
	// Default 5s.
	StallTimeout time.Duration
	// ProvideConcurrency bounds concurrent DHT provide operations. Default 16.
	ProvideConcurrency int
	// RedialBackoffMin and RedialBackoffMax bound the exponential backoff
	// between re-dials of an absent bootstrap peer. Defaults 500ms and 1m.
	RedialBackoffMin, RedialBackoffMax time.Duration
	// ConnLow and ConnHigh are the connection manager's watermarks.
	// Defaults 64 and 256. Bootstrap peers are protected from trimming.
	ConnLow, ConnHigh int
}

// Announce is what a node advertises instead of, or beside, its listen
// addresses, as Kubo's Addresses.Announce and Addresses.AppendAnnounce: a
// node behind NAT announces the public address its router forwards.
type Announce struct {
	// Replace, when not empty, is advertised instead of the listen
	// addresses.
	Replace []multiaddr.Multiaddr
	// Append is advertised in addition.
	Append []multiaddr.Multiaddr
}

// Errors returned by the package.
var (
	// ErrNotMember is returned when asked to connect to a non-member.
	ErrNotMember = errors.New("p2p: peer is not a network member")
	// ErrNotFetched is returned (wrapped) when a fetch ends before every
	// block arrived: no provider was found, none served the block (for
	// example because its block filter refused us), or the context ended.
	ErrNotFetched = errors.New("p2p: block not fetched")
	// ErrClosed is returned by operations on a closed node.
	ErrClosed = errors.New("p2p: node closed")
	// ErrNoPeers is returned by Provide when the DHT routing table is empty.
	ErrNoPeers = errors.New("p2p: no DHT peers to provide to")
)

// Node is a running medmesh network node.
type Node struct {
	Host    host.Host
	DHT     *dht.IpfsDHT
	Bitswap *bitswap.Bitswap
	PubSub  *pubsub.PubSub

	cfg     Config
	log     *slog.Logger
	metrics *metrics
	bstore  blockstore.Blockstore
	connMgr *connmgr.BasicConnMgr

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	bootMu sync.Mutex
	boot   map[peer.ID]*bootPeer

	keys *keyring // the network's pre-shared keys (pnet.go)

	closeOnce sync.Once
	closeErr  error
}

// Transfer tuning, measured with BenchmarkFetchTwoNodes on loopback (see
// bench_test.go). Variables only so the benchmark can sweep them.
var (
	// bsMaxOutstandingBytesPerPeer is how much the bitswap server queues
	// for one peer at a time. The 1 MiB default leaves the pipe idle
	// between 1 MiB blocks.
	bsMaxOutstandingBytesPerPeer = 32 << 20
	bsEngineTaskWorkers          = 8
	bsTaskWorkers                = 8
	// bsProviderSearchDelay is how long a session asks connected peers
	// before it asks the DHT; the private DHT is cheap to ask.
	bsProviderSearchDelay = 300 * time.Millisecond
	// yamuxMaxStreamWindow is also the initial window of every stream.
	// yamux grows a stream's window only when window updates come within
	// four round trips of each other, which never happens on loopback or a
	// LAN, where consuming 256 KiB takes longer than four round trips: a
	// 1 GiB two-node get stayed at the 256 KiB start and took 4.3 s; with
	// 2, 4 and 16 MiB initial windows, 4.0, 3.7 and 3.5 s. The cost: a
	// member peer may have up to 16 MiB in flight per stream before we
	// read it, as auto-tuning would allow it anyway; every handler here
	// reads its streams as they come, and the resource manager bounds the
	// streams a peer may open.
	yamuxMaxStreamWindow = uint32(16 << 20)
)

func (cfg *Config) validate() error {
	if cfg.Identity == nil {
		return errors.New("p2p: Config.Identity is required")
	}
	if cfg.Identity.Type() != crypto.Ed25519 {
		return fmt.Errorf("p2p: identity must be Ed25519, got %v", cfg.Identity.Type())
	}
	if len(cfg.NetworkKeys) == 0 {
		if len(cfg.PSK) != 32 {
			return fmt.Errorf("p2p: PSK must be 32 bytes, got %d", len(cfg.PSK))
		}
		cfg.NetworkKeys = []NetworkKey{{PSK: cfg.PSK}}
	}
	for _, k := range cfg.NetworkKeys {
		if len(k.PSK) != 32 {
			return fmt.Errorf("p2p: a network key must be 32 bytes, got %d", len(k.PSK))
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NetworkID == "" || strings.IndexFunc(cfg.NetworkID, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) >= 0 {
		return fmt.Errorf("p2p: invalid NetworkID %q", cfg.NetworkID)
	}
	if cfg.Members == nil {
		return errors.New("p2p: Config.Members is required")
	}
	if cfg.Blockstore == nil {
		return errors.New("p2p: Config.Blockstore is required")
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = 5 * time.Second
	}
	if cfg.ProvideConcurrency <= 0 {
		cfg.ProvideConcurrency = 16
	}
	if cfg.RedialBackoffMin <= 0 {
		cfg.RedialBackoffMin = 500 * time.Millisecond
	}
	if cfg.RedialBackoffMax < cfg.RedialBackoffMin {
		cfg.RedialBackoffMax = max(time.Minute, cfg.RedialBackoffMin)
	}
	if cfg.ConnLow <= 0 {
		cfg.ConnLow = 64
	}
	if cfg.ConnHigh <= cfg.ConnLow {
		cfg.ConnHigh = max(256, cfg.ConnLow*2)
	}
	for _, a := range cfg.ListenAddrs {
		if _, err := a.ValueForProtocol(multiaddr.P_TCP); err != nil {
			return fmt.Errorf("p2p: listen address %s is not TCP (only TCP can carry the PSK)", a)
		}
	}
	for _, a := range append(append([]multiaddr.Multiaddr(nil), cfg.Announce.Replace...), cfg.Announce.Append...) {
		if _, err := a.ValueForProtocol(multiaddr.P_TCP); err != nil {
			return fmt.Errorf("p2p: announce address %s is not TCP (only TCP can carry the PSK)", a)
		}
	}
	return nil
}

// New starts a node: the libp2p host, the DHT, bitswap and GossipSub, and
// starts dialing the bootstrap peers in the background. ctx is checked
// before the start; the node runs until Close.
func New(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	self, err := peer.IDFromPrivateKey(cfg.Identity)
	if err != nil {
		return nil, fmt.Errorf("p2p: identity: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("component", "p2p", "self", self.String())

	n := &Node{
		cfg:     cfg,
		log:     logger,
		metrics: newMetrics(cfg.Metrics),
		bstore:  cfg.Blockstore,
		boot:    make(map[peer.ID]*bootPeer),
		keys:    &keyring{now: cfg.Now},
	}
	n.keys.set(cfg.NetworkKeys)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			_ = n.Close()
		}
	}()

	// Resource manager: libp2p's default limits scaled to this machine.
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	rmOpts := []rcmgr.Option{}
	if cfg.Metrics == nil {
		rmOpts = append(rmOpts, rcmgr.WithMetricsDisabled())
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()), rmOpts...)
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	n.connMgr, err = connmgr.NewConnManager(cfg.ConnLow, cfg.ConnHigh, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return nil, fmt.Errorf("p2p: connection manager: %w", err)
	}

	ymx := *yamux.DefaultTransport
	ymx.MaxStreamWindowSize = yamuxMaxStreamWindow
	ymx.InitialStreamWindowSize = yamuxMaxStreamWindow

	opts := []libp2p.Option{
		libp2p.Identity(cfg.Identity),
		// The pre-shared key is applied below the upgrader, from a
		// schedule that can change while the host runs (pnet.go), not
		// with libp2p.PrivateNetwork, which fixes one key per host.
		libp2p.Transport(func(up transport.Upgrader, rm network.ResourceManager) (*tcp.TcpTransport, error) {
			return tcp.NewTCPTransport(&pskUpgrader{Upgrader: up, keys: n.keys, refused: n.metrics.pskRefused.Inc}, rm, nil)
		}),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, &ymx),
		libp2p.ConnectionGater(&gater{self: self, members: cfg.Members, guests: cfg.Guests}),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(n.connMgr),
		libp2p.DisableRelay(),
		// A private network has no use for reachability probing; pinning
		// it also keeps AutoNAT from ever probing.
		libp2p.ForceReachabilityPrivate(),
		libp2p.ProtocolVersion("/medmesh/" + cfg.NetworkID),
		libp2p.UserAgent("medmesh"),
	}
	if len(cfg.Announce.Replace)+len(cfg.Announce.Append) > 0 {
		announce, extra := cfg.Announce.Replace, cfg.Announce.Append
		opts = append(opts, libp2p.AddrsFactory(func(listening []multiaddr.Multiaddr) []multiaddr.Multiaddr {
			out := listening
			if len(announce) > 0 {
				out = announce
			}
			return append(append([]multiaddr.Multiaddr(nil), out...), extra...)
		}))
	}
	if len(cfg.ListenAddrs) > 0 {
		opts = append(opts, libp2p.ListenAddrs(cfg.ListenAddrs...))
	} else {
		opts = append(opts, libp2p.NoListenAddrs)
	}
	if cfg.Metrics != nil {
		opts = append(opts, libp2p.PrometheusRegisterer(cfg.Metrics))
	} else {
		opts = append(opts, libp2p.DisableMetrics())
	}
	var dsOpts []dht.Option
	if cfg.Datastore != nil {
		dsOpts = append(dsOpts, dht.Datastore(namespace.Wrap(cfg.Datastore, datastore.NewKey("/p2p/dht"))))
	}
	memberQuery := func(_ any, ai peer.AddrInfo) bool { return cfg.Members.IsMember(ai.ID) }
	memberRT := func(_ any, p peer.ID) bool { return cfg.Members.IsMember(p) }
	// libp2p.Routing makes the host a routed host: connecting to a peer
	// whose addresses are unknown (a provider from the DHT) asks the DHT.
	opts = append(opts, libp2p.Routing(func(h host.Host) (routing.PeerRouting, error) {
		d, err := dht.New(h, append(dsOpts,
			dht.Mode(dht.ModeServer),
			dht.ProtocolPrefix(dhtProtocolPrefix(cfg.NetworkID)),
			dht.BootstrapPeers(),
			// Only provider records are used; no value records are accepted.
			dht.DisableValues(),
			// This is a private network: loopback and private addresses
			// are exactly where members live, so no address is filtered
			// out, but only members are queried or kept in the routing
			// table.
			dht.AddressFilter(func(a []multiaddr.Multiaddr) []multiaddr.Multiaddr { return a }),
			dht.QueryFilter(memberQuery),
			dht.RoutingTableFilter(memberRT),
			dht.RoutingTableRefreshPeriod(5*time.Minute),
		)...)
		n.DHT = d
		return d, err
	}))
	h, err := libp2p.New(opts...)
	if err != nil {
		_ = rm.Close()
		return nil, fmt.Errorf("p2p: libp2p host: %w", err)
	}
	n.Host = h

	bsOpts := []bitswap.Option{
		bitswap.WithPeerBlockRequestFilter(n.blockRequestFilter),
		bitswap.MaxOutstandingBytesPerPeer(bsMaxOutstandingBytesPerPeer),
		bitswap.EngineTaskWorkerCount(bsEngineTaskWorkers),
		bitswap.TaskWorkerCount(bsTaskWorkers),
		bitswap.ProviderSearchDelay(bsProviderSearchDelay),
		bitswap.WithoutDuplicatedBlockStats(),
	}
	if cfg.Served != nil {
		bsOpts = append(bsOpts, bitswap.WithTracer(servedTracer{cfg.Served}))
	}
	n.Bitswap = bitswap.New(n.ctx, bsnet.NewFromIpfsHost(h), n.DHT, cfg.Blockstore, bsOpts...)

	n.PubSub, err = pubsub.NewGossipSub(n.ctx, h, GossipSubOptions(cfg.Members)...)
	if err != nil {
		return nil, fmt.Errorf("p2p: gossipsub: %w", err)
	}

	h.SetStreamHandler(BulkProtocol, n.serveBulk)
	h.Network().Notify(&network.NotifyBundle{DisconnectedF: n.onDisconnected})
	for _, ai := range cfg.Bootstrap {
		n.AddBootstrap(ai)
	}
	ok = true
	logger.Info("p2p node started", "addrs", h.Addrs(), "network", cfg.NetworkID)
	return n, nil
}

// servedTracer tells Config.Served of the blocks in every message the
// bitswap server sends (the client's messages carry wants, no blocks).
type servedTracer struct{ served func(peer.ID, cid.Cid) }

func (t servedTracer) MessageReceived(peer.ID, bsmsg.BitSwapMessage) {}

func (t servedTracer) MessageSent(p peer.ID, m bsmsg.BitSwapMessage) {
	for _, b := range m.Blocks() {
		t.served(p, b.Cid())
	}
}

// dhtProtocolPrefix is the DHT protocol prefix of a network: never the
// public IPFS DHT's "/ipfs".
func dhtProtocolPrefix(networkID string) protocol.ID {
	return protocol.ID("/medmesh/" + networkID)
}

// ID returns the node's peer ID.
func (n *Node) ID() peer.ID { return n.Host.ID() }

// Connected reports whether the node has a live connection to p.
func (n *Node) Connected(p peer.ID) bool {
	return n.Host.Network().Connectedness(p) == network.Connected
}

// AddrInfo returns the node's peer ID and listen addresses.
func (n *Node) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: n.Host.ID(), Addrs: n.Host.Addrs()}
}

// Blockstore returns the blockstore the node serves from and fetches into.
func (n *Node) Blockstore() blockstore.Blockstore { return n.bstore }

// Connect dials a member. Dialing a non-member fails with ErrNotMember.
func (n *Node) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if ai.ID == n.Host.ID() {
		return nil
	}
	if !n.cfg.Members.IsMember(ai.ID) {
		return fmt.Errorf("%w: %s", ErrNotMember, ai.ID)
	}
	if len(ai.Addrs) > 0 {
		n.Host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
	}
	if err := n.Host.Connect(ctx, ai); err != nil {
		return fmt.Errorf("p2p: connect %s: %w", ai.ID, err)
	}
	return nil
}

// MembershipChanged closes connections to peers that are no longer members
// and drops them from the DHT routing table. Call it whenever the membership
// set shrinks.
func (n *Node) MembershipChanged() {
	for _, p := range n.Host.Network().Peers() {
		if n.admitted(p) {
			continue
		}
		n.log.Info("closing connections to former member", "peer", p.String())
		if err := n.Host.Network().ClosePeer(p); err != nil {
			n.log.Warn("close peer", "peer", p.String(), "err", err)
		}
		n.DHT.RoutingTable().RemovePeer(p)
		n.Host.Peerstore().ClearAddrs(p)
	}
}

// admitted reports whether p may be connected: a member or a guest.
func (n *Node) admitted(p peer.ID) bool {
	return n.cfg.Members.IsMember(p) || (n.cfg.Guests != nil && n.cfg.Guests(p))
}

// blockRequestFilter is bitswap's per-peer block request filter.
func (n *Node) blockRequestFilter(p peer.ID, c cid.Cid) bool {
	ok := n.cfg.Members.IsMember(p) && (n.cfg.BlockFilter == nil || n.cfg.BlockFilter(p, c))
	if !ok {
		n.metrics.refused.Inc()
	}
	return ok
}

// Close stops the node: bootstrap re-dialers, GossipSub, bitswap, the DHT
// and the host. It does not close the blockstore.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		// Under bootMu so AddBootstrap cannot start a re-dialer after Wait.
		n.bootMu.Lock()
		n.cancel()
		n.bootMu.Unlock()
		n.wg.Wait()
		if n.Host != nil {
			n.Host.RemoveStreamHandler(BulkProtocol)
		}
		var errs []error
		if n.Bitswap != nil {
			errs = append(errs, n.Bitswap.Close())
		}
		if n.DHT != nil {
			errs = append(errs, n.DHT.Close())
		}
		if n.Host != nil {
			errs = append(errs, n.Host.Close())
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}
