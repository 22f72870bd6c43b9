package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/sharing/replication"
	"github.com/medmesh/medmesh/storage/blockstore"
	"github.com/medmesh/medmesh/storage/record"
	"github.com/prometheus/client_golang/prometheus"
)

// ReplicationOptions tune the replication manager (see sharing/replication).
// Zero values take the defaults.
type ReplicationOptions struct {
	// Disabled turns the manager off (no placement, repair or challenges).
	Disabled bool
	// Interval between placement passes. Default 10s. Ledger changes also
	// trigger a pass.
	Interval time.Duration
	// Grace is how long a holder may be unreachable, or fail its proofs of
	// storage, before it is replaced. Default 10m.
	Grace time.Duration
	// VerifyInterval between proof-of-storage rounds. Default 10m.
	VerifyInterval time.Duration
	// SweepInterval between re-plans of every record this node is
	// involved in (a safety net: placement otherwise reacts to ledger
	// entries, liveness changes and failed proofs). Default 10m.
	SweepInterval time.Duration
	// ChallengeBlocks is how many random blocks one challenge asks for.
	// Default 4.
	ChallengeBlocks int
	// ReprovideInterval between DHT re-announcements of every block this
	// node holds. The DHT keeps provider records ~48h. Default 12h.
	ReprovideInterval time.Duration
	// ReprovideBatch is how many CIDs one reprovide batch hands the DHT
	// provider pool (whose concurrency is p2p's ProvideConcurrency).
	// Default 4096.
	ReprovideBatch int
	// FetchConcurrency bounds replicas fetched at once. Default 2.
	FetchConcurrency int
	// DiskReserve is free disk space a replica may not eat into. Default 256 MiB.
	DiskReserve int64
}

func (o *ReplicationOptions) defaults() {
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.Grace <= 0 {
		o.Grace = 10 * time.Minute
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 10 * time.Minute
	}
	if o.VerifyInterval <= 0 {
		o.VerifyInterval = 10 * time.Minute
	}
	if o.ChallengeBlocks <= 0 {
		o.ChallengeBlocks = 4
	}
	o.ChallengeBlocks = min(o.ChallengeBlocks, replication.MaxChallengeBlocks)
	if o.ReprovideInterval <= 0 {
		o.ReprovideInterval = 12 * time.Hour
	}
	if o.ReprovideBatch <= 0 {
		o.ReprovideBatch = 4096
	}
	if o.FetchConcurrency <= 0 {
		o.FetchConcurrency = 2
	}
	if o.DiskReserve <= 0 {
		o.DiskReserve = 256 << 20
	}
}

// Receipt statuses.
const (
	ReceiptHeld     = replication.StatusHeld
	ReceiptDeclined = replication.StatusDeclined
	ReceiptReleased = replication.StatusReleased
)

var pinPrefix = datastore.NewKey("/replication/pins")

// replicator runs placement, repair, proofs of storage and reprovides for
// one daemon. It decides only for its own node (sharing/replication doc).
type replicator struct {
	d    *Daemon
	o    ReplicationOptions
	live *replication.Liveness
	m    *replMetrics
	wake chan struct{}
	wg   sync.WaitGroup
	sem  chan struct{}

	mu       sync.Mutex
	pins     map[cid.Cid]cid.Cid // record -> block list, persisted
	inflight map[cid.Cid]int     // records being fetched or added: gc keeps them
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
	// involved are the records this node may have to act on: it owns,
	// pins, fetches or declined them, or may hold them (placement's
	// window). Liveness changes and the periodic sweep re-plan only these,
	// so a node's idle work follows its own records, not the network's.
	involved map[cid.Cid]bool
	// short is when this node first saw each involved record short of
	// replicas (placement's Shortfall): a decline is withdrawn, or an
	// owner names holders beyond the window, once it lasts.
	short map[cid.Cid]time.Time
}

func (r *replicator) startDial(p peer.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dialing[p] {
		return false
	}
	r.dialing[p] = true
	return true
}

func (r *replicator) endDial(p peer.ID) {
	r.mu.Lock()
	delete(r.dialing, p)
	r.mu.Unlock()
}

type replMetrics struct {
	fetches      *prometheus.CounterVec
	fetchSeconds prometheus.Histogram
	fetchedBytes prometheus.Counter
	receipts     *prometheus.CounterVec
	challenges   *prometheus.CounterVec
	reprovided   prometheus.Counter
	reprovideBPS prometheus.Gauge
	gcBlocks     prometheus.Counter
	gcBytes      prometheus.Counter
	pinned       prometheus.Gauge
	planned      prometheus.Counter
}

