package replication

import (
	"context"
	"sort"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/ledger"
	rules "github.com/medmesh/medmesh/sharing/replication"
)

func (m *Manager) startDial(p peer.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dialing[p] {
		return false
	}
	m.dialing[p] = true
	return true
}

func (m *Manager) endDial(p peer.ID) {
	m.mu.Lock()
	delete(m.dialing, p)
	m.mu.Unlock()
}

func (m *Manager) kick() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// loop plans records as ledger entries about them arrive; when a member
// joins, leaves, changes org or its liveness changes, the records this
// node is involved in and those the member holds (the ledger's holder
// index: the ones that may need a new holder); every Interval the involved
// records short of replicas; and in a slow sweep (started every
// SweepInterval, SweepBatch records an Interval) the involved records in
// case anything was missed. Every record it knows is planned once, at
// start and when the ledger loads the global scope's state from a
// checkpoint (ledger.TypeStateLoaded: joining); an owner scope's load
// plans that owner's records (they arrived without entries). Nothing
// else: with no change, a node does no per-record work, however many
// records the network holds.
func (m *Manager) loop() {
	defer m.wg.Done()
	ch, cancel := m.ledger.Subscribe()
	defer cancel()
	tick := time.NewTicker(m.o.Interval)
	defer tick.Stop()
	sweep := time.NewTicker(m.o.SweepInterval)
	defer sweep.Stop()
	m.pass()
	for {
		select {
		case <-m.ctx.Done():
			return
		case e, ok := <-ch:
			if !ok {
				return
			}
			if m.onEntry(e) {
				m.kick() // a burst of entries coalesces into one pass
			}
		case <-m.wake:
			m.pass()
		case <-tick.C:
			for _, p := range m.observe() {
				m.changed[p] = true
			}
			m.tick()
		case <-sweep.C:
			m.startSweep()
		}
	}
}

// onEntry marks for planning what an applied entry (or a ledger
// notification) may move, and reports whether it marked anything: the
// record an entry is about; members that joined, left or changed org
// (followChanges); after a scope's state was loaded from a checkpoint
// rather than applied entry by entry, the records of that scope's owner
// (an owner scope), none (an audit scope: reads move no replica), or every
// record (the global scope: the membership itself was loaded).
func (m *Manager) onEntry(e *ledger.Entry) bool {
	switch e.Type {
	case ledger.TypeMemberAdd, ledger.TypeMemberRemove, ledger.TypeMemberOrg:
		if p, ok := ledger.MemberOf(e); ok {
			m.changed[p] = true
		} else {
			m.dirtyAll = true
		}
	case ledger.TypeAccess, ledger.TypeServed:
		return false // reads move no replica
	case ledger.TypeStateLoaded:
		kind, owner, err := ledger.ParseScope(e.Scope)
		switch {
		case err != nil || kind == ledger.KindGlobal:
			m.dirtyAll = true
		case kind == ledger.KindOwner:
			m.loaded[owner] = true
		default:
			return false
		}
	default:
		rec, ok := ledger.RecordOf(e)
		if !ok {
			return false
		}
		m.dirty[rec] = true
	}
	return true
}

// tick is the loop's work every Interval (besides liveness): it plans the
// records short of replicas, those with a holder failing its proofs, and
// the sweep's next SweepBatch records.
func (m *Manager) tick() {
	for rec := range m.short {
		m.dirty[rec] = true
	}
	m.mu.Lock()
	for rec := range m.failing {
		m.dirty[rec] = true
	}
	m.mu.Unlock()
	n := min(len(m.sweep), m.o.SweepBatch)
	for _, rec := range m.sweep[:n] {
		if m.involved[rec] {
			m.dirty[rec] = true
		}
	}
	m.sweep = m.sweep[n:]
	m.pass()
}

// startSweep starts a sweep of the involved records (every SweepInterval),
// once the last one is done; each tick then takes SweepBatch records of it.
func (m *Manager) startSweep() {
	if len(m.sweep) == 0 {
		for rec := range m.involved {
			m.sweep = append(m.sweep, rec)
		}
	}
}

func (m *Manager) markInvolved() {
	for rec := range m.involved {
		m.dirty[rec] = true
	}
}

