package ledger

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The transport of scopes (doc.go, "Scopes"): one GossipSub topic per
// scope, subscribed by the nodes that follow it; an inbox topic per node,
// through which an entry reaches a peer it involves before that peer
// follows its scope; and the sync protocol's scope field and announce op.

// ScopeTopicName returns the GossipSub topic of scope s of a network: the
// network's topic (TopicName) for the global scope, that name followed by
// "/" and the scope's name for the others.
func ScopeTopicName(network cid.Cid, s string) string {
	if ws := wireScope(s); ws != "" {
		return TopicName(network) + "/" + ws
	}
	return TopicName(network)
}

// InboxTopicName returns the topic of peer p's inbox in a network: p
// subscribes to it, others publish the entries that involve p to it.
func InboxTopicName(network cid.Cid, p peer.ID) string {
	return TopicName(network) + "/inbox/" + p.String()
}

// announceTimeout bounds telling a scope's owner about entries written to
// it.
const announceTimeout = 10 * time.Second

// startScopes subscribes to the topics of the followed scopes other than
// the global one, and to this node's inbox.
func (l *Ledger) startScopes(n *transport) {
	if !l.core.scoped {
		return
	}
	if err := l.subscribe(n, InboxTopicName(l.net, l.self), "", true); err != nil {
		l.log.Warn("subscribe to this node's inbox", "err", err)
	}
	l.subscribeFollowed(n)
}

// subscribeFollowed subscribes to every followed scope's topic not yet
// subscribed, and unsubscribes from the topics of scopes no longer
// followed (a change of membership moved this node out of an owner's
// replica group): it stops receiving them.
func (l *Ledger) subscribeFollowed(n *transport) {
	want := map[string]bool{}
	for _, s := range l.Followed()[1:] {
		name := ScopeTopicName(l.net, s)
		want[name] = true
		if err := l.subscribe(n, name, wireScope(s), false); err != nil {
			l.log.Warn("subscribe to scope", "scope", s, "err", err)
		}
	}
	n.topicMu.Lock()
	defer n.topicMu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	for name, t := range n.topics {
		if t.scope == "" || t.sub == nil || want[name] {
			continue
		}
		t.sub.Cancel()
		t.sub = nil
		if t.validator {
			_ = n.ps.UnregisterTopicValidator(name)
			t.validator = false
		}
		l.log.Info("no longer following scope", "scope", scopeName(t.scope))
	}
}

// followChanged re-reads which scopes this node follows, in the
// background, subscribes to the new ones and unsubscribes from those it
// left (after a change of membership: replica groups follow it).
func (l *Ledger) followChanged() {
	l.goBackground(func() {
		added, removed, err := l.refreshFollow(context.Background())
		if err != nil {
			l.log.Warn("recompute followed scopes", "err", err)
			return
		}
		if len(added) > 0 {
			l.log.Info("following scopes", "scopes", added)
		}
		if n := l.tr.Load(); n != nil && len(added)+len(removed) > 0 {
			l.subscribeFollowed(n) // and unsubscribes from those left
		}
	})
}

