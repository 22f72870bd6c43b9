package ledger

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// SyncProtocol is the catch-up protocol. A client sends one request per
// stream and reads one response; messages are a uvarint length then CBOR.
const SyncProtocol = protocol.ID("/medmesh/ledger/sync/1.0.0")

// The transport: GossipSub and the sync protocol carry entries and offers
// as bytes and hand them to the core (through Ledger's lock); the
// decisions — validity, what a peer lacks — are the core's (core.go,
// sync.go).

// Sync protocol bounds.
const (
	maxSyncRequest  = 1 << 20
	maxSyncResponse = 8 << 20
	respEntryBytes  = 4 << 20 // entries per response stop at this many bytes
	maxRespEntries  = 4000
	syncTimeout     = 30 * time.Second
	maxSyncRounds   = 100000
)

// Sync operations.
const (
	opDiff = 1 // entries in the server's past not in Have's past, oldest first
	// opAnnounce tells the server the client's heads of a scope it wrote
	// to without following it (a reader's claims on the owner's audit
	// scope): a server that follows the scope and lacks them syncs it
	// from the client. The answer is empty.
	opAnnounce = 4
	// opHeads asks for the server's heads of Scope's closure (the global
	// scope's if absent) and nothing else: no difference is walked, so
	// it costs the same however far apart the two ledgers are. Servers
	// older than it answer "unknown op" (PeerHeads then asks opDiff for at
	// most one entry, which walks).
	opHeads = 6
)

type syncReq struct {
	Network []byte   `cbor:"1,keyasint"`
	Op      uint8    `cbor:"2,keyasint"`
	Have    [][]byte `cbor:"3,keyasint"`
	Max     uint32   `cbor:"4,keyasint"`
	// Scope is the scope to catch up (absent: global): the answer holds
	// what the client lacks of it and of the scopes it depends on.
	Scope string `cbor:"5,keyasint,omitempty"`
	// Proposal is the checkpoint proposal opCosign asks to co-sign
	// (checkpoint_auto.go).
	Proposal []byte `cbor:"6,keyasint,omitempty"`
}

type syncResp struct {
	Heads   [][]byte `cbor:"1,keyasint"`
	Entries [][]byte `cbor:"2,keyasint"`
	More    bool     `cbor:"3,keyasint"`
	Err     string   `cbor:"4,keyasint,omitempty"`
	// Checkpoints and Block answer opCheckpoints and opStateBlock
	// (checkpoint_sync.go).
	Checkpoints [][]byte `cbor:"5,keyasint,omitempty"`
	Block       []byte   `cbor:"6,keyasint,omitempty"`
	// Follow, in the answer to a global scope's sync, names the owner
	// scopes the server knows involve the client (a grant to it, a record
	// it holds): a node that missed the inbox delivery (it was offline)
	// follows them from its next sync.
	Follow []string `cbor:"7,keyasint,omitempty"`
}

// connected reports whether this node is connected to p.
func (n *transport) connected(p peer.ID) bool {
	return n.h.Network().Connectedness(p) == network.Connected
}

// TopicName returns the GossipSub topic of a network's ledger.
func TopicName(network cid.Cid) string { return "/medmesh/" + network.String() + "/ledger/1" }

// transport is the ledger's networking, set up by Start.
type transport struct {
	h      host.Host
	ps     *pubsub.PubSub
	ctx    context.Context
	cancel context.CancelFunc
	notif  *network.NotifyBundle

	// topicMu serializes joining topics; topics (by topic name) is read
	// under mu.
	topicMu sync.Mutex
	topics  map[string]*scopeTopic

	mu      sync.Mutex
	syncing map[syncKey]bool // in flight; true = run again when done
	// announcing: announces in flight (announceLater); true = once more
	announcing map[syncKey]bool
	wantFrom   map[syncKey]bool // peers that sent entries we could not place
	// synced is, per connected peer, the last catch-up of the global
	// scope with it (Synced); scopeSynced, per connected peer and wire
	// scope other than the global one, the last catch-up of that scope.
	synced      map[peer.ID]syncState
	scopeSynced map[syncKey]syncState
}

// caughtUp reports whether the last sync with every connected peer left
// nothing of it missing here, and with how many peers (Ledger.Synced).
func (n *transport) caughtUp() (peers int, ok bool) {
	nw := n.h.Network()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range nw.Peers() {
		if nw.Connectedness(p) != network.Connected {
			continue
		}
		if st, ok := n.synced[p]; !ok || !st.caughtUp {
			return peers, false
		}
		peers++
	}
	return peers, true
}

