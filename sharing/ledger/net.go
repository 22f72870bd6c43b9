package ledger

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
)

type syncReq struct {
	Network []byte   `cbor:"1,keyasint"`
	Op      uint8    `cbor:"2,keyasint"`
	Have    [][]byte `cbor:"3,keyasint"`
	Max     uint32   `cbor:"4,keyasint"`
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
}

// TopicName returns the GossipSub topic of a network's ledger.
func TopicName(network cid.Cid) string { return "/medmesh/" + network.String() + "/ledger/1" }

// transport is the ledger's networking, set up by Start.
type transport struct {
	h      host.Host
	ps     *pubsub.PubSub
	topic  *pubsub.Topic
	sub    *pubsub.Subscription
	ctx    context.Context
	cancel context.CancelFunc
	notif  *network.NotifyBundle

	mu       sync.Mutex
	syncing  map[peer.ID]bool // in flight; true = run again when done
	wantFrom map[peer.ID]bool // peers that sent entries we could not place
	synced   map[peer.ID]syncState
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

// stop tears networking down; Close calls it after cancelling n.ctx and
// waiting for the background goroutines (pubsub's event handler and topic
// must not be cancelled and closed concurrently).
func (n *transport) stop() {
	n.cancel()
	n.h.Network().StopNotify(n.notif)
	n.h.RemoveStreamHandler(SyncProtocol)
	if n.sub != nil {
		n.sub.Cancel()
	}
	_ = n.ps.UnregisterTopicValidator(n.topic.String())
	_ = n.topic.Close()
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
	if err := ps.RegisterTopicValidator(name, l.validate); err != nil {
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
	n := &transport{h: h, ps: ps, topic: topic, sub: sub, ctx: rctx, cancel: cancel,
		syncing: map[peer.ID]bool{}, wantFrom: map[peer.ID]bool{}, synced: map[peer.ID]syncState{}}
	n.notif = &network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			// Not caught up with a (re)connected peer until a sync says so.
			n.mu.Lock()
			n.synced[c.RemotePeer()] = syncState{}
			n.mu.Unlock()
			l.trigger(rctx, c.RemotePeer())
		},
		DisconnectedF: func(nw network.Network, c network.Conn) {
			if nw.Connectedness(c.RemotePeer()) != network.Connected {
				n.mu.Lock()
				delete(n.synced, c.RemotePeer())
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
					l.trigger(rctx, ev.Peer)
				}
			}
		})
	}
	for _, p := range h.Network().Peers() {
		l.trigger(rctx, p)
	}
	return nil
}

func (l *Ledger) publish(ctx context.Context, e *Entry) {
	n := l.tr.Load()
	if n == nil {
		return
	}
	if err := n.topic.Publish(ctx, e.raw); err != nil {
		l.log.Warn("publish entry", "entry", e.cid.String(), "err", err)
	}
}

// validate is the GossipSub validator: forged or invalid entries are
// rejected (the sender is penalized), duplicates and entries waiting for
// parents are ignored (not forwarded), valid new entries are applied and
// accepted.
func (l *Ledger) validate(ctx context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	// Our own publications come back through the validator with from = our
	// ID (msg.Local only marks in-process-only publications): they were
	// validated and applied by Append already.
	if n := l.tr.Load(); msg.Local || (n != nil && from == n.h.ID()) {
		return pubsub.ValidationAccept
	}
	if len(msg.Data) <= MaxEntrySize && l.known(blockCID(msg.Data)) {
		l.met.duplicates.Inc()
		return pubsub.ValidationIgnore // no need to verify the signature again
	}
	e, err := DecodeEntry(msg.Data)
	if err != nil {
		l.rejectedUndecoded(err)
		return pubsub.ValidationReject
	}
	out, err := l.ingest(ctx, []*Entry{e})
	if err != nil {
		l.log.Error("apply gossiped entry", "entry", e.cid.String(), "err", err)
		return pubsub.ValidationIgnore
	}
	switch out.Results[0].Status {
	case Applied:
		return pubsub.ValidationAccept
	case Pending:
		// Its parents are what the sender has and we lack: fetch them now,
		// and again at the next tick if this sync does not place it.
		if n := l.tr.Load(); n != nil {
			n.mu.Lock()
			n.wantFrom[from] = true
			n.mu.Unlock()
			l.trigger(context.Background(), from)
		}
		return pubsub.ValidationIgnore
	case Duplicate:
		return pubsub.ValidationIgnore
	default:
		return pubsub.ValidationReject
	}
}

// syncLoop periodically catches up with a random peer, and with peers that
// sent entries we could not place.
func (l *Ledger) syncLoop(ctx context.Context) {
	t := time.NewTicker(l.o.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.closed:
			return
		case <-t.C:
		}
		n := l.tr.Load()
		n.mu.Lock()
		want := n.wantFrom
		n.wantFrom = map[peer.ID]bool{}
		n.mu.Unlock()
		for p := range want {
			l.trigger(ctx, p)
		}
		peers := n.h.Network().Peers()
		if len(peers) > 0 {
			l.trigger(ctx, peers[rand.IntN(len(peers))])
		}
	}
}