// observe updates liveness from connectedness and dials members that are
// not connected, so a peer that came back is noticed. It returns the
// members whose liveness changed.
func (m *Manager) observe() []peer.ID {
	now := m.now()
	var changed []peer.ID
	for _, mem := range m.ledger.Members() {
		p := mem.Peer
		if p == m.self {
			continue
		}
		if m.host.Network().Connectedness(p) == network.Connected {
			m.live.Seen(p, now)
		} else if len(m.host.Peerstore().Addrs(p)) > 0 && m.startDial(p) {
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				defer m.endDial(p)
				ctx, cancel := context.WithTimeout(m.ctx, min(m.o.Interval, 5*time.Second))
				defer cancel()
				if m.net.Connect(ctx, peer.AddrInfo{ID: p}) == nil {
					m.live.Seen(p, m.now())
					m.kick()
				}
			}()
		}
		up := m.live.Up(p, now)
		m.mu.Lock()
		if m.upSet[p] != up {
			m.upSet[p] = up
			changed = append(changed, p)
		}
		m.mu.Unlock()
	}
	return changed
}

// plan computes a record's placement with an alive function, from the
// ledger's holding authority (members, receipts, grantees, named holders).
func (m *Manager) plan(info ledger.RecordInfo, alive func(peer.ID) bool) rules.Plan {
	a := m.ledger.HoldAuthority(info)
	if a.Wanted <= 0 {
		a.Wanted = m.cfg.Replicas
	}
	return rules.Decide(rules.Input{
		Record: info.ID, Owner: info.Owner, Wanted: a.Wanted, Members: a.Members,
		Receipts: a.Receipts, Granted: a.Granted, Named: a.Named, Alive: alive,
	})
}

// aliveFor is this node's liveness view for a record (self always alive
// unless it found its copy damaged).
func (m *Manager) aliveFor(rec cid.Cid) func(peer.ID) bool {
	now := m.now()
	return func(p peer.ID) bool {
		if p == m.self {
			m.mu.Lock()
			defer m.mu.Unlock()
			return !m.lost[rec]
		}
		return m.ledger.IsMember(p) && m.live.Alive(rec, p, now)
	}
}

func (m *Manager) myReceipt(rec cid.Cid) (ledger.Receipt, bool) {
	for _, rc := range m.ledger.Receipts(rec) {
		if rc.Holder == m.self {
			return rc, true
		}
	}
	return ledger.Receipt{}, false
}

// pass plans the dirty records (every record if dirtyAll) and acts for
// this node.
func (m *Manager) pass() {
	if !m.ledger.IsMember(m.self) {
		return
	}
	var ids []cid.Cid
	if m.dirtyAll {
		m.observe()
		all, err := m.ledger.RecordIDs(m.ctx)
		if err != nil {
			m.log.Warn("list the ledger's records; planning them later", "err", err)
			return
		}
		ids = all
		m.dirtyAll = false
		clear(m.dirty)
		clear(m.changed)
		clear(m.loaded)
		clear(m.involved)
	} else {
		if !m.followLoaded() {
			m.kick() // planned in full at the next pass
			return
		}
		m.followChanges()
		for rec := range m.dirty {
			ids = append(ids, rec)
		}
		clear(m.dirty)
	}
	var room *capacity // computed at most once a pass, and only if needed
	for _, id := range ids {
		if m.ctx.Err() != nil {
			return
		}
		// One record at a time: at start, ids is every record.
		if info, ok := m.ledger.Record(id); ok {
			m.evaluate(info, &room)
		}
	}
}

// followLoaded marks for planning the records of the owners whose scope
// was loaded from a checkpoint (m.loaded). If their list cannot be read it
// plans every record instead (dirtyAll) and reports false.
func (m *Manager) followLoaded() bool {
	for owner := range m.loaded {
		ids, err := m.ledger.OwnedIDs(m.ctx, owner)
		if err != nil {
			m.log.Warn("list the records of an owner whose scope was loaded; planning every record", "owner", owner, "err", err)
			m.dirtyAll = true
			return false
		}
		for _, rec := range ids {
			m.dirty[rec] = true
		}
	}
	clear(m.loaded)
	return true
}

// followChanges marks for planning what a change of members (m.changed:
// joined, left, changed org, came or went) can move for this node: the
// records it is involved in (it may fall out of their windows) and the
// records those members hold (one may need a new holder, and this node
// may be next). A member's joining only pushes others down a record's
// order; entering a window matters only when the record lacks a holder,
// which the holder index finds.
func (m *Manager) followChanges() {
	if len(m.changed) == 0 {
		return
	}
	for p := range m.changed {
		held, err := m.ledger.HeldIDs(m.ctx, p)
		if err != nil {
			m.log.Warn("list the records a member holds; planning every record", "member", p, "err", err)
			m.dirtyAll = true
			return
		}
		for _, rec := range held {
			m.dirty[rec] = true
		}
	}
	clear(m.changed)
	m.markInvolved()
}