// syncKey is one catch-up: a peer and a wire scope.
type syncKey struct {
	p     peer.ID
	scope string
}

// scopeTopic is a joined GossipSub topic: subscribed (a followed scope,
// this node's inbox), or joined only to publish (a scope it writes to
// without following it, another node's inbox).
type scopeTopic struct {
	topic     *pubsub.Topic
	sub       *pubsub.Subscription
	validator bool
	scope     string // the wire scope of a subscribed scope topic
}

// stop tears networking down; Close calls it after cancelling n.ctx and
// waiting for the background goroutines (pubsub's event handler and topic
// must not be cancelled and closed concurrently).
func (n *transport) stop() {
	n.cancel()
	n.h.Network().StopNotify(n.notif)
	n.h.RemoveStreamHandler(SyncProtocol)
	n.topicMu.Lock()
	defer n.topicMu.Unlock()
	for name, t := range n.topics {
		if t.sub != nil {
			t.sub.Cancel()
		}
		if t.validator {
			_ = n.ps.UnregisterTopicValidator(name)
		}
		_ = t.topic.Close()
	}
}

// Start joins the ledger's GossipSub topic (with a validator that applies
// valid entries and rejects invalid ones), serves the sync protocol, and
// catches up with peers on connect and every SyncInterval. It runs until
// Close.
func (l *Ledger) Start(ctx context.Context, h host.Host, ps *pubsub.PubSub) error {
	if l.tr.Load() != nil {
		return errors.New("ledger: already started")
	}
	name := TopicName(l.net)
	if err := ps.RegisterTopicValidator(name, l.validator("", false)); err != nil {
		return fmt.Errorf("ledger: register validator: %w", err)
	}
	topic, err := ps.Join(name)
	if err != nil {
		return fmt.Errorf("ledger: join topic: %w", err)
	}
	sub, err := topic.Subscribe()
	if err != nil {
		topic.Close()
		return fmt.Errorf("ledger: subscribe: %w", err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	n := &transport{h: h, ps: ps, ctx: rctx, cancel: cancel,
		syncing: map[syncKey]bool{}, announcing: map[syncKey]bool{}, wantFrom: map[syncKey]bool{}, synced: map[peer.ID]syncState{}, scopeSynced: map[syncKey]syncState{},
		topics: map[string]*scopeTopic{name: {topic: topic, sub: sub, validator: true}}}
	n.notif = &network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			// Not caught up with a (re)connected peer until a sync says so.
			n.mu.Lock()
			n.synced[c.RemotePeer()] = syncState{}
			for k := range n.scopeSynced {
				if k.p == c.RemotePeer() {
					delete(n.scopeSynced, k)
				}
			}
			n.mu.Unlock()
			l.trigger(rctx, c.RemotePeer(), "")
		},
		DisconnectedF: func(nw network.Network, c network.Conn) {
			if p := c.RemotePeer(); nw.Connectedness(p) != network.Connected {
				n.mu.Lock()
				delete(n.synced, p)
				for k := range n.scopeSynced {
					if k.p == p {
						delete(n.scopeSynced, k)
					}
				}
				n.mu.Unlock()
			}
		},
	}
	if !l.tr.CompareAndSwap(nil, n) {
		n.stop()
		return errors.New("ledger: already started")
	}
	h.SetStreamHandler(SyncProtocol, l.handleSync)
	h.Network().Notify(n.notif)
	l.goBackground(func() { // drain: the validator already applied every delivered entry
		for {
			if _, err := sub.Next(rctx); err != nil {
				return
			}
		}
	})
	l.goBackground(func() { l.syncLoop(rctx) })
	l.goBackground(func() { l.trimLoop(rctx) })
	if l.o.GossipRepairAfter > 0 {
		l.goBackground(func() { l.gossipLoop(rctx, n) })
	}
	if l.o.ScopeCheckpointEvery > 0 {
		l.goBackground(func() { l.autoCheckpointLoop(rctx) })
	}
	if l.core.scoped {
		l.goBackground(func() { l.leaveLoop(rctx) })
	}
	// An entry published before the mesh formed reached nobody: pull from
	// every peer as it joins the topic, so such entries spread at once
	// instead of waiting for the periodic sync.
	if evts, err := topic.EventHandler(); err == nil {
		l.goBackground(func() {
			defer evts.Cancel()
			for {
				ev, err := evts.NextPeerEvent(rctx)
				if err != nil {
					return
				}
				if ev.Type == pubsub.PeerJoin {
					l.trigger(rctx, ev.Peer, "")
				}
			}
		})
	}
	l.startScopes(n)
	for _, p := range h.Network().Peers() {
		l.trigger(rctx, p, "")
	}
	return nil
}

