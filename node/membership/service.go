package membership

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-multiaddr"

	"github.com/medmesh/medmesh/node/p2p"
	"github.com/medmesh/medmesh/node/repo"
	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/sharing/netkey"
)

// Ledger is what the service reads from the ledger and appends to it
// (*ledger.Ledger).
type Ledger interface {
	NetworkID() cid.Cid
	IsMember(p peer.ID) bool
	IsAdmin(p peer.ID) bool
	Members() []ledger.Member
	KEMKey(p peer.ID) ([]byte, bool)
	Entry(ctx context.Context, c cid.Cid) (*ledger.Entry, error)
	Append(ctx context.Context, typ string, payload any) (*ledger.Entry, error)
	// Subscribe delivers every entry applied from now on.
	Subscribe() (<-chan *ledger.Entry, func())
	// Ext reads an extension type's state (the network key rotations).
	Ext(typ, prefix string) ([]ledger.ExtRow, error)
}

// Network is the p2p node as the service uses it (the daemon adapts
// *p2p.Node).
type Network interface {
	// Connected reports whether there is a live connection to p.
	Connected(p peer.ID) bool
	// PeerAddrs are the addresses known for p.
	PeerAddrs(p peer.ID) []multiaddr.Multiaddr
	// SelfAddrs are this node's own addresses.
	SelfAddrs() []multiaddr.Multiaddr
	// MembershipChanged closes the connections of peers that are no
	// longer members (the connection gater already refuses new ones).
	MembershipChanged()
	// Notify calls connected and disconnected as peers come and go
	// (disconnected once the last connection to a peer closed).
	Notify(connected, disconnected func(peer.ID))
	// Connect dials a peer the connection gater admits (a member or a
	// guest).
	Connect(ctx context.Context, ai peer.AddrInfo) error
	// NewStream opens a stream of protocol proto to p.
	NewStream(ctx context.Context, p peer.ID, proto protocol.ID) (network.Stream, error)
	// SetStreamHandler serves protocol proto.
	SetStreamHandler(proto protocol.ID, h network.StreamHandler)
	// ClosePeer closes the connections to p (a bootstrap peer is redialed
	// at once).
	ClosePeer(p peer.ID) error
	// SetNetworkKeys applies a new pre-shared key schedule to the host.
	SetNetworkKeys(keys []p2p.NetworkKey) error
}

// Config is what a Service needs. Every field but Org, Now and Logger is
// required.
type Config struct {
	Self peer.ID
	// KEMPublic returns this node's current key-wrapping public key, the
	// one it announces on the ledger.
	KEMPublic func() []byte
	// Unwrap opens an envelope sealed to one of this node's key-wrapping
	// keys (a network key rotation's).
	Unwrap func(r access.Recipient, envelope []byte) ([]byte, error)
	Ledger Ledger
	// Repo holds the network's genesis and pre-shared key (invitations
	// carry them).
	Repo *repo.Repo
	// Local is the node's local bookkeeping datastore: when each member
	// was last seen lives there (/membership/seen).
	Local datastore.Batching
	// Org is this node's configured organisation (`init --org`), stated
	// on the ledger once it is a member without one.
	Org    string
	Now    func() time.Time
	Logger *slog.Logger
}

