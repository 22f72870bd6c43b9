package ledger

import (
	"context"
	"fmt"
	"sort"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/replication"
)

// Which scopes a node follows (doc.go, "Scopes"). Following a scope means
// subscribing to its topic, catching it up by sync and storing its
// entries; a node stores entries of other scopes only when it writes them
// (a reader's claims on the owner's audit scope).

// pFollow keeps the scopes this node learned it is involved in from
// another node (an entry in its inbox, a sync hint): /f/<scope>, whose
// value is when it started following (unfollow.go: it leaves them when it
// is no longer involved). It is not state (not in any digest): it is this
// node's own choice.
const pFollow = "/f/"

// Scoped reports whether the network splits its entries into scopes.
func (l *Ledger) Scoped() bool { return l.core.scoped }

// Followed returns the names of the scopes this node follows, "global"
// first, the others sorted: its own owner and audit scopes, those of the
// owners whose replica group it is in (replication.Group), and those it
// learned it is involved in (a grant to it, a record it may hold). In a
// network without scopes, only "global".
func (l *Ledger) Followed() []string {
	l.stateMu.RLock()
	out := make([]string, 0, len(l.follow))
	for s := range l.follow {
		if s != "" {
			out = append(out, s)
		}
	}
	l.stateMu.RUnlock()
	sort.Strings(out)
	return append([]string{ScopeGlobal}, out...)
}

// Follows reports whether this node follows scope s.
func (l *Ledger) Follows(s string) bool {
	l.stateMu.RLock()
	defer l.stateMu.RUnlock()
	return l.follow[wireScope(s)]
}

// ScopeHeads returns the heads of scope s as this node holds them.
func (l *Ledger) ScopeHeads(s string) ([]cid.Cid, error) {
	if _, _, err := ParseScope(s); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.core.ScopeHeads(s), nil
}

// ScopeDigest returns the digest of scope s's state and its number of
// entries (Core.ScopeDigest): equal on every node that follows s and has
// caught it up. On a node that joined from a checkpoint, caught a scope up
// from one, or pruned, the replay starts from its latest trusted
// checkpoints (replayInto), as Verify's does, and the entries they hold
// are counted without being replayed.
//
// The replay is of the causal past of the closure's heads when it starts,
// walked and replayed without the ledger's lock (as a checkpoint draft's,
// scopeDraftAt): with the lock held, a digest of a large scope (`ledger
// heads --scope`) stopped the node's adds and gossip for as long as the
// replay took. Should a checkpoint move under it (adopted, pruned), it
// runs again with the lock held.
func (l *Ledger) ScopeDigest(ctx context.Context, s string) ([]byte, int, error) {
	if _, _, err := ParseScope(s); err != nil {
		return nil, 0, err
	}
	ws := wireScope(s)
	deps := map[string]bool{}
	for _, x := range closure(ws) {
		deps[x] = true
	}
	want := func(x string) bool { return deps[x] }
	l.mu.Lock()
	err := l.core.ready(ctx)
	roots := l.core.closureHeads(ws)
	l.mu.Unlock()
	if err != nil {
		return nil, 0, err
	}
	past, err := l.pastOf(ctx, roots)
	if err != nil {
		return nil, 0, err
	}
	d, n, err := l.scopeDigest(ctx, replayOpts{want: want, in: past.in, byScope: past.byScope})
	if err != nil && ctx.Err() == nil {
		l.log.Debug("scope digest without the lock failed; again with it", "scope", s, "err", err)
		l.mu.Lock()
		defer l.mu.Unlock()
		d, n, err = l.scopeDigest(ctx, replayOpts{want: want})
	}
	return d, n, err
}