// validator returns the GossipSub validator of the topic of wire scope
// scope (inbox: this node's inbox, which carries entries of any owner
// scope). Forged or invalid entries are rejected (the sender is
// penalized), as is an entry published on another scope's topic;
// duplicates and entries waiting for parents are ignored (not forwarded);
// valid new entries are applied and accepted.
func (l *Ledger) validator(scope string, inbox bool) pubsub.ValidatorEx {
	return func(ctx context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		return l.validate(ctx, from, msg, scope, inbox)
	}
}

func (l *Ledger) validate(ctx context.Context, from peer.ID, msg *pubsub.Message, scope string, inbox bool) pubsub.ValidationResult {
	// Our own publications come back through the validator with from = our
	// ID (msg.Local only marks in-process-only publications): they were
	// validated and applied by Append already.
	if n := l.tr.Load(); msg.Local || (n != nil && from == n.h.ID()) {
		return pubsub.ValidationAccept
	}
	if len(msg.Data) <= MaxEntrySize {
		if s, author, ok := l.knownScope(blockCID(msg.Data)); ok {
			// Applied already, most often because a sync brought it before
			// this copy: no need to verify the signature again, but accept
			// it on its own topic, so GossipSub forwards the message to this
			// node's mesh once, as it would had the copy come first. Ignored,
			// the message stopped here, and every node behind this one
			// waited for its own next sync: a joining member's key
			// announcement, pulled at once by the peers it had just
			// connected to, reached the rest of a 200-node network in 0.65 s
			// at the median. Only the message its author published: an
			// entry republished by another member (no node does) would
			// otherwise be one more message for every node to forward.
			l.met.duplicates.Inc()
			if !inbox && s == scope && (scope == "" || l.Follows(scope)) && peer.ID(msg.GetFrom()) == author {
				return pubsub.ValidationAccept
			}
			return pubsub.ValidationIgnore
		}
	}
	e, err := DecodeEntry(msg.Data)
	if err != nil {
		l.rejectedUndecoded(err)
		return pubsub.ValidationReject
	}
	if inbox {
		if !l.fromInbox(from, e) {
			return pubsub.ValidationIgnore
		}
	} else if e.Scope != scope {
		l.met.rejected.WithLabelValues("wrong-topic").Inc()
		l.log.Warn("entry rejected", "entry", e.cid.String(), "reason", "wrong-topic", "scope", scopeName(e.Scope), "topic", scopeName(scope))
		return pubsub.ValidationReject
	} else if scope != "" && !l.Follows(scope) {
		return pubsub.ValidationIgnore // unsubscribing
	}
	out, err := l.ingest(ctx, []*Entry{e})
	if err != nil {
		l.log.Error("apply gossiped entry", "entry", e.cid.String(), "err", err)
		return pubsub.ValidationIgnore
	}
	if out.Results[0].Err == ErrAhead {
		return pubsub.ValidationIgnore // held back, not forwarded (ahead.go)
	}
	switch out.Results[0].Status {
	case Applied:
		return pubsub.ValidationAccept
	case Pending:
		// Its parents are what the sender has and we lack: fetch them now,
		// and again at the next tick if this sync does not place it.
		if n := l.tr.Load(); n != nil {
			n.mu.Lock()
			n.wantFrom[syncKey{from, e.Scope}] = true
			n.mu.Unlock()
			l.trigger(context.Background(), from, e.Scope)
			// Forwarded once it applies, not dropped (relay.go).
			if !inbox && l.awaitPending(ctx, e.cid) {
				return pubsub.ValidationAccept
			}
		}
		return pubsub.ValidationIgnore
	case Duplicate:
		// A sync applied it between the check above and this ingest (the
		// peers a member has just connected to pull its first entries
		// while their gossip copies arrive): forward it, as above.
		if !inbox && peer.ID(msg.GetFrom()) == e.Author {
			return pubsub.ValidationAccept
		}
		return pubsub.ValidationIgnore
	default:
		return pubsub.ValidationReject
	}
}

// every runs f each interval until ctx ends or the ledger closes.
func (l *Ledger) every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.closed:
			return
		case <-t.C:
		}
		f()
	}
}

// syncLoop periodically catches up with a random peer, and with peers that
// sent entries we could not place.
func (l *Ledger) syncLoop(ctx context.Context) {
	l.every(ctx, l.o.SyncInterval, func() { l.syncTick(ctx) })
}

