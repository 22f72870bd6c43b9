package ledger

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	dsq "github.com/ipfs/go-datastore/query"
	dssyncpkg "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/medmesh/medmesh/sharing/replication"
)

// Options configure a Ledger.
type Options struct {
	// DS is the node's datastore; the ledger keeps its state under /ledger.
	DS datastore.Batching
	// Blocks stores entries as raw blocks.
	Blocks blockstore.Blockstore
	// Key is the node's Ed25519 identity; it signs appended entries.
	Key crypto.PrivKey
	// Genesis is the genesis entry's bytes (from NewGenesis).
	Genesis []byte
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics prometheus.Registerer
	// Now defaults to time.Now.
	Now func() time.Time
	// SyncInterval is how often heads are exchanged with a random peer
	// (default 10s).
	SyncInterval time.Duration
	// MaxPending bounds entries waiting for missing parents (default 10,000).
	MaxPending int
	// Types are the entry types this node runs: ledger.Builtin() and the
	// node's own, for example append(ledger.Builtin(), dataset.Types()...).
	// Nothing registers itself: Open fails unless every built-in type is
	// there, and unless every type the network's genesis declares is. An
	// entry of a type the network does not run is rejected.
	Types []TypeSpec
}

// Ledger is one node's replica of the network's ledger. All methods are safe
// for concurrent use.
type Ledger struct {
	o     Options
	ds    datastore.Batching
	log   *slog.Logger
	net   cid.Cid
	self  peer.ID
	types typeTable
	met   *metrics
	now   func() time.Time
	mu    sync.Mutex // serializes validation+apply; guards heads, clock, dag, pending
	heads map[cid.Cid]HLC
	clock HLC
	d     *dag
	pend  *pending

	// slowPathOnly makes every validation walk the causal view, even for
	// entries on the current heads (tests compare both paths).
	slowPathOnly bool

	stateMu sync.RWMutex // guards the in-memory caches below
	members map[peer.ID]Member
	digest  []byte

	subMu sync.Mutex
	subs  map[*subscriber]struct{}

	net2   atomic.Pointer[netState] // set by Start
	closed chan struct{}
	once   sync.Once
	// Background goroutines: launched only through goBackground. The
	// WaitGroup holds one extra count from Open to Close so it never returns
	// to zero (and is never reused) while goroutines come and go.
	bgMu     sync.Mutex
	bgClosed bool
	wg       sync.WaitGroup
}

// goBackground runs f in a goroutine that Close waits for; after Close it
// does nothing.
func (l *Ledger) goBackground(f func()) bool {
	l.bgMu.Lock()
	defer l.bgMu.Unlock()
	if l.bgClosed {
		return false
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		f()
	}()
	return true
}

// NewGenesis creates a genesis entry founding a network administered by
// key's peer, which runs the given entry types (the founding node's
// Options.Types): every node that opens the network must run them all. The
// network ID is the entry's CID.
func NewGenesis(key crypto.PrivKey, name string, now time.Time, types []TypeSpec) ([]byte, cid.Cid, error) {
	admin, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, cid.Undef, err
	}
	tt, err := newTypeTable(types)
	if err != nil {
		return nil, cid.Undef, err
	}
	g := &genesisWire{Name: name, Admin: []byte(admin), Created: now.UnixMilli(), Types: tt.names()}
	pl, err := encMode.Marshal(g)
	if err != nil {
		return nil, cid.Undef, err
	}
	e, err := signEntry(key, cid.Undef, TypeGenesis, pl, nil, HLC{Wall: uint64(now.UnixMilli())})
	if err != nil {
		return nil, cid.Undef, err
	}
	if err := validateGenesis(nil, e, g); err != nil {
		return nil, cid.Undef, err
	}
	return e.raw, e.cid, nil
}

// genesisTypes returns the entry types a genesis entry declares (nil for a
// network founded before types were declared).
func genesisTypes(g *Entry) ([]string, error) {
	var w genesisWire
	if err := canonicalUnmarshal(g.Payload, &w); err != nil {
		return nil, fmt.Errorf("ledger: genesis payload: %w", err)
	}
	if err := checkDeclaredTypes(w.Types); err != nil {
		return nil, fmt.Errorf("ledger: genesis: %w", err)
	}
	return w.Types, nil
}