func newReplMetrics(reg prometheus.Registerer) *replMetrics {
	m := &replMetrics{
		fetches:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medmesh_replica_fetches_total", Help: "Replica fetches by result."}, []string{"result"}),
		fetchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "medmesh_replica_fetch_seconds", Help: "Time to fetch and pin a replica.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 14)}),
		fetchedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_replica_fetched_bytes_total", Help: "Block bytes fetched for replicas."}),
		receipts:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medmesh_replica_receipts_total", Help: "Replica receipts published by status."}, []string{"status"}),
		challenges:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medmesh_replica_challenges_total", Help: "Proof-of-storage challenges sent, by result."}, []string{"result"}),
		reprovided:   prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_reprovided_blocks_total", Help: "Blocks re-announced on the DHT."}),
		reprovideBPS: prometheus.NewGauge(prometheus.GaugeOpts{Name: "medmesh_reprovide_blocks_per_second", Help: "Throughput of the last reprovide run."}),
		gcBlocks:     prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_gc_removed_blocks_total", Help: "Blocks removed by gc."}),
		gcBytes:      prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_gc_removed_bytes_total", Help: "Bytes removed by gc."}),
		pinned:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "medmesh_replicas_pinned", Help: "Records this node pins as a replica holder."}),
		planned:      prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_replication_plans_total", Help: "Records whose placement this node evaluated (work that should follow changes, not time)."}),
	}
	reg.MustRegister(m.fetches, m.fetchSeconds, m.fetchedBytes, m.receipts, m.challenges, m.reprovided, m.reprovideBPS, m.gcBlocks, m.gcBytes, m.pinned, m.planned)
	return m
}

// startReplication starts the replication manager.
func (d *Daemon) startReplication() error {
	o := d.opts.Replication
	o.defaults()
	r := &replicator{
		d: d, o: o, live: replication.NewLiveness(o.Grace, d.opts.Now()),
		m: newReplMetrics(d.reg), wake: make(chan struct{}, 1), sem: make(chan struct{}, o.FetchConcurrency),
		pins: map[cid.Cid]cid.Cid{}, inflight: map[cid.Cid]int{}, fetching: map[cid.Cid]bool{},
		lost: map[cid.Cid]bool{}, upSet: map[peer.ID]bool{}, dialing: map[peer.ID]bool{}, failing: map[cid.Cid]bool{},
		short: map[cid.Cid]time.Time{}, dirty: map[cid.Cid]bool{}, dirtyAll: true, involved: map[cid.Cid]bool{},
	}
	if err := r.loadPins(d.ctx); err != nil {
		return fmt.Errorf("load replica pins: %w", err)
	}
	d.repl.Store(r)
	// Proofs are served even when the manager is disabled: holders answer.
	d.P2P.Host.SetStreamHandler(replication.ChallengeProtocol, r.serveChallenge)
	if o.Disabled {
		return nil
	}
	r.wg.Add(3)
	go r.loop()
	go r.verifyLoop()
	go r.reprovideLoop()
	return nil
}

// stopReplication waits for the manager's goroutines (d.ctx is cancelled).
func (d *Daemon) stopReplication() {
	r := d.repl.Load()
	if r == nil {
		return
	}
	if d.P2P != nil {
		d.P2P.Host.RemoveStreamHandler(replication.ChallengeProtocol)
	}
	r.wg.Wait()
}

func (r *replicator) loadPins(ctx context.Context) error {
	res, err := r.d.local.Query(ctx, query.Query{Prefix: pinPrefix.String()})
	if err != nil {
		return err
	}
	defer res.Close()
	for e := range res.Next() {
		if e.Error != nil {
			return e.Error
		}
		rec, err1 := cid.Decode(strings.TrimPrefix(e.Key, pinPrefix.String()+"/"))
		bl, err2 := cid.Cast(e.Value)
		if err1 != nil || err2 != nil {
			continue
		}
		r.pins[rec] = bl
	}
	r.m.pinned.Set(float64(len(r.pins)))
	return nil
}