// syncTick is one round of syncLoop.
func (l *Ledger) syncTick(ctx context.Context) {
	n := l.tr.Load()
	n.mu.Lock()
	want := n.wantFrom
	n.wantFrom = map[syncKey]bool{}
	n.mu.Unlock()
	for k := range want {
		l.trigger(ctx, k.p, k.scope)
	}
	peers := n.h.Network().Peers()
	if len(peers) > 0 {
		l.trigger(ctx, peers[rand.IntN(len(peers))], "")
	}
	// And every connected peer the last global sync with left this node
	// behind, or that it has not synced with yet (Behind reports the
	// global scope caught up only when none is left): a node that
	// connects to more peers while joining (the owners of the scopes it
	// follows) would otherwise wait for the random pick to reach each.
	for _, p := range peers {
		n.mu.Lock()
		st, ok := n.synced[p]
		n.mu.Unlock()
		if (!ok || !st.caughtUp) && n.h.Network().Connectedness(p) == network.Connected {
			l.trigger(ctx, p, "")
		}
	}
	// Each followed scope with a random peer that follows it too, and
	// with every connected follower the last sync with left it behind
	// (or that it has not synced it with yet: Behind); and with the
	// scope's owner while it is a member and not connected: the stream
	// dials it, and the connection lets GossipSub join the two on the
	// scope's topic.
	// Every follower connected to the owner keeps a scope's followers
	// one component of its topic's graph: followers connected only to
	// one another would otherwise see the owner's entries only when a
	// sync happened to cross over (tens of seconds at 200 clinics).
	//
	// The random peer is drawn from the connected followers, not from the
	// scope topic's peers alone: GossipSub lists only the peers whose
	// subscriptions it knows, and a node whose GossipSub lost them (seen
	// in the simulation: a holder connected to the owner, GossipSub
	// listing neither the owner nor any follower) would otherwise never
	// sync the scope again once caught up, and miss for good each entry
	// gossip did not bring it (ledgersim, issue #16).
	for _, s := range l.Followed()[1:] {
		ws := wireScope(s)
		fs := l.scopeFollowers(n, s)
		if len(fs) > 0 {
			l.trigger(ctx, fs[rand.IntN(len(fs))], ws)
		}
		if _, owner, err := ParseScope(s); err == nil && owner != l.self && l.IsMember(owner) && n.h.Network().Connectedness(owner) != network.Connected {
			l.trigger(ctx, owner, ws)
		}
		for _, p := range fs {
			n.mu.Lock()
			st, ok := n.scopeSynced[syncKey{p, ws}]
			n.mu.Unlock()
			if !ok || !st.caughtUp {
				l.trigger(ctx, p, ws)
			}
		}
	}
}

// trigger starts a sync of wire scope scope with p unless one is running;
// if one is, it runs once more when done.
func (l *Ledger) trigger(ctx context.Context, p peer.ID, scope string) {
	n := l.tr.Load()
	if n == nil || p == n.h.ID() {
		return
	}
	k := syncKey{p, scope}
	n.mu.Lock()
	if _, running := n.syncing[k]; running {
		n.syncing[k] = true
		n.mu.Unlock()
		return
	}
	n.syncing[k] = false
	n.mu.Unlock()
	ctx = n.ctx
	l.goBackground(func() {
		for {
			err := l.syncScope(ctx, n.h, p, scope)
			if err != nil {
				l.log.Debug("sync", "peer", p.String(), "err", err)
				// A peer that refuses us (its gater does not know we were
				// admitted yet) is retried later, not in a tight loop.
				select {
				case <-ctx.Done():
				case <-time.After(500 * time.Millisecond):
				}
			}
			n.mu.Lock()
			again := n.syncing[k]
			if !again || ctx.Err() != nil {
				delete(n.syncing, k)
				n.mu.Unlock()
				return
			}
			n.syncing[k] = false
			n.mu.Unlock()
		}
	})
}

// SyncWith fetches from p every entry p has that this node lacks of the
// scopes it follows, oldest first, in bounded batches, and applies them
// (syncScope for each followed scope, the global one first).
func (l *Ledger) SyncWith(ctx context.Context, h host.Host, p peer.ID) error {
	var errs []error
	for _, s := range l.Followed() {
		if err := l.syncScope(ctx, h, p, wireScope(s)); err != nil {
			if s == ScopeGlobal {
				return err
			}
			errs = append(errs, fmt.Errorf("scope %s: %w", s, err))
		}
	}
	return errors.Join(errs...)
}