// Open opens the ledger kept in o.DS, applying the genesis entry on first
// use. On later opens it loads only heads, clock and members: nothing is
// replayed.
func Open(ctx context.Context, o Options) (*Ledger, error) {
	if o.DS == nil || o.Blocks == nil || o.Key == nil {
		return nil, errors.New("ledger: DS, Blocks and Key are required")
	}
	if o.Key.Type() != crypto.Ed25519 {
		return nil, errors.New("ledger: node key must be Ed25519")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = 10 * time.Second
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 10000
	}
	g, err := DecodeEntry(o.Genesis)
	if err != nil {
		return nil, fmt.Errorf("ledger: genesis: %w", err)
	}
	if g.Type != TypeGenesis || len(g.Parents) != 0 {
		return nil, errors.New("ledger: genesis bytes are not a genesis entry")
	}
	self, err := peer.IDFromPrivateKey(o.Key)
	if err != nil {
		return nil, err
	}
	types, err := newTypeTable(o.Types)
	if err != nil {
		return nil, err
	}
	declared, err := genesisTypes(g)
	if err != nil {
		return nil, err
	}
	if types, err = types.only(declared); err != nil {
		return nil, fmt.Errorf("%w (network %s)", err, g.cid)
	}
	l := &Ledger{
		o: o, types: types, ds: namespace.Wrap(o.DS, datastore.NewKey("/ledger")), log: o.Logger.With("component", "ledger", "network", g.cid.String()),
		net: g.cid, self: self, met: newMetrics(o.Metrics), now: o.Now,
		heads: map[cid.Cid]HLC{}, pend: newPending(o.MaxPending),
		members: map[peer.ID]Member{}, subs: map[*subscriber]struct{}{}, closed: make(chan struct{}),
	}
	l.wg.Add(1) // released by Close
	l.d = &dag{cache: map[cid.Cid]*node{}, anc: map[[2]cid.Cid]bool{}, sc: newStateCache()}
	l.d.t = l.d.newTxn(l.ds, 0)
	if err := l.load(ctx); err != nil {
		return nil, err
	}
	if len(l.heads) == 0 {
		if _, err := l.ingest(ctx, []*Entry{g}, ""); err != nil {
			return nil, err
		}
		if len(l.heads) == 0 {
			return nil, errors.New("ledger: genesis entry rejected")
		}
	} else if _, err := l.d.get(ctx, g.cid); err != nil {
		return nil, err
	} else if n, _ := l.d.get(ctx, g.cid); n == nil {
		return nil, errors.New("ledger: datastore holds a different network")
	}
	return l, nil
}

// load reads heads, clock and members from the datastore.
func (l *Ledger) load(ctx context.Context) error {
	t := newTxn(l.ds)
	rows, err := t.list(ctx, pHeads)
	if err != nil {
		return err
	}
	clear(l.heads)
	for _, r := range rows {
		c, err := cid.Decode(lastSeg(r.Key))
		if err != nil {
			return err
		}
		n, err := l.d.get(ctx, c)
		if err != nil {
			return err
		}
		if n == nil {
			return fmt.Errorf("ledger: head %s has no metadata", c)
		}
		l.heads[c] = n.clock
		if l.clock.Less(n.clock) {
			l.clock = n.clock
		}
	}
	if v, ok, err := t.get(ctx, "/c/clock"); err == nil && ok && len(v) == 12 {
		c := HLC{binary.BigEndian.Uint64(v), binary.BigEndian.Uint32(v[8:])}
		if l.clock.Less(c) {
			l.clock = c
		}
	}
	return l.reloadMembers(ctx, t)
}

func (l *Ledger) reloadMembers(ctx context.Context, t *txn) error {
	rows, err := t.list(ctx, pState+"m/")
	if err != nil {
		return err
	}
	m := map[peer.ID]Member{}
	for _, r := range rows {
		p, err := peer.Decode(lastSeg(r.Key))
		if err != nil {
			return err
		}
		var mi memberIdx
		if err := decMode.Unmarshal(r.Value, &mi); err != nil {
			return err
		}
		c, err := cid.Cast(mi.Entry)
		if err != nil {
			return err
		}
		m[p] = Member{Peer: p, Org: mi.Org, Roles: mi.Roles, Entry: c}
	}
	l.stateMu.Lock()
	l.members = m
	l.digest = nil
	l.stateMu.Unlock()
	return nil
}

// NetworkID returns the genesis CID.
func (l *Ledger) NetworkID() cid.Cid { return l.net }

// nextClock advances the local clock past now and the given clock.
func (l *Ledger) nextClock(after HLC) HLC {
	wall := uint64(l.now().UnixMilli())
	c := l.clock
	if c.Less(after) {
		c = after
	}
	if wall > c.Wall {
		return HLC{Wall: wall}
	}
	if c.Counter == ^uint32(0) {
		return HLC{Wall: c.Wall + 1}
	}
	return HLC{Wall: c.Wall, Counter: c.Counter + 1}
}

// encodePayload turns an Append payload into canonical CBOR.
func encodePayload(types typeTable, typ string, payload any) ([]byte, error) {
	spec := types[typ]
	if spec == nil {
		return nil, fmt.Errorf("ledger: unknown entry type %q", typ)
	}
	if w, ok := payload.(wirer); ok {
		var err error
		if payload, err = w.wirePayload(); err != nil {
			return nil, err
		}
	}
	return encMode.Marshal(payload)
}