func (r *replicator) pin(ctx context.Context, info ledger.RecordInfo) error {
	if err := r.d.local.Put(ctx, pinPrefix.ChildString(info.ID.String()), info.Blocklist.Bytes()); err != nil {
		return err
	}
	if err := r.d.local.Sync(ctx, pinPrefix); err != nil {
		return err
	}
	r.mu.Lock()
	r.pins[info.ID] = info.Blocklist
	r.m.pinned.Set(float64(len(r.pins)))
	r.mu.Unlock()
	return nil
}

func (r *replicator) unpin(ctx context.Context, rec cid.Cid) error {
	r.mu.Lock()
	delete(r.pins, rec)
	r.m.pinned.Set(float64(len(r.pins)))
	r.mu.Unlock()
	return r.d.local.Delete(ctx, pinPrefix.ChildString(rec.String()))
}

func (r *replicator) pinned(rec cid.Cid) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.pins[rec]
	return ok
}

// hold marks a record as in progress so gc keeps its blocks; call the
// returned function when done.
func (r *replicator) hold(rec cid.Cid) func() {
	r.mu.Lock()
	r.inflight[rec]++
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			if r.inflight[rec]--; r.inflight[rec] <= 0 {
				delete(r.inflight, rec)
			}
			r.mu.Unlock()
		})
	}
}

func (r *replicator) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// loop plans records as ledger entries about them arrive, every record
// after a change of membership, and the records this node is involved in
// when a peer's liveness changes or every Interval while one of them is
// short of replicas; a slow sweep (every SweepInterval) re-plans the
// involved records in case anything was missed. Nothing else: with no
// change, a node does no per-record work, however many records the network
// holds.
func (r *replicator) loop() {
	defer r.wg.Done()
	ch, cancel := r.d.Ledger.Subscribe()
	defer cancel()
	tick := time.NewTicker(r.o.Interval)
	defer tick.Stop()
	sweep := time.NewTicker(r.o.SweepInterval)
	defer sweep.Stop()
	r.pass()
	for {
		select {
		case <-r.d.ctx.Done():
			return
		case e, ok := <-ch:
			if !ok {
				return
			}
			switch e.Type {
			case ledger.TypeMemberAdd, ledger.TypeMemberRemove:
				r.dirtyAll = true
			case ledger.TypeAccess, ledger.TypeServed:
				continue // reads move no replica
			default:
				if rec, ok := ledger.RecordOf(e); ok {
					r.dirty[rec] = true
				} else {
					continue
				}
			}
			// Coalesce a burst of entries into one pass.
			r.kick()
		case <-r.wake:
			r.pass()
		case <-tick.C:
			if r.observe() {
				r.markInvolved()
			}
			for rec := range r.short {
				r.dirty[rec] = true
			}
			r.mu.Lock()
			for rec := range r.failing {
				r.dirty[rec] = true
			}
			r.mu.Unlock()
			r.pass()
		case <-sweep.C:
			r.markInvolved()
			r.pass()
		}
	}
}

func (r *replicator) markInvolved() {
	for rec := range r.involved {
		r.dirty[rec] = true
	}
}

// observe updates liveness from connectedness and dials members that are
// not connected, so a peer that came back is noticed. It reports whether
// any member's liveness changed.
func (r *replicator) observe() bool {
	d := r.d
	now := d.opts.Now()
	changed := false
	for _, m := range d.Ledger.Members() {
		p := m.Peer
		if p == d.self {
			continue
		}
		if d.P2P.Host.Network().Connectedness(p) == network.Connected {
			r.live.Seen(p, now)
		} else if len(d.P2P.Host.Peerstore().Addrs(p)) > 0 && r.startDial(p) {
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer r.endDial(p)
				ctx, cancel := context.WithTimeout(d.ctx, min(r.o.Interval, 5*time.Second))
				defer cancel()
				if d.P2P.Connect(ctx, peer.AddrInfo{ID: p}) == nil {
					r.live.Seen(p, d.opts.Now())
					r.kick()
				}
			}()
		}
		up := r.live.Up(p, now)
		r.mu.Lock()
		if r.upSet[p] != up {
			r.upSet[p] = up
			changed = true
		}
		r.mu.Unlock()
	}
	return changed
}