// syncScope fetches from p what this node lacks of wire scope scope and of
// the scopes it depends on (syncRounds). After a sync of the global scope
// it records whether every head p answered with is applied here (Synced).
func (l *Ledger) syncScope(ctx context.Context, h host.Host, p peer.ID, scope string) error {
	var heads [][]byte // p's heads in its last answer
	var follow []string
	err := l.syncRounds(ctx, h, p, scope, &heads, &follow)
	if scope == "" {
		l.followHinted(p, follow)
	}
	caught := false
	if err == nil && heads != nil {
		lack, lerr := l.weLack(ctx, heads)
		caught = lerr == nil && len(lack) == 0
	}
	if n := l.tr.Load(); n != nil && n.h == h {
		n.mu.Lock()
		if h.Network().Connectedness(p) == network.Connected {
			st := syncState{caughtUp: caught, at: l.now()}
			if scope == "" {
				n.synced[p] = st
			} else if heads != nil || err != nil {
				n.scopeSynced[syncKey{p, scope}] = st
			}
		}
		n.mu.Unlock()
	}
	return err
}

// syncRounds: each round offers our heads of the scope's closure
// (Core.ScopeOffer) and applies what p answers; it stops when p has
// nothing more and none of p's heads is one we lack (Core.WeLack), or when
// a round applies nothing. For the global scope, checkpoints come first: a
// node with nothing but the genesis joins from the peer's latest instead
// of replaying (checkpoint_sync.go).
func (l *Ledger) syncRounds(ctx context.Context, h host.Host, p peer.ID, scope string, heads *[][]byte, follow *[]string) error {
	ask := func(req *syncReq) (*syncResp, error) { return l.request(ctx, h, p, req) }
	// A scope's sync brings its closure, the global scope included: a node
	// with nothing but the genesis joins from a checkpoint whichever scope
	// it syncs first. Other scopes' syncs skip the request.
	l.mu.Lock()
	fresh := l.onlyGenesis()
	l.mu.Unlock()
	if scope == "" || fresh {
		if _, err := l.catchUpCheckpoints(ctx, ask, false); err != nil {
			l.log.Warn("checkpoint from peer", "peer", p.String(), "err", err)
			if fresh && errors.Is(err, errNoAnswer) {
				// As for a new follower of a scope (below): a node with
				// nothing but the genesis would replay the whole history
				// from a peer that did not answer; the next sync asks again.
				l.met.syncs.WithLabelValues("error").Inc()
				return fmt.Errorf("ledger: ask %s for checkpoints: %w", p, err)
			}
		}
	}
	if scope != "" && l.core.scoped {
		// An owner or audit scope: a node that holds nothing of it yet
		// loads the peer's latest checkpoint of it instead of replaying
		// its history; one that holds part of it keeps the checkpoint to
		// serve and prune (checkpoint_scope.go).
		l.mu.Lock()
		held := len(l.core.ScopeHeads(scopeName(scope))) > 0
		l.mu.Unlock()
		_, err := l.catchUpScopeCheckpoint(ctx, ask, scope)
		if kind, owner, _ := ParseScope(scopeName(scope)); errors.Is(err, ErrCheckpointDeps) && kind == KindAudit {
			// The audit scope's checkpoint names owner scope entries newer
			// than the owner scope's checkpoint this node loaded: catch
			// the owner scope up first, then load the audit scope's (its
			// rounds would otherwise replay it).
			var oh [][]byte
			var of []string
			if err = l.syncRounds(ctx, h, p, wireScope(OwnerScope(owner)), &oh, &of); err == nil {
				_, err = l.catchUpScopeCheckpoint(ctx, ask, scope)
			}
		}
		if err != nil {
			l.log.Log(ctx, ckptAskLevel(err), "scope checkpoint from peer", "peer", p.String(), "scope", scopeName(scope), "err", err)
		}
		if err != nil && !held && errors.Is(err, errNoAnswer) {
			// A new follower whose question got no answer (a connection
			// replaced under it, a timeout) would replay the scope's
			// history from this peer and then hold entries, so it could
			// not load the checkpoint any more: this sync stops, and the
			// next asks again (the ask's rate limit spares a new follower's
			// failures).
			l.met.syncs.WithLabelValues("error").Inc()
			return fmt.Errorf("ledger: ask %s for checkpoints of %s: %w", p, scopeName(scope), err)
		}
	}
	joined := false
	total := 0
	for round := 0; round < maxSyncRounds; round++ {
		if scope != "" && !l.Follows(scope) {
			break // left it (a change of membership) while syncing it
		}
		l.mu.Lock()
		offer, err := l.core.ScopeOffer(ctx, scope)
		l.mu.Unlock()
		if err != nil {
			return err
		}
		req := syncReq{Network: l.net.Bytes(), Op: opDiff, Max: maxRespEntries, Scope: scope}
		for _, c := range offer.Heads {
			req.Have = append(req.Have, c.Bytes())
		}
		resp, err := l.request(ctx, h, p, &req)
		if err != nil {
			l.met.syncs.WithLabelValues("error").Inc()
			return err
		}
		if isPruned(resp.Err) && scope != "" {
			// A peer that pruned the scope's history: this node loaded its
			// checkpoint above if it could (it held nothing of the scope);
			// otherwise it catches up from a peer that keeps the entries
			// (the owner keeps its own).
			l.met.syncs.WithLabelValues("error").Inc()
			return fmt.Errorf("ledger: peer %s pruned entries of %s this node lacks: catch up from the owner, which keeps them", p, scopeName(scope))
		}
		if isPruned(resp.Err) && !joined {
			joined = true
			if _, err := l.catchUpCheckpoints(ctx, ask, true); err != nil {
				l.met.syncs.WithLabelValues("error").Inc()
				return fmt.Errorf("ledger: peer %s pruned what this node lacks, and its checkpoint: %w", p, err)
			}
			continue
		}
		if resp.Err != "" {
			l.met.syncs.WithLabelValues("error").Inc()
			return fmt.Errorf("ledger: peer %s: %s", p, resp.Err)
		}
		*heads = append([][]byte{}, resp.Heads...) // non-nil: p answered
		if len(resp.Follow) > 0 {
			*follow = resp.Follow
		}
		if len(resp.Entries) == 0 {
			break
		}
		l.met.fetched.Add(float64(len(resp.Entries)))
		fresh := l.unknown(resp.Entries)
		l.met.fetchedKnown.Add(float64(len(resp.Entries) - len(fresh)))
		if len(fresh) == 0 {
			break
		}
		es := decodeParallel(fresh, l.rejectedUndecoded)
		out, err := l.ingest(ctx, es)
		if err != nil {
			return err
		}
		total += len(out.Applied)
		if len(out.Applied) == 0 {
			break
		}
		if !resp.More {
			lack, err := l.weLack(ctx, resp.Heads)
			if err != nil {
				return err
			}
			if len(lack) == 0 {
				break
			}
		}
	}
	l.met.syncs.WithLabelValues("ok").Inc()
	if total > 0 {
		l.log.Debug("synced", "peer", p.String(), "scope", scopeName(scope), "entries", total)
	}
	return nil
}