// Append signs an entry of type typ with the node's key, on top of the
// current heads; validates, applies and stores it; and publishes it if the
// ledger is started. The payload is one of the *Payload types of this
// package for built-in types, or the registered type's payload value.
func (l *Ledger) Append(ctx context.Context, typ string, payload any) (*Entry, error) {
	pl, err := encodePayload(l.types, typ, payload)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	parents := make([]cid.Cid, 0, len(l.heads))
	var maxc HLC
	for c, h := range l.heads {
		parents = append(parents, c)
		if maxc.Less(h) {
			maxc = h
		}
	}
	e, err := signEntry(l.o.Key, l.net, typ, pl, parents, l.nextClock(maxc))
	if err != nil {
		l.mu.Unlock()
		return nil, err
	}
	res, err := l.ingestLocked(ctx, []*Entry{e}, "")
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if r := res[0]; r.err != nil {
		return nil, r.err
	}
	l.publish(ctx, e)
	return e, nil
}

// Ingest validates and applies one entry received out of band. An entry
// whose parents are missing is buffered (and fetched if the ledger is
// started); ErrPending is returned for it. A duplicate is not an error.
func (l *Ledger) Ingest(ctx context.Context, raw []byte) error {
	e, err := DecodeEntry(raw)
	if err != nil {
		l.reject(reasonOf(err), cid.Undef, err)
		return err
	}
	res, err := l.ingest(ctx, []*Entry{e}, "")
	if err != nil {
		return err
	}
	return res[0].err
}

// ErrPending reports an entry buffered until its parents arrive.
var ErrPending = errors.New("ledger: entry waits for missing parents")

// RejectError is a validation failure with its metric reason.
type RejectError struct {
	Reason string
	Entry  cid.Cid
	Err    error
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("ledger: entry %s rejected (%s): %v", e.Entry, e.Reason, e.Err)
}
func (e *RejectError) Unwrap() error { return e.Err }

func reasonOf(err error) string {
	var re *RejectError
	switch {
	case errors.As(err, &re):
		return re.Reason
	case errors.Is(err, ErrOversize):
		return "oversize"
	case errors.Is(err, ErrSignature):
		return "bad-signature"
	default:
		return "malformed"
	}
}

func (l *Ledger) reject(reason string, c cid.Cid, err error) {
	l.met.rejected.WithLabelValues(reason).Inc()
	l.log.Warn("entry rejected", "entry", c.String(), "reason", reason, "err", err)
}

// result is the outcome of ingesting one entry.
type result struct {
	applied bool
	dup     bool
	pending bool
	err     error
}

// ingest validates and applies a batch of decoded entries; results are in
// input order.
func (l *Ledger) ingest(ctx context.Context, es []*Entry, from peer.ID) ([]result, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	res, err := l.ingestLocked(ctx, es, from)
	return res, err
}

// maxBatch bounds the entries committed in one datastore batch.
const maxBatch = 2000