// plan computes a record's placement with an alive function, from the
// ledger's holding authority (members, receipts, grantees, named holders).
func (r *replicator) plan(info ledger.RecordInfo, alive func(peer.ID) bool) replication.Plan {
	a := r.d.Ledger.HoldAuthority(info)
	if a.Wanted <= 0 {
		a.Wanted = r.d.Repo.Config.ReplicationFactor
	}
	return replication.Decide(replication.Input{
		Record: info.ID, Owner: info.Owner, Wanted: a.Wanted, Members: a.Members,
		Receipts: a.Receipts, Granted: a.Granted, Named: a.Named, Alive: alive,
	})
}

// aliveFor is this node's liveness view for a record (self always alive
// unless it found its copy damaged).
func (r *replicator) aliveFor(rec cid.Cid) func(peer.ID) bool {
	now := r.d.opts.Now()
	return func(p peer.ID) bool {
		if p == r.d.self {
			r.mu.Lock()
			defer r.mu.Unlock()
			return !r.lost[rec]
		}
		return r.d.Ledger.IsMember(p) && r.live.Alive(rec, p, now)
	}
}

func (r *replicator) myReceipt(rec cid.Cid) (ledger.Receipt, bool) {
	for _, rc := range r.d.Ledger.Receipts(rec) {
		if rc.Holder == r.d.self {
			return rc, true
		}
	}
	return ledger.Receipt{}, false
}

// pass plans the dirty records (every record if dirtyAll) and acts for
// this node.
func (r *replicator) pass() {
	d := r.d
	if !d.Ledger.IsMember(d.self) {
		return
	}
	var recs []ledger.RecordInfo
	if r.dirtyAll {
		r.observe()
		recs = d.Ledger.Records()
		r.dirtyAll = false
		clear(r.dirty)
		clear(r.involved)
	} else {
		for rec := range r.dirty {
			if info, ok := d.Ledger.Record(rec); ok {
				recs = append(recs, info)
			}
		}
		clear(r.dirty)
	}
	var room *capacity // computed at most once a pass, and only if needed
	for _, info := range recs {
		if d.ctx.Err() != nil {
			return
		}
		r.evaluate(info, &room)
	}
}

// evaluate plans one record and acts for this node.
func (r *replicator) evaluate(info ledger.RecordInfo, room **capacity) {
	d := r.d
	r.m.planned.Inc()
	now := d.opts.Now()
	p := r.plan(info, r.aliveFor(info.ID))
	if info.Owner == d.self {
		r.involved[info.ID] = true
		r.nameBeyondWindow(info, p, now)
		return
	}
	rc, hasRC := r.myReceipt(info.ID)
	held := hasRC && rc.Status == ReceiptHeld
	pinned := r.pinned(info.ID)
	r.mu.Lock()
	busy := r.fetching[info.ID]
	r.mu.Unlock()
	if busy || pinned || hasRC || replication.Has(p.Targets, d.self) || replication.Has(p.Declined, d.self) ||
		d.Ledger.HoldAuthority(info).MayHold(d.self) {
		r.involved[info.ID] = true
	} else {
		delete(r.involved, info.ID)
	}
	if p.Shortfall == 0 {
		delete(r.short, info.ID)
	}
	switch {
	case busy:
	case replication.Has(p.Targets, d.self) && !(held && pinned):
		r.startFetch(info)
	case (held || pinned) && d.isGrantee(info.ID):
		// A node with a key to the record gives its replica up (repair
		// places another), and drops the blocks once another live
		// holder can serve it: its reads then go to a holder, which
		// attests them. Until then it keeps them, so a grantee holding
		// the last reachable copy can still read (an emergency).
		if held {
			r.release(info.ID, "granted: a grantee does not hold the record's ciphertext")
		} else if err := r.unpin(d.ctx, info.ID); err != nil {
			d.log.Warn("unpin replica", "record", info.ID, "err", err)
		}
		r.involved[info.ID] = true
	case r.reachable(p.Live) && r.keptAsGrantee(info.ID):
		r.dropBlocks(info.ID)
	case held && pinned && replication.Has(p.Surplus, d.self):
		r.release(info.ID, "surplus: more than the wanted replicas are live")
	case held && !pinned:
		r.release(info.ID, "not pinned on this node")
	case pinned && !held && !replication.Has(p.Targets, d.self):
		if err := r.unpin(d.ctx, info.ID); err != nil {
			d.log.Warn("unpin stale replica", "record", info.ID, "err", err)
		}
	case hasRC && rc.Status == ReceiptDeclined && !pinned && p.Shortfall > 0 && replication.Has(p.Declined, d.self):
		// Withdraw the decline if this node now has room and its turn
		// has come; otherwise stay silent (the decline stands).
		since, ok := r.short[info.ID]
		if !ok {
			since = now
			r.short[info.ID] = since
		}
		if !p.Withdraws(d.self, int(now.Sub(since)/r.o.Grace)) {
			return
		}
		if *room == nil {
			c := r.capacity(cid.Undef)
			*room = &c
		}
		if (*room).cannotTake(info) != "" {
			return
		}
		d.log.Info("withdrawing a decline: the record is short of replicas and this node has room", "record", info.ID, "shortfall", p.Shortfall)
		(*room).used += int64(info.Size) // later records this pass see it taken
		(*room).free -= min((*room).free, uint64(info.Size))
		r.startFetch(info)
	}
}