// subscribe joins topic name (validating it as wire scope scope's, or as
// this node's inbox) and subscribes to it, once. On a scope topic, every
// peer that joins it is synced with for that scope, as the global topic's
// peers are.
func (l *Ledger) subscribe(n *transport, name, scope string, inbox bool) error {
	n.topicMu.Lock()
	defer n.topicMu.Unlock()
	if n.ctx.Err() != nil {
		return n.ctx.Err()
	}
	n.mu.Lock()
	t := n.topics[name]
	n.mu.Unlock()
	if t != nil && t.sub != nil {
		return nil
	}
	if err := n.ps.RegisterTopicValidator(name, l.validator(scope, inbox)); err != nil {
		return fmt.Errorf("ledger: register validator of %s: %w", name, err)
	}
	if t == nil {
		topic, err := n.ps.Join(name)
		if err != nil {
			_ = n.ps.UnregisterTopicValidator(name)
			return fmt.Errorf("ledger: join %s: %w", name, err)
		}
		t = &scopeTopic{topic: topic}
	}
	t.validator = true
	if !inbox {
		t.scope = scope
	}
	sub, err := t.topic.Subscribe()
	if err != nil {
		return fmt.Errorf("ledger: subscribe to %s: %w", name, err)
	}
	t.sub = sub
	n.mu.Lock()
	n.topics[name] = t
	n.mu.Unlock()
	ctx := n.ctx
	l.goBackground(func() { // the validator applied every delivered entry
		for {
			if _, err := sub.Next(ctx); err != nil {
				return
			}
		}
	})
	if inbox {
		return nil
	}
	// A new follower connects to the scope's owner at once (syncLoop keeps
	// it so): the owner links every follower into one topic mesh.
	if _, owner, err := ParseScope(scope); err == nil && owner != "" && owner != l.self && l.IsMember(owner) && n.h.Network().Connectedness(owner) != network.Connected {
		l.trigger(ctx, owner, scope)
	}
	evts, err := t.topic.EventHandler()
	if err != nil {
		return nil
	}
	l.goBackground(func() {
		defer evts.Cancel()
		for {
			ev, err := evts.NextPeerEvent(ctx)
			if err != nil {
				return
			}
			if ev.Type == pubsub.PeerJoin {
				l.trigger(ctx, ev.Peer, scope)
			}
		}
	})
	return nil
}

// topic returns topic name, joining it to publish only if this node has
// not joined it.
func (l *Ledger) topic(n *transport, name string) (*pubsub.Topic, error) {
	n.topicMu.Lock()
	defer n.topicMu.Unlock()
	n.mu.Lock()
	t := n.topics[name]
	n.mu.Unlock()
	if t != nil {
		return t.topic, nil
	}
	if n.ctx.Err() != nil {
		return nil, n.ctx.Err()
	}
	topic, err := n.ps.Join(name)
	if err != nil {
		return nil, fmt.Errorf("ledger: join %s: %w", name, err)
	}
	n.mu.Lock()
	n.topics[name] = &scopeTopic{topic: topic}
	n.mu.Unlock()
	return topic, nil
}

// scopePeers lists the peers subscribed to wire scope scope's topic.
func (l *Ledger) scopePeers(n *transport, scope string) []peer.ID {
	n.mu.Lock()
	t := n.topics[ScopeTopicName(l.net, scope)]
	n.mu.Unlock()
	if t == nil {
		return nil
	}
	return t.topic.ListPeers()
}

// publish sends an appended entry on its scope's topic; in a scoped
// network also to the inboxes of the peers it involves (inboxTargets), and,
// when this node does not follow the entry's scope, tells the scope's
// owner (opAnnounce), which then pulls it: a reader's claims reach the
// owner even when no follower of the owner's audit scope is in this node's
// mesh.
func (l *Ledger) publish(ctx context.Context, e *Entry) {
	n := l.tr.Load()
	if n == nil {
		return
	}
	send := func(name string) {
		t, err := l.topic(n, name)
		if err == nil {
			err = t.Publish(ctx, e.raw)
		}
		if err != nil {
			l.log.Warn("publish entry", "entry", e.cid.String(), "topic", name, "err", err)
		}
	}
	send(ScopeTopicName(l.net, e.Scope))
	if e.Scope == "" {
		return
	}
	for _, p := range l.inboxTargets(ctx, e) {
		send(InboxTopicName(l.net, p))
		// GossipSub delivers the inbox entry only to a peer it knows
		// subscribes, that is, a connected one: tell p directly too (a
		// stream dials it), and p pulls the scope from this node.
		l.announceLater(n, p, e.Scope, "could not announce an entry to the peer it involves; it learns of it at its next sync with a follower of the scope")
	}
	if _, owner, err := ParseScope(e.Scope); err == nil && !l.Follows(e.Scope) && owner != l.self {
		l.announceLater(n, owner, e.Scope, "could not announce entries to the scope's owner; it pulls them when it next syncs with this node")
	}
}