// scopeDigest replays what o selects into a scratch core and returns its
// digest and the number of entries loaded and replayed.
func (l *Ledger) scopeDigest(ctx context.Context, o replayOpts) ([]byte, int, error) {
	fresh, _, release, err := l.scratchCore(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer release()
	if l.digestHook != nil {
		l.digestHook()
	}
	loaded, replayed, err := l.replay(ctx, fresh, o)
	if err != nil {
		return nil, 0, err
	}
	d, err := fresh.State().Digest(ctx)
	return d, loaded + replayed, err
}

// involvedScopes computes the wire scopes this node follows from the
// membership and what it persisted.
func (l *Ledger) involvedScopes(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{"": true}
	if !l.core.scoped {
		return out, nil
	}
	out[wireScope(OwnerScope(l.self))] = true
	out[wireScope(AuditScope(l.self))] = true
	ms := l.Members()
	rms := make([]replication.Member, len(ms))
	for i, m := range ms {
		rms[i] = replication.Member{Peer: m.Peer, Org: m.Org}
	}
	// A tracker, not GroupsWith nor groupOf per owner: every owner's group
	// is asked here at each change of membership, by every node; the
	// tracker ranks again only the few owners a change can affect
	// (BenchmarkGroupTracker: 0.25 ms at 200 members, against 7.4 ms).
	// Callers hold followMu (refreshFollow), which guards it.
	if l.inGroups == nil {
		l.inGroups = replication.NewGroupTracker(l.self)
	}
	for _, o := range l.inGroups.Update(rms) {
		// The audit scope survives the owner's disk on its group.
		out[OwnerScope(o)] = true
		out[AuditScope(o)] = true
	}
	err := l.store.Scan(ctx, pFollow, true, func(k string, _ []byte) bool {
		s := k[len(pFollow):]
		if _, _, err := ParseScope(s); err == nil {
			out[s] = true
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: read followed scopes: %w", err)
	}
	return out, nil
}

// refreshFollow recomputes the followed scopes and returns those newly
// followed and those no longer followed. Recomputations run one at a
// time (followMu): two changes of membership in quick succession each
// start one, and the one that read the older membership must not store
// its set after the newer one did (the node would follow again a scope it
// just left).
func (l *Ledger) refreshFollow(ctx context.Context) (added, removed []string, err error) {
	l.followMu.Lock()
	defer l.followMu.Unlock()
	set, err := l.involvedScopes(ctx)
	if err != nil {
		return nil, nil, err
	}
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	for s := range set {
		if !l.follow[s] {
			added = append(added, s)
		}
	}
	for s := range l.follow {
		if !set[s] {
			removed = append(removed, s)
		}
	}
	l.follow = set
	sort.Strings(added)
	sort.Strings(removed)
	return added, removed, nil
}

// follow makes this node follow owner scope s from now on (persisted), as
// when it learns it was granted a record of s's owner or may hold one. It
// reports whether s is new.
func (l *Ledger) followScope(ctx context.Context, s string) (bool, error) {
	kind, owner, err := ParseScope(s)
	if err != nil || kind == KindGlobal {
		return false, err
	}
	if l.Follows(s) {
		return false, nil
	}
	b, err := l.store.Batch(ctx)
	if err != nil {
		return false, err
	}
	at := followedAt(l.now()) // leaveScopes waits unfollowGrace from it
	if err := b.Put(pFollow+s, at); err != nil {
		return false, err
	}
	if kind == KindAudit { // an audit scope's closure holds the owner scope
		if err := b.Put(pFollow+OwnerScope(owner), at); err != nil {
			return false, err
		}
	}
	if err := b.Commit(ctx); err != nil {
		return false, fmt.Errorf("ledger: follow scope %s: %w", s, err)
	}
	added, _, err := l.refreshFollow(ctx)
	return len(added) > 0, err
}

// inboxTargets are the peers besides the author that an appended scoped
// entry should reach even if they do not follow its scope yet: the
// grantee of a grant, the holders an assign names, the emergency
// authorities a record is escrowed to, and, for an entry about
// a record, the members that may hold it outside its owner's replica group
// (grants and declines can push its window there). They learn from it
// that they are involved and follow the scope.
func (l *Ledger) inboxTargets(ctx context.Context, e *Entry) []peer.ID {
	if e.Scope == "" {
		return nil
	}
	kind, owner, err := ParseScope(e.Scope)
	if err != nil || kind != KindOwner {
		return nil
	}
	spec := l.core.types[e.Type]
	set := map[peer.ID]bool{}
	var rec cid.Cid
	switch e.Type {
	case TypeGrant:
		var w grantWire
		if canonicalUnmarshal(e.Payload, &w) == nil {
			if p, err := peer.IDFromBytes(w.Grantee); err == nil {
				set[p] = true
			}
		}
	case TypeAssign:
		var w assignWire
		if canonicalUnmarshal(e.Payload, &w) == nil {
			for _, b := range w.Holders {
				if p, err := peer.IDFromBytes(b); err == nil {
					set[p] = true
				}
			}
		}
	case TypeRecordAnnounce:
		var w recordWire
		if canonicalUnmarshal(e.Payload, &w) == nil {
			rec, _ = cid.Cast(w.Record)
			for _, es := range w.Escrow { // emergency authorities grant it
				if p, err := peer.IDFromBytes(es.Authority); err == nil {
					set[p] = true
				}
			}
		}
	}
	if !rec.Defined() && spec != nil && spec.Subject != nil && e.Type != TypeReceipt {
		pl := spec.New()
		if canonicalUnmarshal(e.Payload, pl) == nil {
			rec, _ = spec.Subject(pl)
		}
	}
	if rec.Defined() {
		if info, ok, err := l.State().Record(ctx, rec); err == nil && ok {
			if a, err := l.State().HoldAuthority(ctx, info); err == nil {
				rms := a.Members
				for _, p := range a.Eligible() {
					if !replication.InGroup(owner, p, rms) {
						set[p] = true
					}
				}
			}
		}
	}
	delete(set, l.self)
	delete(set, e.Author)
	out := make([]peer.ID, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// groupOf returns owner's replica group (replication.Group) under the
// current membership. Ranking every member for every owner costs
// O(members) hashes and a sort per owner, and the followed scopes, their
// followers and the inbox targets ask often: each group is computed once
// per membership.
func (l *Ledger) groupOf(owner peer.ID) []peer.ID {
	l.stateMu.RLock()
	g, ok := l.groups[owner]
	gen := l.memberGen
	var rms []replication.Member
	if !ok {
		rms = make([]replication.Member, 0, len(l.members))
		for _, m := range l.members {
			rms = append(rms, replication.Member{Peer: m.Peer, Org: m.Org})
		}
	}
	l.stateMu.RUnlock()
	if ok {
		return g
	}
	g = replication.Group(owner, rms)
	l.stateMu.Lock()
	if l.memberGen == gen {
		if l.groups == nil {
			l.groups = map[peer.ID][]peer.ID{}
		}
		l.groups[owner] = g
	}
	l.stateMu.Unlock()
	return g
}