// nameBeyondWindow: an owner whose record has been short of replicas for
// Grace, with no member left in the placement window to take it, names
// alive members beyond the window as holders (replica.assign): only the
// owner may widen who holds its record.
func (r *replicator) nameBeyondWindow(info ledger.RecordInfo, p replication.Plan, now time.Time) {
	if p.Shortfall == 0 || len(p.Beyond) == 0 {
		delete(r.short, info.ID)
		return
	}
	since, ok := r.short[info.ID]
	if !ok {
		r.short[info.ID] = now
		return
	}
	if now.Sub(since) < r.o.Grace {
		return
	}
	names := append([]peer.ID(nil), p.Beyond...)
	sort.Slice(names, func(i, j int) bool { return names[i] < names[j] })
	if _, err := r.d.Ledger.Append(r.d.ctx, ledger.TypeAssign, ledger.AssignPayload{Record: info.ID, Holders: names}); err != nil {
		r.d.log.Warn("name holders beyond the placement window", "record", info.ID, "err", err)
		return
	}
	delete(r.short, info.ID)
	r.d.log.Info("named holders beyond the placement window: too few members in it are alive", "record", info.ID, "holders", names, "shortfall", p.Shortfall)
}

func (r *replicator) publish(ctx context.Context, rec cid.Cid, status, reason string) error {
	if len(reason) > 256 {
		reason = reason[:256]
	}
	if _, err := r.d.Ledger.Append(ctx, ledger.TypeReceipt, ledger.ReceiptPayload{Record: rec, Status: status, Reason: reason}); err != nil {
		return err
	}
	r.m.receipts.WithLabelValues(status).Inc()
	r.d.log.Info("published replica receipt", "record", rec, "status", status, "reason", reason)
	return nil
}

// release publishes "released" and unpins; gc removes the blocks later.
func (r *replicator) release(rec cid.Cid, reason string) {
	if err := r.publish(r.d.ctx, rec, ReceiptReleased, reason); err != nil {
		r.d.log.Warn("release replica", "record", rec, "err", err)
		return
	}
	if err := r.unpin(r.d.ctx, rec); err != nil {
		r.d.log.Warn("unpin replica", "record", rec, "err", err)
	}
}

// dropBlocks deletes the blocks of a record this node neither owns nor
// pins (now), as gc would, without waiting for it.
func (r *replicator) dropBlocks(rec cid.Cid) {
	d := r.d
	var bs []cid.Cid
	d.access.mu.RLock()
	for b, owner := range d.access.blocks {
		if owner == rec {
			bs = append(bs, b)
		}
	}
	d.access.mu.RUnlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, pinned := r.pins[rec]; pinned || r.inflight[rec] > 0 || r.owns(d.ctx, rec) {
		return
	}
	n := 0
	for _, b := range bs {
		if err := d.Store.Blocks.DeleteBlock(d.ctx, b); err == nil {
			n++
		} else if !ipld.IsNotFound(err) {
			d.log.Warn("drop block of a released replica", "record", rec, "block", b, "err", err)
		}
	}
	d.log.Info("dropped the blocks of a record this node may no longer hold", "record", rec, "blocks", n)
}

// reachable reports whether one of the peers is connected now (liveness
// counts a peer alive for a grace period after it went away; dropping a
// copy needs one that can serve it now).
func (r *replicator) reachable(ps []peer.ID) bool {
	for _, p := range ps {
		if p != r.d.self && r.d.P2P.Host.Network().Connectedness(p) == network.Connected {
			return true
		}
	}
	return false
}