// announceLater announces wire scope scope's heads to p in the background
// (announceRetrying), once per (peer, scope) at a time: an announce
// carries the heads when it is sent, so entries written meanwhile ride on
// one more run after it instead of each starting its own (a burst of
// grants to a peer that is down, a reader's claims while the owner is
// away). failed is what is logged when the retries run out.
func (l *Ledger) announceLater(n *transport, p peer.ID, scope, failed string) {
	k := syncKey{p, scope}
	n.mu.Lock()
	if _, busy := n.announcing[k]; busy {
		n.announcing[k] = true // once more when done
		n.mu.Unlock()
		return
	}
	n.announcing[k] = false
	n.mu.Unlock()
	l.goBackground(func() {
		for {
			if err := l.announceRetrying(n, p, scope); err != nil {
				l.log.Info(failed, "scope", scopeName(scope), "peer", p.String(), "err", err)
			}
			n.mu.Lock()
			again := n.announcing[k]
			if !again || n.ctx.Err() != nil {
				delete(n.announcing, k)
				n.mu.Unlock()
				return
			}
			n.announcing[k] = false
			n.mu.Unlock()
		}
	})
}

// announceRetries are the waits before each new attempt of an announce
// that failed (a peer unreachable for a moment, a stream that timed out
// on a busy node): an entry that involves a peer is its only prompt to
// follow the scope, and without it the peer learns of its grant only from
// a sync answer's hint (syncResp.Follow), which needs a sync with a node
// that follows the scope: minutes in a large network.
func announceRetries() []time.Duration {
	return []time.Duration{time.Second, 4 * time.Second, 15 * time.Second, time.Minute}
}

// announceRetrying announces (announce) until it succeeds, the retries
// run out or the node closes.
func (l *Ledger) announceRetrying(n *transport, p peer.ID, scope string) error {
	err := l.announce(n, p, scope)
	for _, wait := range announceRetries() {
		if err == nil {
			return nil
		}
		l.log.Debug("announce", "scope", scopeName(scope), "peer", p.String(), "err", err, "retry_in", wait)
		select {
		case <-n.ctx.Done():
			return err
		case <-time.After(wait):
		}
		err = l.announce(n, p, scope)
	}
	return err
}

// announce tells peer p this node's heads of wire scope scope (opAnnounce).
func (l *Ledger) announce(n *transport, p peer.ID, scope string) error {
	ctx, cancel := context.WithTimeout(n.ctx, announceTimeout)
	defer cancel()
	l.mu.Lock()
	heads := l.core.ScopeHeads(scopeName(scope))
	l.mu.Unlock()
	req := syncReq{Network: l.net.Bytes(), Op: opAnnounce, Scope: scope}
	for _, c := range heads {
		req.Have = append(req.Have, c.Bytes())
	}
	resp, err := l.request(ctx, n.h, p, &req)
	if err != nil {
		return err
	}
	if resp.Err != "" {
		return fmt.Errorf("ledger: peer %s: %s", p, resp.Err)
	}
	return nil
}

// announced handles opAnnounce: if this node follows the scope and lacks
// some of the heads from has, it syncs the scope from that peer. An owner
// scope it does not follow is one whose entries involve it (the announce
// of an inbox delivery): it follows it, as fromInbox does.
func (l *Ledger) announced(ctx context.Context, from peer.ID, scope string, offer SyncOffer) {
	if from == "" || scope == "" {
		return
	}
	if !l.Follows(scope) {
		if kind, _, err := ParseScope(scope); err != nil || kind != KindOwner {
			return
		}
		l.followFrom(from, scope, "following scope: a peer announced entries there that involve this node")
		return
	}
	l.mu.Lock()
	lack, err := l.core.WeLack(ctx, offer)
	l.mu.Unlock()
	if err == nil && len(lack) > 0 {
		l.trigger(ctx, from, scope)
	}
}