// evaluate plans one record and acts for this node.
func (m *Manager) evaluate(info ledger.RecordInfo, room **capacity) {
	m.m.planned.Inc()
	now := m.now()
	p := m.plan(info, m.aliveFor(info.ID))
	if info.Owner == m.self {
		m.involved[info.ID] = true
		m.restoreIfMissing(info)
		m.nameBeyondWindow(info, p, now)
		return
	}
	rc, hasRC := m.myReceipt(info.ID)
	held := hasRC && rc.Status == rules.StatusHeld
	pinned := m.pins.Pinned(info.ID)
	m.mu.Lock()
	busy := m.fetching[info.ID]
	m.mu.Unlock()
	if busy || pinned || hasRC || rules.Has(p.Targets, m.self) || rules.Has(p.Declined, m.self) ||
		m.ledger.HoldAuthority(info).MayHold(m.self) {
		m.involved[info.ID] = true
	} else {
		delete(m.involved, info.ID)
	}
	if p.Shortfall == 0 {
		delete(m.short, info.ID)
	}
	switch {
	case busy:
	case rules.Has(p.Targets, m.self) && !(held && pinned):
		m.startFetch(info)
	case (held || pinned) && m.isGrantee(info.ID):
		// A node with a key to the record gives its replica up (repair
		// places another), and drops the blocks once another live
		// holder can serve it: its reads then go to a holder, which
		// attests them. Until then it keeps them, so a grantee holding
		// the last reachable copy can still read (an emergency).
		if held {
			m.release(info.ID, "granted: a grantee does not hold the record's ciphertext")
		} else if err := m.unpin(m.ctx, info.ID); err != nil {
			m.log.Warn("unpin replica", "record", info.ID, "err", err)
		}
		m.involved[info.ID] = true
	case m.reachable(p.Live) && m.keptAsGrantee(info.ID):
		m.dropBlocks(info.ID)
	case held && pinned && rules.Has(p.Surplus, m.self):
		m.release(info.ID, "surplus: more than the wanted replicas are live")
	case held && !pinned:
		m.release(info.ID, "not pinned on this node")
	case pinned && !held && !rules.Has(p.Targets, m.self):
		if err := m.unpin(m.ctx, info.ID); err != nil {
			m.log.Warn("unpin stale replica", "record", info.ID, "err", err)
		}
	case hasRC && rc.Status == rules.StatusDeclined && !pinned && p.Shortfall > 0 && rules.Has(p.Declined, m.self):
		// Withdraw the decline if this node now has room and its turn
		// has come; otherwise stay silent (the decline stands).
		since, ok := m.short[info.ID]
		if !ok {
			since = now
			m.short[info.ID] = since
		}
		if !p.Withdraws(m.self, int(now.Sub(since)/m.o.Grace)) {
			return
		}
		if *room == nil {
			c := m.capacity(cid.Undef)
			*room = &c
		}
		if (*room).cannotTake(info) != "" {
			return
		}
		m.log.Info("withdrawing a decline: the record is short of replicas and this node has room", "record", info.ID, "shortfall", p.Shortfall)
		(*room).used += int64(info.Size) // later records this pass see it taken
		(*room).free -= min((*room).free, uint64(info.Size))
		m.startFetch(info)
	}
}

// nameBeyondWindow: an owner whose record has been short of replicas for
// Grace, with no member left in the placement window to take it, names
// alive members beyond the window as holders (replica.assign): only the
// owner may widen who holds its record.
func (m *Manager) nameBeyondWindow(info ledger.RecordInfo, p rules.Plan, now time.Time) {
	if p.Shortfall == 0 || len(p.Beyond) == 0 {
		delete(m.short, info.ID)
		return
	}
	since, ok := m.short[info.ID]
	if !ok {
		m.short[info.ID] = now
		return
	}
	if now.Sub(since) < m.o.Grace {
		return
	}
	names := append([]peer.ID(nil), p.Beyond...)
	sort.Slice(names, func(i, j int) bool { return names[i] < names[j] })
	if _, err := m.ledger.Append(m.ctx, ledger.TypeAssign, ledger.AssignPayload{Record: info.ID, Holders: names}); err != nil {
		m.log.Warn("name holders beyond the placement window", "record", info.ID, "err", err)
		return
	}
	delete(m.short, info.ID)
	m.log.Info("named holders beyond the placement window: too few members in it are alive", "record", info.ID, "holders", names, "shortfall", p.Shortfall)
}
