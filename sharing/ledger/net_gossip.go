package ledger

import (
	"context"
	"slices"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// GossipSub gives a peer up while staying connected to it: when its
// stream to the peer fails it opens a new one, with a backoff, four times
// within ten minutes, and then forgets the peer; a stream it could not
// open at all is not retried either. It learns the peer again only when
// the peer is identified anew (a new connection) or announces new
// protocols (libp2p/go-libp2p-pubsub#433). Until then it sends the peer
// nothing, neither entries nor this node's subscriptions, so the peer
// lists this node on no topic and gets its entries by sync only (seen in
// the simulation, issue #16; `medmesh health` reports it on the peer's
// side as ledger.no_gossip).
//
// Both ends can tell, and each repairs its half, without disconnecting:
//   - The node whose GossipSub gave the peer up has no outbound GossipSub
//     stream to it. It announces the peer's GossipSub protocols to its own
//     GossipSub (EvtPeerProtocolsUpdated on the host's event bus, the event
//     GossipSub learns peers from; a GossipSub that has the peer ignores
//     it), which opens a stream to the peer and sends it this node's
//     subscriptions.
//   - A node that lists a connected member on no topic (every member
//     subscribes to the global one) has lost the member's subscriptions,
//     which come only at the start of the member's stream to it. If that
//     stream is still open, it resets it: the member's GossipSub, still
//     connected, opens a new one and sends its subscriptions again. (If the
//     member's GossipSub has given up on this node instead, the member is
//     the one without an outbound stream, above.)
//
// gossipLoop looks every half GossipRepairAfter and repairs a member once
// it has been in either state for GossipRepairAfter, then again only after
// as long.

// gossipProtocols returns the protocols the ledger's GossipSub speaks (the
// node's GossipSubOptions leave GossipSub's defaults).
func gossipProtocols() []protocol.ID { return pubsub.GossipSubDefaultProtocols }

// gossipRepair is gossipLoop's state, owned by the loop.
type gossipRepair struct {
	emit event.Emitter
	// missing: when a connected member was first seen in need of repair
	// (no outbound GossipSub stream to it, or its subscriptions lost), or
	// last repaired.
	missing map[peer.ID]time.Time
}

// gossipLoop repairs GossipSub's lost peers until ctx ends (see above).
func (l *Ledger) gossipLoop(ctx context.Context, n *transport) {
	after := l.o.GossipRepairAfter
	em, err := n.h.EventBus().Emitter(new(event.EvtPeerProtocolsUpdated))
	if err != nil {
		l.log.Warn("ledger: cannot watch GossipSub's peers", "err", err)
		return
	}
	defer em.Close()
	r := &gossipRepair{emit: em, missing: map[peer.ID]time.Time{}}
	every := min(max(after/2, 100*time.Millisecond), 30*time.Second)
	l.every(ctx, every, func() { l.gossipTick(n, r, time.Now(), after) })
}

// gossipTick is one look of gossipLoop at the connected members.
func (l *Ledger) gossipTick(n *transport, r *gossipRepair, now time.Time, after time.Duration) {
	nw := n.h.Network()
	listed := map[peer.ID]bool{}
	for _, p := range l.GossipPeers() {
		listed[p] = true
	}
	seen := map[peer.ID]bool{}
	for _, p := range nw.Peers() {
		if nw.Connectedness(p) != network.Connected || !l.IsMember(p) {
			continue
		}
		protos, err := n.h.Peerstore().SupportsProtocols(p, gossipProtocols()...)
		if err != nil || len(protos) == 0 {
			continue // not identified yet, or no GossipSub we speak
		}
		seen[p] = true
		out, in := gossipStreams(nw, p)
		noStream, unlisted := len(out) == 0, !listed[p] && len(in) > 0
		if !noStream && !unlisted {
			delete(r.missing, p)
			continue
		}
		since, ok := r.missing[p]
		if !ok {
			r.missing[p] = now
			continue
		}
		if now.Sub(since) < after {
			continue
		}
		r.missing[p] = now // again only after another GossipRepairAfter
		if noStream {
			if err := r.emit.Emit(event.EvtPeerProtocolsUpdated{Peer: p, Added: protos}); err != nil {
				l.log.Warn("ledger: cannot ask GossipSub to reopen its stream", "peer", p, "err", err)
				continue
			}
		}
		if unlisted {
			for _, s := range in {
				_ = s.Reset()
			}
		}
		l.met.gossipRepairs.Inc()
		l.gossipRepairs.Add(1)
		l.log.Warn("ledger: GossipSub had lost a connected member; asked both ends to open their streams again",
			"peer", p, "no_stream_to_it", noStream, "its_subscriptions_lost", unlisted, "for", now.Sub(since).Round(time.Second))
	}
	for p := range r.missing {
		if !seen[p] {
			delete(r.missing, p)
		}
	}
}

// gossipStreams returns this node's outbound and inbound GossipSub streams
// with p.
func gossipStreams(nw network.Network, p peer.ID) (out, in []network.Stream) {
	for _, c := range nw.ConnsToPeer(p) {
		for _, s := range c.GetStreams() {
			if !slices.Contains(gossipProtocols(), s.Protocol()) {
				continue
			}
			if s.Stat().Direction == network.DirOutbound {
				out = append(out, s)
			} else {
				in = append(in, s)
			}
		}
	}
	return out, in
}

// GossipRepairs returns how many times this node repaired GossipSub's
// streams with a connected member (gossipLoop).
func (l *Ledger) GossipRepairs() int64 { return l.gossipRepairs.Load() }