// weLack decodes a peer's heads and returns those we lack (Core.WeLack).
func (l *Ledger) weLack(ctx context.Context, heads [][]byte) ([]cid.Cid, error) {
	var offer SyncOffer
	for _, b := range heads {
		c, err := cid.Cast(b)
		if err != nil {
			return nil, fmt.Errorf("ledger: sync peer sent a bad head: %w", err)
		}
		offer.Heads = append(offer.Heads, c)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.core.WeLack(ctx, offer)
}

// decodeParallel decodes and signature-checks entries on all cores.
func decodeParallel(raws [][]byte, bad func(error)) []*Entry {
	out := make([]*Entry, len(raws))
	errs := make([]error, len(raws))
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	var next int
	var mu sync.Mutex
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(raws) {
					return
				}
				out[i], errs[i] = DecodeEntry(raws[i])
			}
		}()
	}
	wg.Wait()
	es := out[:0]
	for i, e := range out {
		if errs[i] != nil {
			bad(errs[i])
			continue
		}
		es = append(es, e)
	}
	return es
}

// knownScope returns the wire scope and author of entry c if it was
// applied here (false if that cannot be read: the entry is then ingested,
// which reports the failure).
func (l *Ledger) knownScope(c cid.Cid) (string, peer.ID, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.core.ready(context.Background()) != nil {
		return "", "", false
	}
	n, err := l.core.d.get(context.Background(), c)
	if err != nil || n == nil {
		return "", "", false
	}
	return n.scope, n.author, true
}

// unknown returns the entries of raws not applied here, and those too
// large to be entries (ingest rejects them). It takes the ledger's lock
// once per 256 entries, not per entry, and not for a whole answer.
func (l *Ledger) unknown(raws [][]byte) [][]byte {
	ctx := context.Background()
	out := raws[:0]
	for len(raws) > 0 {
		k := min(len(raws), 256)
		l.mu.Lock()
		ready := l.core.ready(ctx) == nil
		for _, raw := range raws[:k] {
			if len(raw) > MaxEntrySize || !ready {
				out = append(out, raw)
				continue
			}
			if n, err := l.core.d.get(ctx, blockCID(raw)); err != nil || n == nil {
				out = append(out, raw)
			}
		}
		l.mu.Unlock()
		raws = raws[k:]
	}
	return out
}