func (l *Ledger) ingestLocked(ctx context.Context, es []*Entry, from peer.ID) ([]result, error) {
	out := make([]result, len(es))
	idx := make(map[cid.Cid]int, len(es))
	order := make([]int, len(es))
	for i, e := range es {
		order[i] = i
		idx[e.cid] = i
	}
	// (clock, CID) order is a topological order for valid entries.
	sort.SliceStable(order, func(a, b int) bool {
		x, y := es[order[a]], es[order[b]]
		return before(x.Clock, x.cid, y.Clock, y.cid)
	})
	t := l.d.newTxn(l.ds, min(len(es), maxBatch))
	t.heads0 = maps.Clone(l.heads)
	l.d.t = t
	var applied []*Entry
	queue := make([]*Entry, 0, len(es))
	for _, i := range order {
		queue = append(queue, es[i])
	}
	flush := func() error {
		if len(applied) > 0 {
			l.stageHeads(t)
		}
		if len(applied) == 0 && len(t.writes) == 0 && len(t.blind) == 0 {
			return nil
		}
		if err := l.commit(ctx, t, applied); err != nil {
			return err
		}
		l.notify(applied)
		applied = applied[:0:0]
		t = l.d.newTxn(l.ds, min(len(queue), maxBatch))
		t.heads0 = maps.Clone(l.heads)
		l.d.t = t
		return nil
	}
	for len(queue) > 0 {
		e := queue[0]
		queue = queue[1:]
		r := l.applyOne(ctx, t, e)
		if r.err != nil && !r.pending && !isReject(r.err) {
			// Storage failure: drop the uncommitted batch and reload.
			l.resetMemory(ctx)
			return nil, r.err
		}
		if r.applied {
			applied = append(applied, e)
			queue = append(queue, l.pend.release(e.cid)...)
			if len(applied) >= maxBatch {
				if err := flush(); err != nil {
					return nil, err
				}
			}
		} else if isReject(r.err) {
			queue = append(queue, l.pend.release(e.cid)...)
		} else if r.pending {
			if from != "" {
				l.pend.wantFrom[from] = true
			}
		}
		if i, ok := idx[e.cid]; ok && (out[i] == result{}) {
			out[i] = r
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	l.d.t = l.d.newTxn(l.ds, 0)
	l.met.pending.Set(float64(l.pend.len()))
	return out, nil
}

func isReject(err error) bool {
	var re *RejectError
	return errors.As(err, &re)
}

// applyOne validates e and, if valid, applies it into t.
func (l *Ledger) applyOne(ctx context.Context, t *txn, e *Entry) result {
	// l.clock is at least every applied entry's clock, so an entry with a
	// later clock (each new entry of a linear stream) cannot be a duplicate.
	if !l.clock.Less(e.Clock) {
		if n, err := l.d.get(ctx, e.cid); err != nil {
			return result{err: err}
		} else if n != nil {
			l.met.duplicates.Inc()
			return result{dup: true}
		}
	}
	rej := func(reason string, err error) result {
		l.reject(reason, e.cid, err)
		return result{err: &RejectError{Reason: reason, Entry: e.cid, Err: err}}
	}
	if e.Type == TypeGenesis || len(e.Parents) == 0 {
		if e.cid != l.net {
			return rej("wrong-network", errors.New("foreign genesis"))
		}
	} else if e.Network != l.net {
		return rej("wrong-network", fmt.Errorf("network %s", e.Network))
	}
	if l.pend.rejected(e.cid) {
		return rej("invalid-parent", errors.New("previously rejected"))
	}
	// Parents: all applied, clock strictly after each.
	var missing []cid.Cid
	for _, p := range e.Parents {
		n, err := l.d.get(ctx, p)
		if err != nil {
			return result{err: err}
		}
		if n == nil {
			if l.pend.rejected(p) {
				l.pend.markRejected(e.cid)
				return rej("invalid-parent", fmt.Errorf("parent %s was rejected", p))
			}
			missing = append(missing, p)
			continue
		}
		if !n.clock.Less(e.Clock) {
			l.pend.markRejected(e.cid)
			return rej("bad-clock", fmt.Errorf("clock %v not after parent %s", e.Clock, p))
		}
	}
	if len(missing) > 0 {
		if !l.pend.add(e, missing) {
			l.met.rejected.WithLabelValues("pending-full").Inc()
			return result{err: ErrPending, pending: true}
		}
		return result{err: ErrPending, pending: true}
	}
	spec := l.types[e.Type]
	if spec == nil {
		l.pend.markRejected(e.cid)
		return rej("unknown-type", fmt.Errorf("type %q", e.Type))
	}
	pl := spec.New()
	if err := canonicalUnmarshal(e.Payload, pl); err != nil {
		l.pend.markRejected(e.cid)
		return rej("invalid-payload", err)
	}
	// The causal past: everything applied except what the current heads
	// reach that the entry's parents do not.
	v := &causalView{ctx: ctx, d: l.d, t: t}
	if onHeads := l.parentsAreHeads(e); onHeads && !l.slowPathOnly {
		v.cur = true
	} else if !onHeads {
		heads := make([]cid.Cid, 0, len(l.heads))
		for c := range l.heads {
			heads = append(heads, c)
		}
		diff, err := l.d.difference(ctx, heads, e.Parents, 0)
		if err != nil {
			return result{err: err}
		}
		v.excluded = make(map[cid.Cid]bool, len(diff))
		for _, c := range diff {
			v.excluded[c] = true
		}
	}
	if e.Type != TypeGenesis && !v.IsMember(e.Author) {
		if v.err != nil {
			return result{err: v.err}
		}
		l.pend.markRejected(e.cid)
		return rej("not-member", fmt.Errorf("author %s is not a member at the entry's causal position", e.Author))
	}
	if err := spec.Validate(v, e, pl); err != nil || v.err != nil {
		if v.err != nil {
			return result{err: v.err}
		}
		l.pend.markRejected(e.cid)
		if errors.Is(err, ErrUnauthorized) {
			return rej("unauthorized", err)
		}
		return rej("invalid-payload", err)
	}
	// Apply.
	a := &applier{ctx: ctx, t: t, d: l.d}
	mb, err := encodeMeta(e)
	if err != nil {
		return result{err: err}
	}
	t.put(pMeta+e.cs, mb)
	l.d.add(e.cid, &node{clock: e.Clock, parents: e.Parents, typ: e.Type, author: e.Author, cs: e.cs})
	if spec.builtin != nil {
		err = spec.builtin(a, e, pl)
	} else {
		x := &extTxn{a: a, prefix: pState + "x/" + e.Type + "/"}
		err = spec.Apply(x, e, pl)
		if err == nil {
			err = x.err
		}
	}
	if err != nil {
		return result{err: err}
	}
	ck := revClockKey(e.Clock, e.cs)
	t.putBlind(pLog+ck, []byte(e.Type))
	t.putBlind(pType+e.Type+"/"+ck, nil)
	for _, p := range e.Parents {
		delete(l.heads, p)
	}
	l.heads[e.cid] = e.Clock
	if l.clock.Less(e.Clock) {
		l.clock = e.Clock
	}
	// /h/ and /c/clock are written once per batch (stageHeads).
	return result{applied: true}
}

// stageHeads writes the batch's net change of heads, and the clock, into t:
// per entry, the new head would replace the one put just before it.
func (l *Ledger) stageHeads(t *txn) {
	for c := range t.heads0 {
		if _, ok := l.heads[c]; !ok {
			t.del(pHeads + l.d.name(c))
		}
	}
	for c := range l.heads {
		if _, ok := t.heads0[c]; !ok {
			t.put(pHeads+l.d.name(c), nil)
		}
	}
	var cb [12]byte
	binary.BigEndian.PutUint64(cb[:], l.clock.Wall)
	binary.BigEndian.PutUint32(cb[8:], l.clock.Counter)
	t.put("/c/clock", cb[:])
}

func (l *Ledger) parentsAreHeads(e *Entry) bool {
	if len(e.Parents) != len(l.heads) {
		return false
	}
	for _, p := range e.Parents {
		if _, ok := l.heads[p]; !ok {
			return false
		}
	}
	return true
}

// commit stores the blocks of applied entries, then the batch.
func (l *Ledger) commit(ctx context.Context, t *txn, applied []*Entry) error {
	if len(applied) > 0 {
		bs := make([]blocks.Block, 0, len(applied))
		for _, e := range applied {
			b, err := blocks.NewBlockWithCid(e.raw, e.cid)
			if err != nil {
				return err
			}
			bs = append(bs, b)
		}
		if err := l.o.Blocks.PutMany(ctx, bs); err != nil {
			l.resetMemory(ctx)
			return fmt.Errorf("ledger: store entries: %w", err)
		}
	}
	if err := t.commit(ctx); err != nil {
		l.resetMemory(ctx)
		return fmt.Errorf("ledger: commit: %w", err)
	}
	l.met.applied.Add(float64(len(applied)))
	l.met.heads.Set(float64(len(l.heads)))
	membersChanged := false
	for _, e := range applied {
		if e.Type == TypeMemberAdd || e.Type == TypeMemberRemove || e.Type == TypeGenesis || e.Type == TypeMemberOrg {
			membersChanged = true
		}
	}
	if membersChanged {
		return l.reloadMembers(ctx, newTxn(l.ds))
	}
	l.stateMu.Lock()
	l.digest = nil
	l.stateMu.Unlock()
	return nil
}

// resetMemory drops in-memory state that may include uncommitted entries.
func (l *Ledger) resetMemory(ctx context.Context) {
	l.d.cache = map[cid.Cid]*node{}
	l.d.anc = map[[2]cid.Cid]bool{}
	l.d.sc.reset()
	l.d.t = l.d.newTxn(l.ds, 0)
	if err := l.load(ctx); err != nil {
		l.log.Error("reload after failed commit", "err", err)
	}
}

// extTxn scopes a plug-in type's state to its own prefix. Keys are checked:
// the datastore cleans key paths, so a key such as "../../m/x" would
// otherwise write outside the type's area, into core state.
type extTxn struct {
	a      *applier
	prefix string
	err    error // the first bad key written; fails the entry's apply
}

func (x *extTxn) Get(k string) ([]byte, bool, error) {
	if err := checkExtKey(k); err != nil {
		return nil, false, err
	}
	return x.a.t.get(x.a.ctx, x.prefix+k)
}

func (x *extTxn) Put(k string, v []byte) {
	if err := checkExtKey(k); err != nil {
		x.err = cmp.Or(x.err, err)
		return
	}
	x.a.t.put(x.prefix+k, v)
}

func (x *extTxn) Delete(k string) {
	if err := checkExtKey(k); err != nil {
		x.err = cmp.Or(x.err, err)
		return
	}
	x.a.t.del(x.prefix + k)
}

// checkExtKey accepts keys of "/"-separated segments of letters, digits and
// ". _ - : = +", none empty, "." or "..".
func checkExtKey(k string) error {
	if k == "" || len(k) > 512 {
		return fmt.Errorf("ledger: plug-in state key of %d bytes", len(k))
	}
	for _, seg := range strings.Split(k, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("ledger: plug-in state key %q has an empty, . or .. segment", k)
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-:=+", r)) {
				return fmt.Errorf("ledger: plug-in state key %q has a disallowed character", k)
			}
		}
	}
	return nil
}