// keptAsGrantee reports whether this node still has the blocks of a record
// it held before it was granted it (unpinned, not its own).
func (r *replicator) keptAsGrantee(rec cid.Cid) bool {
	if r.pinned(rec) {
		return false
	}
	if has, _ := r.d.Store.Blocks.Has(r.d.ctx, rec); !has {
		return false
	}
	return r.d.isGrantee(rec) && !r.owns(r.d.ctx, rec)
}

// isGrantee reports whether this node has or had a grant on rec.
func (d *Daemon) isGrantee(rec cid.Cid) bool {
	for _, g := range d.Ledger.GrantHistory(rec) {
		if g.Grantee == d.self {
			return true
		}
	}
	return false
}

func (r *replicator) startFetch(info ledger.RecordInfo) {
	r.mu.Lock()
	if r.fetching[info.ID] {
		r.mu.Unlock()
		return
	}
	r.fetching[info.ID] = true
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() {
			r.mu.Lock()
			delete(r.fetching, info.ID)
			r.mu.Unlock()
		}()
		select {
		case r.sem <- struct{}{}:
		case <-r.d.ctx.Done():
			return
		}
		defer func() { <-r.sem }()
		if err := r.replicate(r.d.ctx, info); err != nil && r.d.ctx.Err() == nil {
			r.m.fetches.WithLabelValues("error").Inc()
			r.d.log.Warn("replicate record", "record", info.ID, "err", err)
		}
	}()
}

// capacity is the room this node has for replicas at one moment.
type capacity struct {
	quota   int64 // 0: no cap
	used    int64 // bytes of the pinned records (but the one excepted)
	free    uint64
	freeOK  bool // free is known
	reserve uint64
}

// capacity measures the room for replicas; except is left out of the
// pinned bytes (a record being re-taken does not count against itself).
func (r *replicator) capacity(except cid.Cid) capacity {
	c := capacity{quota: r.d.Repo.Config.StorageQuota, reserve: uint64(r.o.DiskReserve)}
	if c.quota > 0 {
		r.mu.Lock()
		for rec := range r.pins {
			if rec == except {
				continue
			}
			if ri, ok := r.d.Ledger.Record(rec); ok {
				c.used += int64(ri.Size)
			}
		}
		r.mu.Unlock()
	}
	c.free, c.freeOK = diskFree(r.d.Repo.Path("datastore"))
	return c
}

// cannotTake says why a record does not fit (empty: it does).
func (c capacity) cannotTake(info ledger.RecordInfo) string {
	if c.quota > 0 && c.used+int64(info.Size) > c.quota {
		return fmt.Sprintf("storage quota exceeded: %d + %d > %d bytes", c.used, info.Size, c.quota)
	}
	if c.freeOK && c.free < uint64(info.Size)+c.reserve {
		return fmt.Sprintf("disk full: %d bytes free, record needs %d plus a reserve of %d", c.free, info.Size, c.reserve)
	}
	return ""
}

// cannotTake says why this node cannot store a replica (empty: it can).
func (r *replicator) cannotTake(info ledger.RecordInfo) string {
	return r.capacity(info.ID).cannotTake(info)
}