// known reports whether entry c is applied (as knownScope).
func (l *Ledger) known(c cid.Cid) bool {
	_, _, ok := l.knownScope(c)
	return ok
}

func (l *Ledger) request(ctx context.Context, h host.Host, p peer.ID, req *syncReq) (*syncResp, error) {
	return l.requestWithin(ctx, h, p, req, syncTimeout)
}

// requestWithin is request with a timeout other than syncTimeout.
func (l *Ledger) requestWithin(ctx context.Context, h host.Host, p peer.ID, req *syncReq, timeout time.Duration) (*syncResp, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := h.NewStream(network.WithAllowLimitedConn(ctx, "ledger-sync"), p, SyncProtocol)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(timeout))
	if err := writeMsg(s, req); err != nil {
		s.Reset()
		return nil, err
	}
	_ = s.CloseWrite()
	var resp syncResp
	if err := readMsg(bufio.NewReader(s), maxSyncResponse, &resp); err != nil {
		s.Reset()
		return nil, err
	}
	return &resp, nil
}

func (l *Ledger) handleSync(s network.Stream) {
	// Close waits for the handlers it did not stop from starting: an answer
	// reads the store, which closes after the ledger.
	if !l.enterHandler(s) {
		s.Reset()
		return
	}
	defer l.exitHandler(s)
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(syncTimeout))
	var req syncReq
	if err := readMsg(bufio.NewReader(s), maxSyncRequest, &req); err != nil {
		s.Reset()
		return
	}
	if req.Op == opCosign {
		_ = s.SetDeadline(time.Now().Add(cosignTimeout))
	}
	ctx := context.Background()
	if tr := l.tr.Load(); tr != nil {
		ctx = tr.ctx // cancelled by Close
	}
	resp := l.serveFrom(ctx, &req, s.Conn().RemotePeer())
	if err := writeMsg(s, resp); err != nil {
		s.Reset()
	}
}

// resetter is a stream being answered, as Close sees it.
type resetter interface{ Reset() error }

// enterHandler counts a sync stream being answered; false once the ledger
// is closing.
func (l *Ledger) enterHandler(s network.Stream) bool {
	l.bgMu.Lock()
	defer l.bgMu.Unlock()
	if l.bgClosed {
		return false
	}
	l.wg.Add(1)
	if l.handling == nil {
		l.handling = map[resetter]struct{}{}
	}
	l.handling[s] = struct{}{}
	return true
}

func (l *Ledger) exitHandler(s network.Stream) {
	l.bgMu.Lock()
	delete(l.handling, s)
	l.bgMu.Unlock()
	l.wg.Done()
}

// serve answers one sync request: the entries the client lacks
// (Core.PeerLacks of its offer), oldest first, within the response bounds.
// It never trusts the request beyond its bounds: unknown CIDs in Have are
// ignored.
func (l *Ledger) serve(ctx context.Context, req *syncReq) *syncResp {
	return l.serveFrom(ctx, req, "")
}

