package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/medmesh/medmesh/sharing/keywrap"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// The workload is decided tick by tick by one seeded RNG, from the driver's
// own bookkeeping only (never from what a node happens to have received),
// so two runs with the same seed and flags ask for the same operations in
// the same order. Each operation runs in its own goroutine on the node that
// would do it (the owner announces and grants, the grantee reads, the
// serving holder attests), waiting first for what a real node would need
// (the grant it reads under, the grantee's key, ...), so the entries' timing
// is the network's.

// readableAfter is how long after a grant is decided it may be read under.
const readableAfter = 2 * time.Second

// record is one record of the workload.
type record struct {
	n     int // creation order
	owner int
	id    cid.Cid
	// announce is the announcement's CID (set before ready closes).
	announce cid.Cid
	ready    chan struct{} // closed when the announcement (and holder choice) is done
	ok       bool          // announced
	// listed is the driver's: the record is among the readable ones.
	listed bool

	mu       sync.Mutex
	holders  []int        // replica holders chosen at announcement (and repairs)
	heldBy   map[int]bool // holders whose "held" receipt was appended
	grantees map[int]bool
}

func (r *record) servers(s *sim) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	if s.up(r.owner) {
		out = append(out, r.owner)
	}
	for _, h := range r.holders {
		if r.heldBy[h] && s.up(h) {
			out = append(out, h)
		}
	}
	return out
}

// grant is one grant of the workload.
type grant struct {
	rec        *record
	candidates []int // grantee candidates in preference order
	readyTick  int
	revoked    atomic.Bool // decided by the driver, read by the operations too

	done    chan struct{}
	ok      bool
	grantee int
	cid     cid.Cid
}

// readEvent is one read: the claim its reader appended and the attestation
// that counted it.
type readEvent struct {
	rec    *record
	reader int
	server int
	t0     time.Time // the read
	claim  cid.Cid
	// set by the server's attestor
	served   cid.Cid
	servedAt time.Time
}

// opStats counts what each kind of operation did.
type opStats struct {
	ok, failed, skipped atomic.Int64
}

type workload struct {
	s   *sim
	ctx context.Context
	rng *mrand.Rand

	rank     []int // clinic activity rank -> node index (Zipf over ranks)
	usable   map[int]bool
	records  []*record
	readable []*record     // records with a readable grant, oldest first
	pending  []*grant      // decided, not readable yet
	live     []*grant      // readable, not revoked
	joinNext int           // next identity to join
	useAt    map[int][]int // tick -> joiners the workload may use from then on

	ops   sync.WaitGroup
	stats map[string]*opStats

	readMu sync.Mutex
	reads  []*readEvent
	grants []*grant // every grant appended, for its latency to the grantee
	errMu  sync.Mutex
	errs   map[string]int // first errors by kind, for the report

	// chaos draws the GossipSub breaks (chaos.go); broken lists them.
	chaos    *mrand.Rand
	brokenMu sync.Mutex
	broken   []*brokenPair
}

func opKinds() []string {
	return []string{"record", "receipt", "grant", "read", "attest", "revoke", "join", "leave", "repair"}
}

func newWorkload(ctx context.Context, s *sim) *workload {
	w := &workload{s: s, ctx: ctx, rng: mrand.New(mrand.NewPCG(s.cfg.Seed, 0x1ed9e7)),
		usable: map[int]bool{}, useAt: map[int][]int{}, stats: map[string]*opStats{}, errs: map[string]int{},
		chaos: chaosRNG(s.cfg.Seed)}
	for _, k := range opKinds() {
		w.stats[k] = &opStats{}
	}
	w.rank = w.rng.Perm(s.cfg.Nodes)
	for i := 0; i < s.cfg.Nodes; i++ {
		w.usable[i] = true
	}
	w.joinNext = s.cfg.Nodes
	return w
}

func (w *workload) fail(kind string, err error) {
	w.stats[kind].failed.Add(1)
	if w.s.cfg.Progress != nil {
		// The report keeps the first 160 bytes of each error (a count
		// per kind); a diagnosis needs all of it.
		fmt.Fprintf(w.s.cfg.Progress, "ledgersim %s: %s failed: %v\n", w.s.cfg.Design, kind, err)
	}
	w.errMu.Lock()
	w.errs[kind+": "+trimErr(err)]++
	w.errMu.Unlock()
}