// Service is the membership service.
type Service struct {
	cfg Config
	log *slog.Logger
	net Network // set by Start

	seenMu    sync.Mutex
	seen      map[peer.ID]time.Time // last time each peer was connected
	seenDirty bool

	inv     invites // the invitations this node issued (admin)
	joining joining // the invitation this node redeems (invitee)

	keysMu sync.Mutex
	keys   []NetKey // the network key schedule, oldest epoch first

	wake   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds the service and loads when members were last seen. It does
// not use the network until Start.
func New(ctx context.Context, c Config) (*Service, error) {
	if c.Self == "" || c.KEMPublic == nil || c.Unwrap == nil || c.Ledger == nil || c.Repo == nil || c.Local == nil {
		return nil, errors.New("membership: Config needs Self, KEMPublic, Unwrap, Ledger, Repo and Local")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Service{cfg: c, log: c.Logger, wake: make(chan struct{}, 1), ctx: sctx, cancel: cancel}
	var err error
	if s.seen, err = loadSeen(ctx, c.Local); err != nil {
		cancel()
		return nil, err
	}
	if s.keys, err = LoadNetKeys(c.Repo); err != nil {
		cancel()
		return nil, err
	}
	if err := s.loadInvites(ctx); err != nil {
		cancel()
		return nil, err
	}
	if err := s.loadJoining(); err != nil {
		cancel()
		return nil, err
	}
	return s, nil
}

// Start connects the service to the network and runs its background work
// until Close: following connections (for last_seen), and stating this
// node's key and organisation on the ledger once it is a member.
func (s *Service) Start(net Network) {
	s.net = net
	net.Notify(s.connected, s.disconnected)
	net.SetStreamHandler(RedeemProtocol, s.handleRedeem)
	// Subscribed before the first look at the ledger, so no entry applied
	// meanwhile is missed.
	entries, unsubscribe := s.cfg.Ledger.Subscribe()
	s.wg.Go(func() {
		defer unsubscribe()
		s.follow(entries)
	})
	s.wg.Go(s.run)
	s.wg.Go(s.redeemLoop)
	s.poke()
	// Rotations applied while the node was down (or before a crash let
	// it install them).
	s.installRotations()
}

// Close stops the background work and saves when members were last seen.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
	if s.net != nil {
		s.saveSeen(context.Background())
	}
}

// follow reacts to applied ledger entries: a removal closes the removed
// member's connections at once; an admission, a key or an organisation
// may call for this node to state its own.
func (s *Service) follow(entries <-chan *ledger.Entry) {
	for {
		select {
		case <-s.ctx.Done():
			return
		case e, ok := <-entries:
			if !ok {
				return
			}
			switch e.Type {
			case ledger.TypeMemberRemove:
				s.net.MembershipChanged()
				if !s.cfg.Ledger.IsMember(s.cfg.Self) && e.Author != s.cfg.Self {
					s.log.Error("this node was removed from the network: it can no longer read what was shared with it, and its connections are refused", "by", e.Author.String())
				}
			case netkey.Type:
				s.installRotations()
			case ledger.TypeMemberAdd, ledger.TypeMemberOrg, ledger.TypeKeyAnnounce:
				s.poke()
			case ledger.TypeStateLoaded:
				// Members and network keys loaded from a checkpoint
				// (joining the network) rather than applied one by one.
				if e.Scope == "" {
					s.net.MembershipChanged()
					s.installRotations()
					s.poke()
				}
			}
		}
	}
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run states this node's key and organisation when the ledger calls for
// it, and saves the last-seen times now and then.
func (s *Service) run() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
			s.announceKeyIfNeeded()
			s.declareOrgIfNeeded()
		case <-t.C:
			s.saveSeen(s.ctx)
		}
	}
}

// announceKeyIfNeeded publishes this node's key-wrapping public key once it
// is a member and the ledger does not already carry it as its current key.
func (s *Service) announceKeyIfNeeded() {
	if !s.cfg.Ledger.IsMember(s.cfg.Self) {
		return
	}
	pub := s.cfg.KEMPublic()
	if cur, ok := s.cfg.Ledger.KEMKey(s.cfg.Self); ok && string(cur) == string(pub) {
		return
	}
	if _, err := s.cfg.Ledger.Append(s.ctx, ledger.TypeKeyAnnounce, ledger.KeyAnnouncePayload{Public: pub}); err != nil {
		s.log.Warn("announce key-wrapping key", "err", err)
		return
	}
	s.log.Info("announced key-wrapping public key on the ledger")
}

// declareOrgIfNeeded states this node's organisation on the ledger (a
// member.org entry) once it is a member whose admission set none: the
// founding admin always, a member when `network invite` gave no --org. The
// organisation comes from the repo's config (`init --org`, `network create
// --org`). An organisation the admin set wins; a different configured one
// is only logged.
func (s *Service) declareOrgIfNeeded() {
	want := s.cfg.Org
	if want == "" {
		return
	}
	m, ok := s.member(s.cfg.Self)
	if !ok {
		return
	}
	if m.Org != "" {
		if m.Org != want {
			s.log.Warn("the ledger has another organisation for this node than its config; the admin's (or the first stated) stands",
				"ledger_org", m.Org, "config_org", want)
		}
		return
	}
	if err := ledger.CheckOrg(want); err != nil {
		s.log.Warn("not stating the configured organisation on the ledger", "err", err)
		return
	}
	if _, err := s.cfg.Ledger.Append(s.ctx, ledger.TypeMemberOrg, ledger.MemberOrgPayload{Peer: s.cfg.Self, Org: want}); err != nil {
		s.log.Warn("state organisation on the ledger", "org", want, "err", err)
		return
	}
	s.log.Info("stated this node's organisation on the ledger", "org", want)
}

// member returns the ledger's record of peer p as a member.
func (s *Service) member(p peer.ID) (ledger.Member, bool) {
	for _, m := range s.cfg.Ledger.Members() {
		if m.Peer == p {
			return m, true
		}
	}
	return ledger.Member{}, false
}

// Org returns this node's organisation: the ledger's, once there is one,
// else the configured one.
func (s *Service) Org() string {
	if m, ok := s.member(s.cfg.Self); ok && m.Org != "" {
		return m.Org
	}
	return s.cfg.Org
}