// serveFrom answers one sync request from peer from.
func (l *Ledger) serveFrom(ctx context.Context, req *syncReq, from peer.ID) *syncResp {
	if string(req.Network) != string(l.net.Bytes()) {
		return &syncResp{Err: "wrong network"}
	}
	if req.Op == opCheckpoints || req.Op == opStateBlock {
		return l.serveCheckpoint(ctx, req)
	}
	if req.Op == opCosign {
		return l.serveCosign(ctx, req, from)
	}
	if req.Op != opDiff && req.Op != opAnnounce && req.Op != opHeads {
		return &syncResp{Err: "unknown op"}
	}
	if kind, _, err := ParseScope(req.Scope); err != nil || (req.Scope != "" && (kind == KindGlobal || !l.core.scoped)) {
		return &syncResp{Err: "bad scope"}
	}
	if req.Op == opHeads {
		l.mu.Lock()
		heads := l.core.closureHeads(req.Scope)
		l.mu.Unlock()
		resp := &syncResp{}
		for _, h := range heads {
			resp.Heads = append(resp.Heads, h.Bytes())
		}
		return resp
	}
	if len(req.Have) > maxHaveHeads {
		return &syncResp{Err: "too many heads"}
	}
	max := int(req.Max)
	if max <= 0 || max > maxRespEntries {
		max = maxRespEntries
	}
	var offer SyncOffer
	for _, b := range req.Have {
		c, err := cid.Cast(b)
		if err != nil {
			return &syncResp{Err: "bad cid"}
		}
		offer.Heads = append(offer.Heads, c)
	}
	if req.Op == opAnnounce {
		l.announced(ctx, from, req.Scope, offer)
		return &syncResp{}
	}
	lacks, cursor := l.cursors.take(from, req.Scope, offer, l.now())
	l.mu.Lock()
	heads := l.core.closureHeads(req.Scope)
	var err error
	if !cursor {
		lacks, err = l.core.ScopePeerLacks(ctx, req.Scope, offer)
		l.cursors.walked()
	}
	l.mu.Unlock()
	resp := &syncResp{}
	if req.Scope == "" && from != "" && l.core.scoped {
		resp.Follow = l.involves(ctx, from)
	}
	for _, h := range heads {
		resp.Heads = append(resp.Heads, h.Bytes())
	}
	if err != nil {
		l.log.Error("answer sync request", "err", err)
		resp.Err = "internal error"
		return resp
	}
	size := 0
	for _, c := range lacks {
		if len(resp.Entries) >= max || size >= respEntryBytes {
			resp.More = true
			break
		}
		raw, err := l.store.GetEntry(ctx, c)
		if err != nil && len(resp.Entries) == 0 && l.prunedHere(ctx) {
			resp.Err = errPruned // the client joins from the checkpoint
			break
		}
		if err != nil {
			l.log.Error("answer sync request: read entry", "entry", c.String(), "err", err)
			resp.More = true
			break
		}
		resp.Entries = append(resp.Entries, raw)
		size += len(raw)
	}
	if sent := len(resp.Entries); resp.More && sent > 0 && max > 1 {
		// The rest of a catch-up, for the peer's next round (sync_cursor.go;
		// not for a request of heads only, Max 1).
		l.cursors.keep(from, req.Scope, lacks[sent-1], lacks[sent:], l.now())
	}
	return resp
}

// ckptAskLevel is the level of a failed ask for a scope's checkpoints: a
// peer that did not answer (unreachable, a connection replaced) is logged
// at debug, as the periodic sync's own failures are; it would otherwise
// be a warning per followed scope at every sync, each second, for as long
// as a peer is down (4,177 lines in twelve minutes on a node of three
// whose peers restarted on new ports). Anything else (a checkpoint it
// refused) stays a warning.
func ckptAskLevel(err error) slog.Level {
	if errors.Is(err, errNoAnswer) {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

func writeMsg(w io.Writer, v any) error {
	b, err := encMode.Marshal(v)
	if err != nil {
		return err
	}
	buf := binary.AppendUvarint(nil, uint64(len(b)))
	_, err = w.Write(append(buf, b...))
	return err
}

func readMsg(r *bufio.Reader, max int, v any) error {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return err
	}
	if n > uint64(max) {
		return errors.New("ledger: sync message too large")
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return decMode.Unmarshal(b, v)
}

// PeerHeads asks p for its heads of the global scope: one request
// (opHeads) that costs a few hundred bytes and no walk of the history on
// either side, however far apart the two ledgers are. A peer older than
// opHeads is asked for at most one entry of the difference instead.
func (l *Ledger) PeerHeads(ctx context.Context, h host.Host, p peer.ID) ([]cid.Cid, error) {
	resp, err := l.request(ctx, h, p, &syncReq{Network: l.net.Bytes(), Op: opHeads})
	if err == nil && resp.Err == "unknown op" {
		l.mu.Lock()
		offer, oerr := l.core.Offer(ctx)
		l.mu.Unlock()
		if oerr != nil {
			return nil, oerr
		}
		req := syncReq{Network: l.net.Bytes(), Op: opDiff, Max: 1}
		for _, c := range offer.Heads {
			req.Have = append(req.Have, c.Bytes())
		}
		resp, err = l.request(ctx, h, p, &req)
	}
	if err != nil {
		return nil, err
	}
	if resp.Err != "" {
		return nil, fmt.Errorf("ledger: peer %s: %s", p, resp.Err)
	}
	out := make([]cid.Cid, 0, len(resp.Heads))
	for _, b := range resp.Heads {
		c, err := cid.Cast(b)
		if err != nil {
			return nil, fmt.Errorf("ledger: peer %s sent a bad head: %w", p, err)
		}
		out = append(out, c)
	}
	return out, nil
}