// replicate fetches a record's ciphertext blocks, pins them and publishes
// a "held" receipt (or "declined" when it cannot take the record; a node
// that already declined it publishes nothing more, so it never flaps).
func (r *replicator) replicate(ctx context.Context, info ledger.RecordInfo) error {
	d := r.d
	if why := r.cannotTake(info); why != "" {
		if rc, ok := r.myReceipt(info.ID); ok && rc.Status == ReceiptDeclined {
			return nil
		}
		r.m.fetches.WithLabelValues("declined").Inc()
		return r.publish(ctx, info.ID, ReceiptDeclined, why)
	}
	done := r.hold(info.ID)
	defer done()
	start := time.Now()
	timeout := d.opts.FetchTimeout + time.Duration(info.Size/(4<<20))*time.Second
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	blb, err := d.P2P.Get(fctx, info.Blocklist)
	if err != nil {
		return fmt.Errorf("fetch block list: %w", err)
	}
	ids, err := record.DecodeBlockList(blb.RawData())
	if err != nil {
		return fmt.Errorf("block list of %s: %w", info.ID, err)
	}
	if !containsCid(ids, info.ID) {
		return fmt.Errorf("block list of %s does not list its manifest", info.ID)
	}
	// Placement may have changed while the block list came (a grant to
	// this node, say): fetch only while this node may still hold the
	// record, or its fetches would be counted as reads.
	if !d.Ledger.HoldAuthority(info).MayHold(d.self) {
		return fmt.Errorf("no longer placed to hold record %s", info.ID)
	}
	// Index first: the blocks are served only to peers allowed to read
	// the record, from the moment they arrive.
	d.access.addBlocks(ctx, info.ID, append(append([]cid.Cid{}, ids...), info.Blocklist))
	var n int64
	if err := d.P2P.GetMany(fctx, ids, func(b blocks.Block) error {
		n += int64(len(b.RawData()))
		return nil
	}); err != nil {
		return fmt.Errorf("fetch blocks: %w", err)
	}
	if err := d.Store.DS.Sync(ctx, datastore.NewKey("/")); err != nil {
		return err
	}
	if err := r.pin(ctx, info); err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	r.mu.Lock()
	delete(r.lost, info.ID)
	r.mu.Unlock()
	if rc, ok := r.myReceipt(info.ID); !ok || rc.Status != ReceiptHeld {
		if err := r.publish(ctx, info.ID, ReceiptHeld, ""); err != nil {
			return fmt.Errorf("publish receipt: %w", err)
		}
	}
	r.m.fetches.WithLabelValues("held").Inc()
	r.m.fetchSeconds.Observe(time.Since(start).Seconds())
	r.m.fetchedBytes.Add(float64(n))
	d.log.Info("holding replica", "record", info.ID, "blocks", len(ids), "bytes", n, "took", time.Since(start).Round(time.Millisecond))
	d.provideLater(append(ids, info.Blocklist))
	return nil
}

func containsCid(cs []cid.Cid, c cid.Cid) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// owns reports whether this node owns rec, or is adding it (its wrapped
// key is stored before its blocks are indexed).
func (r *replicator) owns(ctx context.Context, rec cid.Cid) bool {
	if info, ok := r.d.Ledger.Record(rec); ok && info.Owner == r.d.self {
		return true
	}
	has, _ := r.d.local.Has(ctx, keyKey(rec))
	return has
}

// serveChallenge answers a proof-of-storage challenge.
func (r *replicator) serveChallenge(s network.Stream) {
	d := r.d
	var isOwner bool
	lookup := func(ctx context.Context, rec, c cid.Cid) ([]byte, error) {
		isOwner = r.owns(ctx, rec)
		if !isOwner && !r.pinned(rec) {
			return nil, replication.ErrNotHeld
		}
		if br, ok := d.access.recordOf(c); !ok || br != rec {
			return nil, replication.ErrNotHeld
		}
		b, err := d.Store.Blocks.Get(ctx, c)
		if ipld.IsNotFound(err) || errors.Is(err, blockstore.ErrHashMismatch) {
			return nil, replication.ErrMissing
		}
		if err != nil {
			return nil, err
		}
		return b.RawData(), nil
	}
	rec, missing, err := replication.Serve(d.ctx, s, lookup, 30*time.Second)
	if err != nil {
		d.log.Debug("challenge", "from", s.Conn().RemotePeer(), "err", err)
	}
	if missing == 0 || !rec.Defined() {
		return
	}
	d.log.Error("proof of storage failed: blocks of a held record are missing", "record", rec, "missing", missing, "owner", isOwner)
	if isOwner {
		// The owner cannot hand its record off: fetch the blocks back.
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.selfHeal(rec)
		}()
		return
	}
	r.mu.Lock()
	already := r.lost[rec]
	r.lost[rec] = true
	r.mu.Unlock()
	if !already {
		r.release(rec, fmt.Sprintf("%s %d challenged blocks missing", replication.ReasonLost, missing))
	}
}

// selfHeal re-fetches an owned record's missing blocks from its holders.
func (r *replicator) selfHeal(rec cid.Cid) {
	d := r.d
	info, ok := d.Ledger.Record(rec)
	if !ok {
		return
	}
	done := r.hold(rec)
	defer done()
	ctx, cancel := context.WithTimeout(d.ctx, d.opts.FetchTimeout)
	defer cancel()
	ids, err := r.blockList(ctx, info)
	if err == nil {
		err = d.P2P.GetMany(ctx, ids, func(blocks.Block) error { return nil })
	}
	if err != nil {
		d.log.Error("could not restore the blocks of an owned record", "record", rec, "err", err)
		return
	}
	d.log.Info("restored the missing blocks of an owned record", "record", rec)
}