// fromInbox decides what to do with an entry delivered to this node's
// inbox: an owner scope entry makes this node follow that scope (it was
// granted a record there, or named or placed to hold one), subscribing to
// its topic and syncing it from the sender; the entry is then ingested
// like any other. Other entries are ignored.
func (l *Ledger) fromInbox(from peer.ID, e *Entry) bool {
	kind, _, err := ParseScope(e.Scope)
	if err != nil || kind != KindOwner {
		return false
	}
	if l.Follows(e.Scope) {
		return true
	}
	l.followFrom(from, e.Scope, "following scope: an entry there involves this node")
	return true
}

// followFrom makes this node follow owner scope scope in the background
// (followScope), subscribes to its topic if that is new (logging why),
// and syncs it from the peer that told it (an inbox delivery, an
// announce).
func (l *Ledger) followFrom(from peer.ID, scope, why string) {
	l.goBackground(func() {
		n := l.tr.Load()
		if n == nil {
			return
		}
		added, err := l.followScope(n.ctx, scope)
		if err != nil {
			l.log.Warn("follow scope", "scope", scopeName(scope), "err", err)
			return
		}
		if added {
			l.log.Info(why, "scope", scopeName(scope), "from", from.String())
			l.subscribeFollowed(n)
		}
		l.trigger(n.ctx, from, scope)
	})
}

// liveGrantTo reports whether p has a live grant on rec at now.
func liveGrantTo(ctx context.Context, st State, rec cid.Cid, p peer.ID, now time.Time) (bool, error) {
	gs, err := st.Grants(ctx, rec)
	if err != nil {
		return false, err
	}
	for _, g := range gs {
		if g.Grantee == p && g.LiveAt(now) {
			return true, nil
		}
	}
	return false, nil
}

// followHinted follows the owner scopes a peer's sync answer says involve
// this node (syncResp.Follow), as an inbox delivery would have.
func (l *Ledger) followHinted(from peer.ID, scopes []string) {
	n := l.tr.Load()
	if n == nil {
		return
	}
	for i, s := range scopes {
		if i >= maxFollowHints {
			return
		}
		kind, _, err := ParseScope(s)
		if err != nil || kind != KindOwner || l.Follows(s) {
			continue
		}
		added, err := l.followScope(n.ctx, s)
		if err != nil {
			l.log.Warn("follow scope", "scope", s, "err", err)
			return
		}
		if added {
			l.log.Info("following scope: a peer says it involves this node", "scope", s, "from", from.String())
			l.subscribeFollowed(n)
			l.trigger(n.ctx, from, wireScope(s))
		}
	}
}

// scopeFollowers returns the connected peers that follow scope s, or
// should: those on its topic, its owner and the owner's replica group
// (whose subscription GossipSub may not have told this node yet).
func (l *Ledger) scopeFollowers(n *transport, s string) []peer.ID {
	_, owner, err := ParseScope(s)
	if err != nil {
		return nil
	}
	set := map[peer.ID]bool{owner: true}
	for _, p := range l.scopePeers(n, wireScope(s)) {
		set[p] = true
	}
	for _, p := range l.groupOf(owner) {
		set[p] = true
	}
	delete(set, l.self)
	nw := n.h.Network()
	out := make([]peer.ID, 0, len(set))
	for p := range set {
		if nw.Connectedness(p) == network.Connected {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// ScopeTopic reports, for diagnostics (the simulation's report of an
// operation that timed out), whether this node is subscribed to scope's
// topic and the peers GossipSub lists on it.
func (l *Ledger) ScopeTopic(scope string) (subscribed bool, peers []peer.ID) {
	n := l.tr.Load()
	if n == nil {
		return false, nil
	}
	n.mu.Lock()
	t := n.topics[ScopeTopicName(l.net, wireScope(scope))]
	subscribed = t != nil && t.sub != nil
	n.mu.Unlock()
	if t == nil {
		return false, nil
	}
	return subscribed, t.topic.ListPeers()
}

// GossipPeers returns the peers GossipSub lists on the network's topic (the
// global scope's, which every member subscribes to): the health check
// reports a connected member missing from it (GossipSub lost its
// subscriptions while the two stayed connected), whose entries then come
// by sync only.
func (l *Ledger) GossipPeers() []peer.ID {
	_, ps := l.ScopeTopic(ScopeGlobal)
	return ps
}