// trigger starts a sync with p unless one is running; if one is, it runs
// once more when done.
func (l *Ledger) trigger(ctx context.Context, p peer.ID) {
	n := l.tr.Load()
	if n == nil || p == n.h.ID() {
		return
	}
	n.mu.Lock()
	if _, running := n.syncing[p]; running {
		n.syncing[p] = true
		n.mu.Unlock()
		return
	}
	n.syncing[p] = false
	n.mu.Unlock()
	ctx = n.ctx
	l.goBackground(func() {
		for {
			err := l.SyncWith(ctx, n.h, p)
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
			again := n.syncing[p]
			if !again || ctx.Err() != nil {
				delete(n.syncing, p)
				n.mu.Unlock()
				return
			}
			n.syncing[p] = false
			n.mu.Unlock()
		}
	})
}

// SyncWith fetches from p every entry p has that this node lacks, oldest
// first, in bounded batches, and applies them: each round offers our heads
// (Core.Offer) and applies what p answers; it stops when p has nothing more
// and none of p's heads is one we lack (Core.WeLack), or when a round
// applies nothing. It then records whether every head p answered with is
// applied here (Synced).
func (l *Ledger) SyncWith(ctx context.Context, h host.Host, p peer.ID) error {
	var heads [][]byte // p's heads in its last answer
	err := l.syncWith(ctx, h, p, &heads)
	caught := false
	if err == nil && heads != nil {
		lack, lerr := l.weLack(ctx, heads)
		caught = lerr == nil && len(lack) == 0
	}
	if n := l.tr.Load(); n != nil && n.h == h {
		n.mu.Lock()
		if h.Network().Connectedness(p) == network.Connected {
			n.synced[p] = syncState{caughtUp: caught, at: l.now()}
		}
		n.mu.Unlock()
	}
	return err
}

func (l *Ledger) syncWith(ctx context.Context, h host.Host, p peer.ID, heads *[][]byte) error {
	ask := func(req *syncReq) (*syncResp, error) { return l.request(ctx, h, p, req) }
	// Checkpoints first: a node with nothing but the genesis joins from
	// the peer's latest instead of replaying (checkpoint_sync.go).
	if _, err := l.catchUpCheckpoints(ctx, ask, false); err != nil {
		l.log.Warn("checkpoint from peer", "peer", p.String(), "err", err)
	}
	total, joined := 0, false
	for round := 0; round < maxSyncRounds; round++ {
		l.mu.Lock()
		offer, err := l.core.Offer(ctx)
		l.mu.Unlock()
		if err != nil {
			return err
		}
		req := syncReq{Network: l.net.Bytes(), Op: opDiff, Max: maxRespEntries}
		for _, c := range offer.Heads {
			req.Have = append(req.Have, c.Bytes())
		}
		resp, err := l.request(ctx, h, p, &req)
		if err != nil {
			l.met.syncs.WithLabelValues("error").Inc()
			return err
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
		*heads = resp.Heads
		if len(resp.Entries) == 0 {
			break
		}
		l.met.fetched.Add(float64(len(resp.Entries)))
		fresh := resp.Entries[:0]
		for _, raw := range resp.Entries {
			if len(raw) > MaxEntrySize || !l.known(blockCID(raw)) {
				fresh = append(fresh, raw)
			}
		}
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
		l.log.Debug("synced", "peer", p.String(), "entries", total)
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

// known reports whether entry c is applied (false if that cannot be read:
// the entry is then ingested, which reports the failure).
func (l *Ledger) known(c cid.Cid) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ok, _ := l.core.Has(context.Background(), c)
	return ok
}

func (l *Ledger) request(ctx context.Context, h host.Host, p peer.ID, req *syncReq) (*syncResp, error) {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	s, err := h.NewStream(network.WithAllowLimitedConn(ctx, "ledger-sync"), p, SyncProtocol)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(syncTimeout))
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
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(syncTimeout))
	var req syncReq
	if err := readMsg(bufio.NewReader(s), maxSyncRequest, &req); err != nil {
		s.Reset()
		return
	}
	resp := l.serve(context.Background(), &req)
	if err := writeMsg(s, resp); err != nil {
		s.Reset()
	}
}

// serve answers one sync request: the entries the client lacks
// (Core.PeerLacks of its offer), oldest first, within the response bounds.
// It never trusts the request beyond its bounds: unknown CIDs in Have are
// ignored.
func (l *Ledger) serve(ctx context.Context, req *syncReq) *syncResp {
	if string(req.Network) != string(l.net.Bytes()) {
		return &syncResp{Err: "wrong network"}
	}
	if req.Op == opCheckpoints || req.Op == opStateBlock {
		return l.serveCheckpoint(ctx, req)
	}
	if req.Op != opDiff {
		return &syncResp{Err: "unknown op"}
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
	l.mu.Lock()
	heads := l.core.Heads()
	lacks, err := l.core.PeerLacks(ctx, offer)
	l.mu.Unlock()
	resp := &syncResp{}
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
	return resp
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

// PeerHeads asks p for its heads: one sync request that asks for at most
// one entry, so it costs a few hundred bytes however far apart the two
// ledgers are.
func (l *Ledger) PeerHeads(ctx context.Context, h host.Host, p peer.ID) ([]cid.Cid, error) {
	l.mu.Lock()
	offer, err := l.core.Offer(ctx)
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	req := syncReq{Network: l.net.Bytes(), Op: opDiff, Max: 1}
	for _, c := range offer.Heads {
		req.Have = append(req.Have, c.Bytes())
	}
	resp, err := l.request(ctx, h, p, &req)
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