// ---- queries ----

// IsMember reports whether p is a current member (node/p2p.Membership).
func (l *Ledger) IsMember(p peer.ID) bool {
	l.stateMu.RLock()
	defer l.stateMu.RUnlock()
	_, ok := l.members[p]
	return ok
}

// IsAdmin reports whether p is a current member with the admin role.
func (l *Ledger) IsAdmin(p peer.ID) bool {
	l.stateMu.RLock()
	defer l.stateMu.RUnlock()
	for _, r := range l.members[p].Roles {
		if r == RoleAdmin {
			return true
		}
	}
	return false
}

// Members returns current members sorted by peer ID.
func (l *Ledger) Members() []Member {
	l.stateMu.RLock()
	out := make([]Member, 0, len(l.members))
	for _, m := range l.members {
		out = append(out, m)
	}
	l.stateMu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

func (l *Ledger) getState(k string, v any) bool {
	b, err := l.ds.Get(context.Background(), datastore.NewKey(k))
	if err != nil {
		return false
	}
	return decMode.Unmarshal(b, v) == nil
}

func (l *Ledger) listState(prefix string) []kv {
	rows, err := newTxn(l.ds).list(context.Background(), prefix)
	if err != nil {
		l.log.Error("read state", "prefix", prefix, "err", err)
	}
	return rows
}

// Ext lists the rows that extension type typ's Apply wrote under prefix
// ("" or ending in "/"), in key order: its state as of every applied entry.
// A storage failure is an error, never an empty list.
func (l *Ledger) Ext(typ, prefix string) ([]ExtRow, error) {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("ledger: extension state prefix %q must end in /", prefix)
	}
	rows, err := newTxn(l.ds).list(context.Background(), extPrefix(typ)+prefix)
	if err != nil {
		return nil, fmt.Errorf("ledger: read %s state: %w", typ, err)
	}
	return extRows(typ, rows), nil
}