func (r *replicator) blockList(ctx context.Context, info ledger.RecordInfo) ([]cid.Cid, error) {
	b, err := r.d.P2P.Get(ctx, info.Blocklist)
	if err != nil {
		return nil, err
	}
	return record.DecodeBlockList(b.RawData())
}

// heldRecords lists the records this node owns or pins: only a holder has
// the bytes to check a challenge's answer.
func (r *replicator) heldRecords() []cid.Cid {
	var out []cid.Cid
	r.mu.Lock()
	for rec := range r.pins {
		out = append(out, rec)
	}
	r.mu.Unlock()
	res, err := r.d.local.Query(r.d.ctx, query.Query{Prefix: "/keys", KeysOnly: true})
	if err != nil {
		r.d.log.Warn("list owned records", "err", err)
		return out
	}
	defer res.Close()
	for e := range res.Next() {
		if e.Error != nil {
			r.d.log.Warn("list owned records", "err", e.Error)
			break
		}
		if c, err := cid.Decode(strings.TrimPrefix(e.Key, "/keys/")); err == nil && !r.pinned(c) {
			out = append(out, c)
		}
	}
	return out
}

// verifyLoop challenges the other holders of every record this node holds.
func (r *replicator) verifyLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.o.VerifyInterval)
	defer t.Stop()
	for {
		select {
		case <-r.d.ctx.Done():
			return
		case <-t.C:
			r.verifyAll()
		}
	}
}

func (r *replicator) verifyAll() {
	d := r.d
	for _, rec := range r.heldRecords() {
		if d.ctx.Err() != nil {
			return
		}
		info, ok := d.Ledger.Record(rec)
		if !ok {
			continue
		}
		p := r.plan(info, nil)
		var others []peer.ID
		for _, h := range p.Holders {
			if h != d.self && d.P2P.Host.Network().Connectedness(h) == network.Connected {
				others = append(others, h)
			}
		}
		if len(others) == 0 {
			continue
		}
		sample, err := r.sample(d.ctx, info)
		if err != nil {
			d.log.Debug("challenge sample", "record", info.ID, "err", err)
			continue
		}
		for _, h := range others {
			r.verifyOne(info.ID, h, sample)
		}
	}
}

// sample picks random blocks of a record from the local store.
func (r *replicator) sample(ctx context.Context, info ledger.RecordInfo) ([]blocks.Block, error) {
	blb, err := r.d.Store.Blocks.Get(ctx, info.Blocklist)
	if err != nil {
		return nil, err
	}
	ids, err := record.DecodeBlockList(blb.RawData())
	if err != nil {
		return nil, err
	}
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	var out []blocks.Block
	for _, c := range ids {
		if len(out) == r.o.ChallengeBlocks {
			break
		}
		b, err := r.d.Store.Blocks.Get(ctx, c)
		if err != nil {
			continue // our own copy is damaged; the owner/holder check catches it
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, errors.New("no local blocks to challenge with")
	}
	return out, nil
}

func (r *replicator) verifyOne(rec cid.Cid, h peer.ID, sample []blocks.Block) {
	d := r.d
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	res, err := replication.Challenge(ctx, d.P2P.Host, h, rec, sample)
	now := d.opts.Now()
	switch {
	case err != nil:
		r.m.challenges.WithLabelValues("error").Inc()
		d.log.Debug("challenge holder", "record", rec, "holder", h, "err", err)
	case res.OK():
		r.m.challenges.WithLabelValues("ok").Inc()
		r.live.Verified(rec, h, true, now)
		r.mu.Lock()
		delete(r.failing, rec)
		r.mu.Unlock()
	default:
		r.m.challenges.WithLabelValues("failed").Inc()
		r.live.Verified(rec, h, false, now)
		r.mu.Lock()
		r.failing[rec] = true
		r.mu.Unlock()
		d.log.Warn("holder failed proof of storage", "record", rec, "holder", h, "missing", res.Missing, "wrong", res.Wrong, "refused", res.Refused)
		r.kick()
	}
}

// HoldRecord marks rec as in progress until the returned function is
// called: gc keeps its blocks meanwhile. Code that stores a record's blocks
// before the ledger announces it (imports, bulk adds) should hold it.
func (d *Daemon) HoldRecord(rec cid.Cid) (release func()) {
	r := d.repl.Load()
	if r == nil {
		return func() {}
	}
	return r.hold(rec)
}