func trimErr(err error) string {
	s := err.Error()
	if len(s) > 160 {
		s = s[:160]
	}
	return s
}

// zipf draws an index in [0, n) with P(k) ∝ 1/(k+1)^s.
func (w *workload) zipf(n int) int {
	if n <= 1 {
		return 0
	}
	return int(mrand.NewZipf(w.rng, w.s.cfg.Zipf, 1, uint64(n-1)).Uint64())
}

// clinic draws an active clinic: Zipf over the activity ranking (a few
// large hospitals do most of the work), skipping clinics that left or have
// not finished joining.
func (w *workload) clinic(except ...int) (int, bool) {
	for try := 0; try < 20; try++ {
		i := w.rank[w.zipf(len(w.rank))]
		if w.usable[i] && !contains(except, i) {
			return i, true
		}
	}
	return 0, false
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// run drives the workload for cfg.Duration, then waits for the operations
// it started.
func (w *workload) run() {
	cfg := w.s.cfg
	ticks := int(cfg.Duration / cfg.Tick)
	dt := cfg.Tick.Seconds()
	var acc struct{ rec, grant, read, revoke float64 }
	joinAt := spread(cfg.Joins, ticks, 0)
	leaveAt := spread(cfg.Leaves, ticks, ticks/(2*(cfg.Leaves+1)))
	breakAt := spread(cfg.GossipBreaks, ticks/2, 0)
	readyTicks := int(readableAfter / cfg.Tick)
	start := time.Now()
	lastProgress := start
	for t := 0; t < ticks; t++ {
		// Grants decided readyTicks ago become readable.
		for len(w.pending) > 0 && w.pending[0].readyTick <= t {
			g := w.pending[0]
			w.pending = w.pending[1:]
			if g.revoked.Load() {
				continue
			}
			w.live = append(w.live, g)
			if !g.rec.listed {
				g.rec.listed = true
				w.readable = append(w.readable, g.rec)
			}
		}
		for _, i := range w.useAt[t] {
			w.usable[i] = true
		}
		for joinAt[t] > 0 {
			joinAt[t]--
			w.join(t)
		}
		for leaveAt[t] > 0 {
			leaveAt[t]--
			w.leave()
		}
		for breakAt[t] > 0 {
			breakAt[t]--
			w.breakGossip()
		}
		acc.rec += cfg.Records * dt
		for ; acc.rec >= 1; acc.rec-- {
			if rec := w.newRecord(); rec != nil && w.rng.Float64() < 0.8 {
				w.newGrant(rec, t+readyTicks) // most records go to a referral at once
			}
		}
		acc.grant += cfg.Grants * dt
		for ; acc.grant >= 1; acc.grant-- {
			if len(w.records) > 0 {
				w.newGrant(w.records[len(w.records)-1-w.zipf(len(w.records))], t+readyTicks)
			}
		}
		acc.read += cfg.Reads * dt
		for ; acc.read >= 1; acc.read-- {
			w.read()
		}
		acc.revoke += cfg.Revokes * dt
		for ; acc.revoke >= 1; acc.revoke-- {
			w.revoke()
		}
		next := start.Add(time.Duration(t+1) * cfg.Tick)
		if time.Since(lastProgress) >= 10*time.Second {
			lastProgress = time.Now()
			w.progress(fmt.Sprintf("workload %3.0f%%", 100*float64(t)/float64(ticks)))
		}
		select {
		case <-w.ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
	}
	w.progress("workload done; waiting for operations in flight")
	w.ops.Wait()
}

func (w *workload) progress(what string) {
	if w.s.cfg.Progress == nil {
		return
	}
	var parts []string
	for _, k := range opKinds() {
		st := w.stats[k]
		if n := st.ok.Load() + st.failed.Load(); n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d/%d", k, st.ok.Load(), n))
		}
	}
	fmt.Fprintf(w.s.cfg.Progress, "ledgersim %s: %s; ok/tried: %v; load %s\n", w.s.cfg.Design, what, parts, loadavg())
}

// spread places n events evenly over ticks, starting at offset.
func spread(n, ticks, offset int) map[int]int {
	out := map[int]int{}
	for k := 0; k < n; k++ {
		out[offset+(k+1)*ticks/(n+1)]++
	}
	return out
}

// launch runs op in a goroutine the workload waits for.
func (w *workload) launch(op func()) {
	w.ops.Add(1)
	go func() {
		defer w.ops.Done()
		op()
	}()
}

// waitUntil polls cond until it holds, the operation times out or the run
// ends.
func (w *workload) waitUntil(cond func() bool) error {
	deadline := time.Now().Add(w.s.cfg.OpTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out waiting for what the operation needs")
		}
		select {
		case <-w.ctx.Done():
			return w.ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func fakeCID(s string) cid.Cid {
	h, _ := mh.Sum([]byte(s), mh.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, h)
}

func seal(to *ident, info string) ([]byte, error) {
	dk := make([]byte, keywrap.KeySize)
	if _, err := rand.Read(dk); err != nil {
		return nil, err
	}
	env, err := keywrap.Wrap(to.kem.Public(), dk, keywrap.Info("ledgersim", info))
	if err != nil {
		return nil, err
	}
	return env.MarshalBinary()
}

// append appends an entry at node i and notes when it was published.
func (w *workload) append(i int, typ string, pl any) (*ledger.Entry, error) {
	n := w.s.node(i)
	e, err := n.l.Append(w.ctx, typ, pl)
	if err != nil {
		return nil, err
	}
	w.s.notePublished(e, i, time.Now())
	return e, nil
}

// newRecord has a clinic (Zipf) announce a record; the first Replicas-1
// members its ledger says may hold it then hold it (a "held" receipt each,
// once they have seen the announcement).
func (w *workload) newRecord() *record {
	owner, ok := w.clinic()
	if !ok {
		w.stats["record"].skipped.Add(1)
		return nil
	}
	rec := &record{n: len(w.records), owner: owner, ready: make(chan struct{}), heldBy: map[int]bool{}, grantees: map[int]bool{}}
	rec.id = fakeCID(fmt.Sprintf("ledgersim %d record %d", w.s.cfg.Seed, rec.n))
	w.records = append(w.records, rec)
	w.launch(func() {
		defer close(rec.ready)
		env, err := seal(w.s.ids[owner], rec.id.String())
		if err != nil {
			w.fail("record", err)
			return
		}
		e, err := w.append(owner, ledger.TypeRecordAnnounce, ledger.RecordAnnouncePayload{Record: rec.id,
			Blocklist: fakeCID("blocklist " + rec.id.String()), Size: 4096, Replicas: uint32(w.s.cfg.Replicas),
			Class: "document", Version: 1, OwnerEnvelope: env})
		if err != nil {
			w.fail("record", err)
			return
		}
		rec.announce = e.CID()
		w.stats["record"].ok.Add(1)
		on := w.s.node(owner)
		info, ok := on.l.Record(rec.id)
		if !ok {
			w.fail("record", errors.New("owner does not see its own record"))
			return
		}
		var holders []int
		for _, p := range on.l.HoldAuthority(info).Eligible() {
			if i, ok := w.s.index(p); ok && w.s.up(i) && len(holders) < w.s.cfg.Replicas-1 {
				holders = append(holders, i)
			}
		}
		rec.mu.Lock()
		rec.holders = holders
		rec.ok = true
		rec.mu.Unlock()
		for _, hd := range holders {
			w.launch(func() { w.hold("receipt", rec, hd) })
		}
	})
	return rec
}

// hold has node hd append a "held" receipt for rec once it has seen the
// record and, for a repair, the removal that made room for it.
func (w *workload) hold(kind string, rec *record, hd int, mustNotSee ...peer.ID) {
	n := w.s.node(hd)
	err := w.waitUntil(func() bool {
		if _, ok := n.l.Record(rec.id); !ok {
			return false
		}
		for _, p := range mustNotSee {
			if n.l.IsMember(p) {
				return false
			}
		}
		return true
	})
	if err != nil {
		w.fail(kind, fmt.Errorf("%w (%s)", err, w.holderNow(rec, hd)))
		return
	}
	if !n.alive.Load() {
		w.stats[kind].skipped.Add(1)
		return
	}
	if _, err := w.append(hd, ledger.TypeReceipt, ledger.ReceiptPayload{Record: rec.id, Status: "held"}); err != nil {
		w.fail(kind, err)
		return
	}
	rec.mu.Lock()
	rec.heldBy[hd] = true
	rec.mu.Unlock()
	w.stats[kind].ok.Add(1)
}

// holderNow says, for a holder that never saw its record, whether the
// owner and the holder would still choose it under the membership they
// see now, and whether the holder follows the owner's scope: a holder
// picked under a membership that a join or leave changed meanwhile may
// lose its place, and then rightly never hears of the record.
func (w *workload) holderNow(rec *record, hd int) string {
	on, hn := w.s.node(rec.owner), w.s.node(hd)
	info, ok := on.l.Record(rec.id)
	if !ok {
		return "the owner lost the record"
	}
	mayHold := func(n *node) bool { return n.l.HoldAuthority(info).MayHold(w.s.ids[hd].id) }
	scope := ledger.OwnerScope(w.s.ids[rec.owner].id)
	oh, _ := on.l.ScopeHeads(scope)
	hh, _ := hn.l.ScopeHeads(scope)
	_, err := hn.l.Entry(context.Background(), rec.announce)
	hsub, hpeers := hn.l.ScopeTopic(scope)
	osub, opeers := on.l.ScopeTopic(scope)
	out := fmt.Sprintf("owner says may hold: %v, holder says: %v, holder follows the owner scope: %v; "+
		"holder has the announcement: %v, pending %d, behind %v, connected to the owner: %v, same scope heads: %v; "+
		"holder subscribed %v with %d topic peers (the owner among them: %v), owner subscribed %v with %d (the holder among them: %v)",
		mayHold(on), mayHold(hn), hn.l.Follows(scope), err == nil, hn.l.PendingCount(), hn.l.Behind(),
		hn.h.Network().Connectedness(on.h.ID()) == network.Connected, fmt.Sprint(oh) == fmt.Sprint(hh),
		hsub, len(hpeers), slices.Contains(hpeers, on.h.ID()), osub, len(opeers), slices.Contains(opeers, hn.h.ID()))
	gsub, gpeers := hn.l.ScopeTopic(ledger.ScopeGlobal)
	out += fmt.Sprintf("; on the global topic the holder (subscribed %v) lists %d peers of its %d connections (the owner among them: %v)",
		gsub, len(gpeers), len(hn.h.Network().Peers()), slices.Contains(gpeers, on.h.ID()))
	if err != nil {
		// Does a sync of the scope with the owner, asked now, bring it?
		serr := hn.l.SyncWith(context.Background(), hn.h, on.h.ID())
		_, err = hn.l.Entry(context.Background(), rec.announce)
		out += fmt.Sprintf("; a sync with the owner now: %v, then has it: %v", serr, err == nil)
	}
	return out
}

// newGrant has rec's owner grant it to a clinic (Zipf: referrals go to a
// few large hospitals more often), readable from tick ready on.
func (w *workload) newGrant(rec *record, ready int) {
	var cands []int
	for len(cands) < 4 {
		c, ok := w.clinic(append(cands, rec.owner)...)
		if !ok {
			break
		}
		cands = append(cands, c)
	}
	if len(cands) == 0 || !w.usable[rec.owner] {
		w.stats["grant"].skipped.Add(1)
		return
	}
	g := &grant{rec: rec, candidates: cands, readyTick: ready, done: make(chan struct{})}
	w.pending = append(w.pending, g)
	w.launch(func() {
		defer close(g.done)
		<-rec.ready
		rec.mu.Lock()
		okRec := rec.ok
		grantee := -1
		for _, c := range g.candidates {
			if !contains(rec.holders, c) && !rec.grantees[c] && w.s.up(c) {
				grantee = c
				rec.grantees[c] = true
				break
			}
		}
		rec.mu.Unlock()
		if !okRec || grantee < 0 {
			w.stats["grant"].skipped.Add(1)
			return
		}
		on, to := w.s.node(rec.owner), w.s.ids[grantee]
		if err := w.waitUntil(func() bool { _, ok := on.l.KEMKey(to.id); return ok }); err != nil {
			w.fail("grant", fmt.Errorf("the owner never saw the grantee's key: %w", err))
			return
		}
		env, err := seal(to, "grant "+rec.id.String())
		if err != nil {
			w.fail("grant", err)
			return
		}
		e, err := w.append(rec.owner, ledger.TypeGrant, ledger.GrantPayload{Record: rec.id, Grantee: to.id, Envelope: env,
			Purpose: ledger.PurposeTreatment})
		if err != nil {
			w.fail("grant", err)
			return
		}
		g.grantee, g.cid, g.ok = grantee, e.CID(), true
		w.readMu.Lock()
		w.grants = append(w.grants, g)
		w.readMu.Unlock()
		w.stats["grant"].ok.Add(1)
	})
}

// read has a grantee read a record (Zipf over records, the most recent the
// most read): a holder serves it and counts it for its next attestation,
// and the reader appends its claim.
func (w *workload) read() {
	if len(w.readable) == 0 {
		w.stats["read"].skipped.Add(1)
		return
	}
	rec := w.readable[len(w.readable)-1-w.zipf(len(w.readable))]
	var gs []*grant
	for _, g := range w.live {
		if g.rec == rec && !g.revoked.Load() {
			gs = append(gs, g)
		}
	}
	if len(gs) == 0 || !w.usable[rec.owner] {
		w.stats["read"].skipped.Add(1)
		return
	}
	g := gs[w.rng.IntN(len(gs))]
	pick := w.rng.Uint64()
	w.launch(func() {
		<-g.done
		if !g.ok || !w.s.up(g.grantee) {
			w.stats["read"].skipped.Add(1)
			return
		}
		reader := w.s.node(g.grantee)
		if err := w.waitUntil(func() bool { return reader.l.Knows(g.cid) }); err != nil {
			w.fail("read", fmt.Errorf("the grantee never saw its grant: %w", err))
			return
		}
		servers := rec.servers(w.s)
		if len(servers) == 0 {
			w.stats["read"].skipped.Add(1)
			return
		}
		ev := &readEvent{rec: rec, reader: g.grantee, server: servers[pick%uint64(len(servers))], t0: time.Now()}
		w.s.node(ev.server).att.count(ev, g.cid)
		e, err := w.append(g.grantee, ledger.TypeAccess, ledger.AccessPayload{Record: rec.id, Version: 1,
			Purpose: ledger.PurposeTreatment, Time: ev.t0, Grant: g.cid})
		if err != nil {
			if g.revoked.Load() && errors.Is(err, ledger.ErrUnauthorized) {
				// The owner revoked the grant while this read waited to
				// run (a loaded machine): the grantee's ledger had the
				// revoke and rightly refused the claim.
				w.stats["read"].skipped.Add(1)
				return
			}
			w.fail("read", err)
			return
		}
		ev.claim = e.CID()
		w.readMu.Lock()
		w.reads = append(w.reads, ev)
		w.readMu.Unlock()
		w.stats["read"].ok.Add(1)
	})
}

// revoke has an owner revoke a live grant (uniformly chosen).
func (w *workload) revoke() {
	if len(w.live) == 0 {
		w.stats["revoke"].skipped.Add(1)
		return
	}
	k := w.rng.IntN(len(w.live))
	g := w.live[k]
	w.live = append(w.live[:k], w.live[k+1:]...)
	g.revoked.Store(true)
	if !w.usable[g.rec.owner] {
		w.stats["revoke"].skipped.Add(1)
		return
	}
	w.launch(func() {
		<-g.done
		if !g.ok {
			w.stats["revoke"].skipped.Add(1)
			return
		}
		if _, err := w.append(g.rec.owner, ledger.TypeRevoke, ledger.RevokePayload{Record: g.rec.id, Grantee: w.s.ids[g.grantee].id}); err != nil {
			w.fail("revoke", err)
			return
		}
		w.stats["revoke"].ok.Add(1)
	})
}

// join admits a new clinic: the admin adds it, it starts from the genesis
// alone, connects to the admin and Degree-1 random clinics, catches up and
// announces its key. The workload uses it (last in activity) once it could have.
func (w *workload) join(t int) {
	if w.joinNext >= len(w.s.ids) {
		return
	}
	i := w.joinNext
	w.joinNext++
	peers := w.peersFor(i)
	w.launch(func() {
		if _, err := w.append(0, ledger.TypeMemberAdd, ledger.MemberAddPayload{Peer: w.s.ids[i].id, Org: w.s.ids[i].org}); err != nil {
			w.fail("join", err)
			return
		}
		n, err := w.s.addNode(w.ctx, i, false, peers)
		if err != nil {
			w.fail("join", err)
			return
		}
		if err := w.waitUntil(func() bool { return n.l.IsMember(n.who.id) }); err != nil {
			w.fail("join", fmt.Errorf("the joiner never saw its admission: %w", err))
			return
		}
		if _, err := w.append(i, ledger.TypeKeyAnnounce, ledger.KeyAnnouncePayload{Public: n.who.kem.Public()}); err != nil {
			w.fail("join", err)
			return
		}
		w.stats["join"].ok.Add(1)
	})
	// Usable by the workload after it had time to join (the driver never
	// waits on the network: this keeps the operations seed-determined).
	w.rank = append(w.rank, i)
	at := t + int(5*time.Second/w.s.cfg.Tick)
	w.useAt[at] = append(w.useAt[at], i)
}

// peersFor picks the peers a joiner connects to: the admin that invited it
// (a medmesh invitation is redeemed with the inviter) and Degree-1 other
// live clinics.
func (w *workload) peersFor(i int) []int {
	var live []int
	for j := range w.usable {
		if w.usable[j] && j != i && j != 0 {
			live = append(live, j)
		}
	}
	slices.Sort(live)
	w.rng.Shuffle(len(live), func(a, b int) { live[a], live[b] = live[b], live[a] })
	return append([]int{0}, live[:min(len(live), w.s.cfg.Degree-1)]...)
}

// leave removes a clinic (uniformly chosen, never the admin): the admin
// removes it and it goes offline. The records it held get a new holder:
// the next member their owner's ledger says may hold them, once it has
// seen the removal.
func (w *workload) leave() {
	var cands []int
	for i, ok := range w.usable {
		if ok && i != 0 {
			cands = append(cands, i)
		}
	}
	if len(cands) == 0 {
		return
	}
	slices.Sort(cands)
	i := cands[w.rng.IntN(len(cands))]
	w.usable[i] = false
	var held []*record
	for _, r := range w.records {
		if r.owner != i {
			held = append(held, r)
		}
	}
	w.launch(func() {
		gone := w.s.ids[i].id
		if _, err := w.append(0, ledger.TypeMemberRemove, ledger.MemberRemovePayload{Peer: gone}); err != nil {
			w.fail("leave", err)
			return
		}
		w.s.stopNode(w.s.node(i))
		w.stats["leave"].ok.Add(1)
		for _, r := range held {
			<-r.ready
			r.mu.Lock()
			had := r.heldBy[i]
			r.mu.Unlock()
			if !had || !w.s.up(r.owner) {
				continue
			}
			w.launch(func() { w.repair(r, i, gone) })
		}
	})
}

// repair gives rec a new holder after holder i (peer gone) left.
func (w *workload) repair(rec *record, i int, gone peer.ID) {
	on := w.s.node(rec.owner)
	if err := w.waitUntil(func() bool { return !on.l.IsMember(gone) }); err != nil {
		w.fail("repair", err)
		return
	}
	info, ok := on.l.Record(rec.id)
	if !ok {
		w.fail("repair", errors.New("the owner lost its record"))
		return
	}
	rec.mu.Lock()
	next := -1
	for _, p := range on.l.HoldAuthority(info).Eligible() {
		j, ok := w.s.index(p)
		if ok && w.s.up(j) && !rec.heldBy[j] && !rec.grantees[j] && !contains(rec.holders, j) {
			next = j
			rec.holders = append(rec.holders, j)
			break
		}
	}
	rec.mu.Unlock()
	if next < 0 {
		w.stats["repair"].skipped.Add(1)
		return
	}
	w.hold("repair", rec, next, gone)
}