// KEMKey returns p's current key-wrapping public key.
func (l *Ledger) KEMKey(p peer.ID) ([]byte, bool) {
	var k keyIdx
	if !l.getState(pState+"k/"+p.String(), &k) {
		return nil, false
	}
	return k.Pub, true
}

// Keys returns every key p announced, oldest first.
func (l *Ledger) Keys(p peer.ID) []KeyInfo {
	var out []KeyInfo
	for _, r := range l.listState(pIdx + "k/" + p.String() + "/") {
		var k keyIdx
		if decMode.Unmarshal(r.Value, &k) != nil {
			continue
		}
		c, _ := cid.Cast(k.Entry)
		out = append(out, KeyInfo{Peer: p, Public: k.Pub, ID: sha256.Sum256(k.Pub), Entry: c, Time: msTime(int64(k.Wall))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// Record returns an announced record.
func (l *Ledger) Record(id cid.Cid) (RecordInfo, bool) {
	var r recordWire
	if !l.getState(pState+"r/"+id.String(), &r) {
		return RecordInfo{}, false
	}
	info, err := r.public()
	return info, err == nil
}

// Records returns all announced records sorted by ID string.
func (l *Ledger) Records() []RecordInfo {
	var out []RecordInfo
	for _, r := range l.listState(pState + "r/") {
		var w recordWire
		if decMode.Unmarshal(r.Value, &w) != nil {
			continue
		}
		if info, err := w.public(); err == nil {
			out = append(out, info)
		}
	}
	return out
}

// Versions returns the version chain containing id (all earlier versions and
// every later one), ordered by version then ID.
func (l *Ledger) Versions(id cid.Cid) []RecordInfo {
	root, ok := l.Record(id)
	if !ok {
		return nil
	}
	seen := map[cid.Cid]bool{root.ID: true}
	for root.Prev.Defined() && !seen[root.Prev] {
		p, ok := l.Record(root.Prev)
		if !ok {
			break
		}
		seen[p.ID] = true
		root = p
	}
	out := []RecordInfo{root}
	for i := 0; i < len(out); i++ {
		for _, r := range l.listState(pIdx + "v/" + out[i].ID.String() + "/") {
			// Walking forward from the root visits each version once
			// (containsRecord below); the backward walk's seen set must not
			// skip the intermediate versions between the root and id.
			c, err := cid.Decode(lastSeg(r.Key))
			if err != nil {
				continue
			}
			if info, ok := l.Record(c); ok && info.Prev == out[i].ID {
				if !containsRecord(out, c) {
					out = append(out, info)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Version != out[j].Version {
			return out[i].Version < out[j].Version
		}
		return out[i].ID.String() < out[j].ID.String()
	})
	return out
}

func containsRecord(rs []RecordInfo, c cid.Cid) bool {
	for _, r := range rs {
		if r.ID == c {
			return true
		}
	}
	return false
}

// Grants returns the record's current grants to current members: grants not
// cancelled by a revoke. Expired grants are included; callers compare
// Expires with their clock and a skew margin.
func (l *Ledger) Grants(record cid.Cid) []Grant {
	var out []Grant
	for _, r := range l.listState(pState + "g/" + record.String() + "/") {
		var g grantStored
		if decMode.Unmarshal(r.Value, &g) != nil {
			continue
		}
		if pg, err := g.public(); err == nil && l.IsMember(pg.Grantee) {
			out = append(out, pg)
		}
	}
	return out
}

// Access returns the record's audit trail, oldest first.
func (l *Ledger) Access(record cid.Cid) []AccessEvent {
	var out []AccessEvent
	for _, r := range l.listState(pState + "a/" + record.String() + "/") {
		var a accessStored
		if decMode.Unmarshal(r.Value, &a) != nil {
			continue
		}
		reader, err1 := peer.IDFromBytes(a.Reader)
		ec, err2 := cid.Cast(a.Entry)
		if err1 != nil || err2 != nil {
			continue
		}
		ev := AccessEvent{Record: record, Reader: reader, Version: a.Access.Version, Purpose: a.Access.Purpose, Time: msTime(a.Access.Time), Entry: ec}
		if len(a.Access.Grant) > 0 {
			ev.Grant, _ = cid.Cast(a.Access.Grant)
		}
		out = append(out, ev)
	}
	return out
}

// Served returns the attestations of the record's reads by the nodes that
// served them, oldest first.
func (l *Ledger) Served(record cid.Cid) []Served {
	var out []Served
	for _, r := range l.listState(pState + "sv/" + record.String() + "/") {
		var s servedStored
		if decMode.Unmarshal(r.Value, &s) != nil {
			continue
		}
		reader, err1 := peer.IDFromBytes(s.Served.Reader)
		server, err2 := peer.IDFromBytes(s.Server)
		gc, err3 := cid.Cast(s.Served.Grant)
		ec, err4 := cid.Cast(s.Entry)
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			continue
		}
		out = append(out, Served{Record: record, Reader: reader, Server: server, Grant: gc, Reads: s.Served.Reads, Blocks: s.Served.Blocks,
			First: msTime(s.Served.First), Last: msTime(s.Served.Last), Entry: ec})
	}
	return out
}

// GrantHistory returns every grant of the record ever applied, revoked or
// not, oldest first: what an audit needs to name the grant a read was made
// under, and who may never hold the record.
func (l *Ledger) GrantHistory(record cid.Cid) []Grant {
	var out []Grant
	for _, r := range l.listState(pIdx + "g/" + record.String() + "/") {
		var g grantStored
		if decMode.Unmarshal(r.Value, &g) != nil {
			continue
		}
		if pg, err := g.public(); err == nil {
			out = append(out, pg)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// Named returns the holders the record's owner named (replica.assign).
func (l *Ledger) Named(record cid.Cid) []peer.ID {
	var out []peer.ID
	for _, r := range l.listState(pState + "as/" + record.String() + "/") {
		if p, err := peer.Decode(lastSeg(r.Key)); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// HoldAuthority says who may hold the record now (replication.Authority),
// from the current state: the same rule the ledger applies to receipts.
func (l *Ledger) HoldAuthority(rec RecordInfo) replication.Authority {
	a := replication.Authority{Record: rec.ID, Owner: rec.Owner, Wanted: int(rec.Replicas), Named: l.Named(rec.ID)}
	for _, m := range l.Members() {
		a.Members = append(a.Members, replication.Member{Peer: m.Peer, Org: m.Org})
	}
	for _, r := range l.Receipts(rec.ID) {
		a.Receipts = append(a.Receipts, replication.Receipt{Holder: r.Holder, Status: r.Status, Reason: r.Reason})
	}
	seen := map[peer.ID]bool{}
	for _, g := range l.GrantHistory(rec.ID) {
		if !seen[g.Grantee] {
			seen[g.Grantee] = true
			a.Granted = append(a.Granted, g.Grantee)
		}
	}
	return a
}

// Receipts returns each holder's latest receipt for the record.
func (l *Ledger) Receipts(record cid.Cid) []Receipt {
	var out []Receipt
	for _, r := range l.listState(pState + "rc/" + record.String() + "/") {
		var s receiptStored
		if decMode.Unmarshal(r.Value, &s) != nil {
			continue
		}
		h, err1 := peer.IDFromBytes(s.Holder)
		ec, err2 := cid.Cast(s.Entry)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, Receipt{Record: record, Holder: h, Status: s.Receipt.Status, Reason: s.Receipt.Reason, Entry: ec, Time: msTime(int64(s.Wall))})
	}
	return out
}

// Heads returns the current heads sorted by CID bytes.
func (l *Ledger) Heads() []cid.Cid {
	l.mu.Lock()
	out := make([]cid.Cid, 0, len(l.heads))
	for c := range l.heads {
		out = append(out, c)
	}
	l.mu.Unlock()
	return sortedCids(out)
}

// Digest returns SHA-256 over the canonical encoding of the materialized view:
// for every state key in order, len(key) key len(value) value. Two nodes
// with the same valid entries have the same digest.
func (l *Ledger) Digest() []byte {
	l.stateMu.RLock()
	d := l.digest
	l.stateMu.RUnlock()
	if d != nil {
		return append([]byte(nil), d...)
	}
	l.mu.Lock() // no batch commits while hashing
	defer l.mu.Unlock()
	h := sha256.New()
	res, err := l.ds.Query(context.Background(), dsq.Query{Prefix: strings.TrimSuffix(pState, "/")})
	if err != nil {
		return nil
	}
	var rows []kv
	for r := range res.Next() {
		if r.Error != nil {
			res.Close()
			return nil
		}
		rows = append(rows, kv{r.Key, r.Value})
	}
	res.Close()
	sort.Slice(rows, func(i, j int) bool { return rows[i].Key < rows[j].Key })
	var lb [8]byte
	for _, r := range rows {
		binary.BigEndian.PutUint64(lb[:], uint64(len(r.Key)))
		h.Write(lb[:])
		h.Write([]byte(r.Key))
		binary.BigEndian.PutUint64(lb[:], uint64(len(r.Value)))
		h.Write(lb[:])
		h.Write(r.Value)
	}
	d = h.Sum(nil)
	l.stateMu.Lock()
	l.digest = d
	l.stateMu.Unlock()
	return append([]byte(nil), d...)
}

// Entry returns an applied entry by CID.
func (l *Ledger) Entry(ctx context.Context, c cid.Cid) (*Entry, error) {
	b, err := l.o.Blocks.Get(ctx, c)
	if err != nil {
		return nil, err
	}
	return DecodeEntry(b.RawData())
}

// Log returns up to limit applied entries of type typ ("" for all), newest
// first in (clock, CID) order.
func (l *Ledger) Log(ctx context.Context, typ string, limit int) ([]*Entry, error) {
	prefix := strings.TrimSuffix(pLog, "/")
	if typ != "" {
		prefix = pType + typ
	}
	q := dsq.Query{Prefix: prefix, KeysOnly: true}
	if limit > 0 {
		q.Limit = limit
	}
	res, err := l.ds.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	defer res.Close()
	var out []*Entry
	for r := range res.Next() {
		if r.Error != nil {
			return nil, r.Error
		}
		c, err := cid.Decode(lastSeg(r.Key))
		if err != nil {
			return nil, err
		}
		e, err := l.Entry(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("ledger: entry %s: %w", c, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// Verify re-checks the whole log from genesis: every entry's signature,
// links and authority are validated again by replaying all entries, in
// (clock, CID) order, into a fresh in-memory ledger; then the rebuilt view's
// digest must equal this one's. The error names the first bad entry.
func (l *Ledger) Verify(ctx context.Context) error {
	fresh, err := l.rebuild(ctx)
	if err != nil {
		return err
	}
	defer fresh.Close()
	if a, b := fresh.Digest(), l.Digest(); string(a) != string(b) {
		return fmt.Errorf("ledger: rebuilt state differs from stored state (digest %x, stored %x)", a, b)
	}
	return nil
}

// rebuild replays every stored entry into a new in-memory ledger.
func (l *Ledger) rebuild(ctx context.Context) (*Ledger, error) {
	mem := dssyncpkg.MutexWrap(datastore.NewMapDatastore())
	fresh, err := Open(ctx, Options{DS: mem, Blocks: blockstore.NewBlockstore(mem), Key: l.o.Key, Genesis: l.o.Genesis,
		Logger: slog.New(slog.DiscardHandler), Now: l.now, Types: l.o.Types})
	if err != nil {
		return nil, err
	}
	res, err := l.ds.Query(ctx, dsq.Query{Prefix: strings.TrimSuffix(pLog, "/"), KeysOnly: true})
	if err != nil {
		fresh.Close()
		return nil, err
	}
	var all []cid.Cid
	for r := range res.Next() {
		if r.Error != nil {
			res.Close()
			fresh.Close()
			return nil, r.Error
		}
		c, err := cid.Decode(lastSeg(r.Key))
		if err != nil {
			res.Close()
			fresh.Close()
			return nil, err
		}
		all = append(all, c)
	}
	res.Close()
	var batch []*Entry
	run := func() error {
		rs, err := fresh.ingest(ctx, batch, "")
		if err != nil {
			return err
		}
		for i, r := range rs {
			if r.err != nil {
				return fmt.Errorf("ledger: entry %s fails verification: %w", batch[i].cid, r.err)
			}
		}
		batch = batch[:0]
		return nil
	}
	for i := len(all) - 1; i >= 0; i-- { // oldest first
		c := all[i]
		e, err := l.Entry(ctx, c)
		if err != nil {
			fresh.Close()
			return nil, fmt.Errorf("ledger: entry %s fails verification: %w", c, err)
		}
		if e.cid == l.net {
			continue
		}
		batch = append(batch, e)
		if len(batch) >= 1000 {
			if err := run(); err != nil {
				fresh.Close()
				return nil, err
			}
		}
	}
	if err := run(); err != nil {
		fresh.Close()
		return nil, err
	}
	return fresh, nil
}

// Close stops networking and subscriptions. It does not close the datastore.
func (l *Ledger) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.bgMu.Lock()
		l.bgClosed = true
		l.bgMu.Unlock()
		n := l.net2.Load()
		if n != nil {
			n.cancel()
			n.h.Network().StopNotify(n.notif)
		}
		l.wg.Done()
		l.wg.Wait()
		if n != nil {
			n.stop()
		}
		l.subMu.Lock()
		for s := range l.subs {
			s.close()
		}
		l.subs = map[*subscriber]struct{}{}
		l.subMu.Unlock()
	})
	return nil
}
