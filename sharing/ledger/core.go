package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"sort"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Core is the ledger's state machine: it validates entries at their causal
// position, applies them, and keeps the heads, the clock, the DAG cache and
// the buffer of entries waiting for parents. Like raft's RawNode it does no
// network I/O, reads no clock (Append is told the time) and starts no
// goroutine; all it touches is its Store. Feed it entries with Ingest and act
// on the Outcome. A Core is not safe for concurrent use: Ledger serializes
// it under one mutex and adds persistence of a node, metrics, subscribers
// and the network transport around it.
type Core struct {
	store Store
	net   cid.Cid
	types typeTable
	// scoped is set by the genesis (WithScopes): entries then live on
	// scopes (scope.go) and each scope has heads of its own.
	scoped bool
	// heads are the heads of every scope: an entry is a head of its own
	// scope until an entry of the same scope names it as a parent.
	heads map[cid.Cid]HLC
	// hscope is each head's wire scope.
	hscope map[cid.Cid]string
	// cfg is what the core was opened with (ScopeDigest replays into a
	// fresh core like it).
	cfg   CoreConfig
	clock HLC
	// stored counts the applied entries and their bytes (Stored); like the
	// heads, apply advances it and a storage failure reloads it.
	stored Stored
	// scopeStored splits stored by wire scope ("" global), and scopeDirty
	// names the scopes a batch changed, written with it (stageHeads).
	scopeStored map[string]Stored
	scopeDirty  map[string]bool
	d           *dag
	pend        *pending

	// stale is set when a storage failure left the heads unknown: every
	// operation reloads them first, and fails while it cannot.
	stale bool

	// slowPathOnly makes every validation walk the causal view, even for
	// entries on the current heads (tests compare both paths).
	slowPathOnly bool

	// late are the entries judged since TakeLate whose causal view left
	// out more than lateBehind applied entries (viewAt; LateBehind unless
	// a test lowers it).
	late       []LateEntry
	lateBehind int
}

// LateBehind is how many applied entries an entry's causal view may leave
// out (entries it has not seen) before the core reports it (TakeLate):
// judging it walked the history that far back.
const LateBehind = 10000

// LateEntry is an entry whose causal view left out Behind applied entries:
// its parents were that far behind the heads. Judging it cost a walk of
// them, on every node: a node that appends before catching up does this
// once; a member doing it on purpose makes every node walk the history
// each time.
type LateEntry struct {
	Entry  cid.Cid
	Author peer.ID
	Type   string
	Behind int
}

// TakeLate returns the late entries judged since the last call.
func (c *Core) TakeLate() []LateEntry {
	out := c.late
	c.late = nil
	return out
}

// CoreConfig configures a Core.
type CoreConfig struct {
	// Store holds the entries and state (MemStore, DatastoreStore).
	Store Store
	// Genesis is the genesis entry's bytes (from NewGenesis).
	Genesis []byte
	// Types are the entry types the node runs (Options.Types).
	Types []TypeSpec
	// MaxPending bounds entries waiting for missing parents (default 10,000).
	MaxPending int
}

// NewCore opens the ledger kept in c.Store, applying the genesis entry if the
// store is empty. Otherwise it loads only heads and clock: nothing is
// replayed.
func NewCore(ctx context.Context, c CoreConfig) (*Core, error) {
	if c.Store == nil {
		return nil, errors.New("ledger: a Store is required")
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 10000
	}
	g, err := DecodeEntry(c.Genesis)
	if err != nil {
		return nil, fmt.Errorf("ledger: genesis: %w", err)
	}
	if g.Type != TypeGenesis || len(g.Parents) != 0 {
		return nil, errors.New("ledger: genesis bytes are not a genesis entry")
	}
	types, err := newTypeTable(c.Types)
	if err != nil {
		return nil, err
	}
	declared, scoped, err := genesisTypes(g)
	if err != nil {
		return nil, err
	}
	if types, err = types.only(declared); err != nil {
		return nil, fmt.Errorf("%w (network %s)", err, g.cid)
	}
	co := &Core{store: c.Store, net: g.cid, types: types, scoped: scoped, cfg: c, heads: map[cid.Cid]HLC{}, scopeStored: map[string]Stored{}, scopeDirty: map[string]bool{}, hscope: map[cid.Cid]string{}, pend: newPending(c.MaxPending), lateBehind: LateBehind,
		d: &dag{cache: map[cid.Cid]*node{}, anc: map[[2]cid.Cid]bool{}, sc: newStateCache()}}
	co.d.t = co.d.newTxn(co.store, 0)
	if err := co.load(ctx); err != nil {
		return nil, err
	}
	if len(co.heads) == 0 {
		out, err := co.Ingest(ctx, []*Entry{g})
		if err != nil {
			return nil, err
		}
		if len(out.Applied) != 1 {
			return nil, fmt.Errorf("ledger: genesis entry rejected: %v", out.Results[0].Err)
		}
		return co, nil
	}
	n, err := co.d.get(ctx, g.cid)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, errors.New("ledger: the store holds a different network")
	}
	return co, nil
}

// NetworkID returns the genesis CID.
func (c *Core) NetworkID() cid.Cid { return c.net }

// State returns a reader of the core's committed state.
func (c *Core) State() State { return State{c.store} }

// Heads returns the global scope's heads sorted by CID bytes: in a network
// without scopes, every head.
func (c *Core) Heads() []cid.Cid { return c.ScopeHeads(ScopeGlobal) }

// Scoped reports whether the network splits its entries into scopes.
func (c *Core) Scoped() bool { return c.scoped }

// ScopeHeads returns the heads of scope s ("global", "owner/<peer>",
// "audit/<peer>"), sorted by CID bytes: the entries of s that no entry of
// s names as a parent. A scope this node holds nothing of has none.
func (c *Core) ScopeHeads(s string) []cid.Cid {
	ws := wireScope(s)
	out := make([]cid.Cid, 0, len(c.heads))
	for h := range c.heads {
		if c.hscope[h] == ws {
			out = append(out, h)
		}
	}
	return sortedCids(out)
}

// closureHeads returns the heads of the scopes an entry of wire scope s
// may depend on (closure), sorted.
func (c *Core) closureHeads(s string) []cid.Cid {
	out := make([]cid.Cid, 0, len(c.heads))
	for h := range c.heads {
		if inClosure(s, c.hscope[h]) {
			out = append(out, h)
		}
	}
	return sortedCids(out)
}

// Scopes returns the names of the scopes this core holds entries of
// (those with heads), sorted, "global" first.
func (c *Core) Scopes() []string {
	set := map[string]bool{}
	for _, s := range c.hscope {
		set[s] = true
	}
	out := make([]string, 0, len(set))
	for s := range set {
		if s != "" {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return append([]string{ScopeGlobal}, out...)
}

// Clock returns the highest clock of any applied entry (or the local clock
// high-water mark, whichever is later).
func (c *Core) Clock() HLC { return c.clock }

// Stored is how many entries a ledger stores and their size in bytes (the
// entries' encodings; the metadata and state derived from them are not
// counted).
type Stored struct {
	Entries int64
	Bytes   int64
}

// Stored returns the applied entries the core stores and their bytes.
func (c *Core) Stored() Stored { return c.stored }

// StoredByScope returns Stored per scope name ("global", owner/<peer>,
// audit/<peer>): every scope this node stores entries of, followed or not
// (a reader's claims on an owner's audit scope; a scope it left).
func (c *Core) StoredByScope() map[string]Stored {
	out := make(map[string]Stored, len(c.scopeStored))
	for s, st := range c.scopeStored {
		if st.Entries > 0 {
			out[scopeName(s)] = st
		}
	}
	return out
}

// PendingLen returns the number of entries waiting for missing parents.
func (c *Core) PendingLen() int { return c.pend.len() }

// Missing returns the entries the buffered ones wait for that are neither
// applied nor buffered themselves: what a sync should fetch.
func (c *Core) Missing() []cid.Cid { return sortedCids(c.pend.missing()) }

// Has reports whether entry e is applied.
func (c *Core) Has(ctx context.Context, e cid.Cid) (bool, error) {
	if err := c.ready(ctx); err != nil {
		return false, err
	}
	if _, ok := c.heads[e]; ok {
		return true, nil
	}
	n, err := c.d.get(ctx, e)
	return n != nil, err
}

// load reads heads and clock from the store.
func (c *Core) load(ctx context.Context) error {
	clear(c.heads)
	clear(c.hscope)
	c.clock = HLC{}
	var keys []string
	err := c.store.Scan(ctx, pHeads, true, func(k string, _ []byte) bool {
		keys = append(keys, k)
		return true
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		h, err := cid.Decode(lastSeg(k))
		if err != nil {
			return fmt.Errorf("ledger: head key %q: %w", k, err)
		}
		n, err := c.d.get(ctx, h)
		if err != nil {
			return err
		}
		if n == nil {
			return fmt.Errorf("ledger: head %s has no metadata", h)
		}
		c.heads[h] = n.clock
		c.hscope[h] = n.scope
		if c.clock.Less(n.clock) {
			c.clock = n.clock
		}
	}
	v, ok, err := c.store.Get(ctx, "/c/clock")
	if err != nil {
		return err
	}
	if ok && len(v) == 12 {
		if h := (HLC{binary.BigEndian.Uint64(v), binary.BigEndian.Uint32(v[8:])}); c.clock.Less(h) {
			c.clock = h
		}
	}
	if err := c.loadStored(ctx); err != nil {
		return err
	}
	return c.upgradeIndexes(ctx)
}

// storedKey holds Stored: entries then bytes, 8 bytes each, big-endian. It
// is written with the heads, once per batch. pScopeStored+<wire scope>
// holds the same per scope (storedScopeKey), written with it for the
// scopes the batch changed.
const (
	storedKey    = "/c/stored"
	pScopeStored = "/c/ss/"
)

// storedScopeKey is the key of wire scope ws's counters ("g" for the
// global scope, whose wire name is empty).
func storedScopeKey(ws string) string {
	if ws == "" {
		return pScopeStored + "g"
	}
	return pScopeStored + ws
}

func encStored(st Stored) []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], uint64(st.Entries))
	binary.BigEndian.PutUint64(b[8:], uint64(st.Bytes))
	return b[:]
}

func decStored(v []byte) (Stored, bool) {
	if len(v) != 16 {
		return Stored{}, false
	}
	return Stored{int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:]))}, true
}

// loadStored reads the stored-entry counters, counting the log once if a
// ledger written before they existed (or before they were kept per
// scope) has none.
func (c *Core) loadStored(ctx context.Context) error {
	c.stored = Stored{}
	c.scopeStored = map[string]Stored{}
	c.scopeDirty = map[string]bool{}
	if len(c.heads) == 0 {
		return nil // empty store: the genesis is the first entry counted
	}
	v, ok, err := c.store.Get(ctx, storedKey)
	if err != nil {
		return err
	}
	total, totalOK := decStored(v)
	perScope := false
	err = c.store.Scan(ctx, pScopeStored, false, func(k string, v []byte) bool {
		ws := k[len(pScopeStored):]
		if ws == "g" {
			ws = ""
		}
		if st, ok := decStored(v); ok {
			c.scopeStored[ws] = st
			perScope = true
		}
		return true
	})
	if err != nil {
		return err
	}
	if ok && totalOK && perScope {
		c.stored = total
		return nil
	}
	// Count the log once.
	c.scopeStored = map[string]Stored{}
	all, err := logCIDs(ctx, c.store)
	if err != nil {
		return err
	}
	for _, e := range all {
		raw, err := c.store.GetEntry(ctx, e)
		if err != nil {
			return fmt.Errorf("ledger: count stored entries: %w", err)
		}
		ws := ""
		if c.scoped {
			v, ok, err := c.store.Get(ctx, pMeta+e.String())
			if err != nil {
				return fmt.Errorf("ledger: count stored entries: %w", err)
			}
			var m meta
			if ok {
				if err := decMode.Unmarshal(v, &m); err != nil {
					return corrupt(pMeta+e.String(), err)
				}
			}
			ws = m.Scope
		}
		c.countStored(ws, 1, int64(len(raw)))
	}
	// Kept at once, so the next start reads them (best effort: the next
	// batch writes them anyway).
	if b, err := c.store.Batch(ctx); err == nil {
		b.Put(storedKey, encStored(c.stored))
		for ws := range c.scopeDirty {
			b.Put(storedScopeKey(ws), encStored(c.scopeStored[ws]))
		}
		if b.Commit(ctx) == nil {
			clear(c.scopeDirty)
		}
	}
	return nil
}

// countStored adds n entries of size bytes of wire scope ws to the
// counters (negative to remove them), marking the scope for the next
// batch.
func (c *Core) countStored(ws string, n, size int64) {
	c.stored.Entries = max(c.stored.Entries+n, 0)
	c.stored.Bytes = max(c.stored.Bytes+size, 0)
	st := c.scopeStored[ws]
	st.Entries = max(st.Entries+n, 0)
	st.Bytes = max(st.Bytes+size, 0)
	c.scopeStored[ws] = st
	c.scopeDirty[ws] = true
}

// nextClock returns a clock past now, the local clock and after.
func (c *Core) nextClock(now time.Time, after HLC) HLC {
	wall := uint64(now.UnixMilli())
	h := c.clock
	if h.Less(after) {
		h = after
	}
	if wall > h.Wall {
		return HLC{Wall: wall}
	}
	if h.Counter == ^uint32(0) {
		return HLC{Wall: h.Wall + 1}
	}
	return HLC{Wall: h.Wall, Counter: h.Counter + 1}
}

// Sign builds an entry of type typ, signed with key, on top of the current
// heads of the scopes it may depend on, with a clock past now and every
// head's. In a scoped network the scope is the type's (TypeSpec.Scope):
// for a record's entries, its owner's scope as this core's state says. It
// applies nothing.
func (c *Core) Sign(ctx context.Context, key crypto.PrivKey, typ string, payload any, now time.Time) (*Entry, error) {
	scope, pl, err := c.encode(ctx, key, typ, payload)
	if err != nil {
		return nil, err
	}
	heads := c.closureHeads(scope)
	if len(heads) > MaxParents {
		// Newest first: the older ones stay heads, and a later entry
		// names them.
		sort.Slice(heads, func(i, j int) bool {
			return before(c.heads[heads[j]], heads[j], c.heads[heads[i]], heads[i])
		})
		heads = heads[:MaxParents]
	}
	var maxc HLC
	for _, h := range heads {
		if clock := c.heads[h]; maxc.Less(clock) {
			maxc = clock
		}
	}
	return signScoped(key, c.net, scope, typ, pl, heads, c.nextClock(now, maxc))
}

// encode encodes an entry's payload and finds its scope.
func (c *Core) encode(ctx context.Context, key crypto.PrivKey, typ string, payload any) (string, []byte, error) {
	if err := c.ready(ctx); err != nil {
		return "", nil, err
	}
	pl, err := encodePayload(c.types, typ, payload)
	if err != nil {
		return "", nil, err
	}
	scope := ""
	if c.scoped {
		if scope, err = c.scopeFor(ctx, key, typ, pl); err != nil {
			return "", nil, err
		}
	}
	return scope, pl, nil
}

// scopeFor returns the wire scope an entry of type typ with payload pl
// lives on in a scoped network: "" for a global type; the author's own
// owner scope for an owner type without a Subject; otherwise the scope of
// the subject record's owner, as this core's state says.
func (c *Core) scopeFor(ctx context.Context, key crypto.PrivKey, typ string, pl []byte) (string, error) {
	spec := c.types[typ]
	if spec.Scope == KindGlobal {
		return "", nil
	}
	var owner peer.ID
	if spec.Subject == nil {
		p, err := peer.IDFromPrivateKey(key)
		if err != nil {
			return "", err
		}
		owner = p
	} else {
		v := spec.New()
		if err := canonicalUnmarshal(pl, v); err != nil {
			return "", fmt.Errorf("ledger: %s payload: %w", typ, err)
		}
		rec, err := spec.Subject(v)
		if err != nil {
			return "", fmt.Errorf("ledger: %s payload: %w", typ, err)
		}
		info, ok, err := c.State().Record(ctx, rec)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", fmt.Errorf("ledger: %s of record %s: the record is not known here (this node does not follow its owner's scope)", typ, rec)
		}
		owner = info.Owner
	}
	if spec.Scope == KindAudit {
		return AuditScope(owner), nil
	}
	return OwnerScope(owner), nil
}

// Append signs an entry (Sign) and ingests it: the entry is returned only if
// it was applied; otherwise the error says why (a *RejectError for an entry
// the rules refuse).
func (c *Core) Append(ctx context.Context, key crypto.PrivKey, typ string, payload any, now time.Time) (*Entry, Outcome, error) {
	e, err := c.Sign(ctx, key, typ, payload, now)
	if err != nil {
		return nil, Outcome{}, err
	}
	return c.ingestOwn(ctx, e)
}

// ingestOwn ingests an entry this core signed: an error unless applied.
func (c *Core) ingestOwn(ctx context.Context, e *Entry) (*Entry, Outcome, error) {
	out, err := c.Ingest(ctx, []*Entry{e})
	if err != nil {
		return nil, out, err
	}
	if r := out.Results[0]; r.Status != Applied {
		return nil, out, r.Err
	}
	return e, out, nil
}

// maxBatch bounds the entries committed in one store batch.
const maxBatch = 2000

// Ingest validates and applies decoded entries, in (clock, CID) order
// whatever their order in es, together with buffered entries they release.
// Applied entries are committed to the store, at most maxBatch per batch,
// before Ingest returns. An error is a storage failure: the Outcome then
// holds what was committed before it (the Result of an input not committed
// is the zero Result), and the core reloads its heads from the store.
func (c *Core) Ingest(ctx context.Context, es []*Entry) (Outcome, error) {
	out := Outcome{Results: make([]Result, len(es))}
	if err := c.ready(ctx); err != nil {
		return out, err
	}
	idx := make(map[cid.Cid]int, len(es))
	queue := make([]*Entry, len(es))
	for i, e := range es {
		idx[e.cid] = i
		queue[i] = e
	}
	// (clock, CID) order is a topological order for valid entries.
	sort.SliceStable(queue, func(a, b int) bool {
		x, y := queue[a], queue[b]
		return before(x.Clock, x.cid, y.Clock, y.cid)
	})
	t := c.newBatch(len(es))
	var batch []*Entry // applied, not committed yet
	flush := func() error {
		if len(batch) > 0 {
			c.stageHeads(t)
		}
		if len(batch) == 0 && len(t.writes) == 0 && len(t.blind) == 0 {
			return nil
		}
		if err := c.commit(ctx, t, batch); err != nil {
			return err
		}
		out.Applied = append(out.Applied, batch...)
		batch = nil
		t = c.newBatch(len(queue))
		return nil
	}
	// failed drops the uncommitted batch: its entries were not applied.
	failed := func(err error) (Outcome, error) {
		for _, e := range batch {
			if i, ok := idx[e.cid]; ok {
				out.Results[i] = Result{}
			}
		}
		return out, err
	}
	missing := map[cid.Cid]bool{}
	for len(queue) > 0 {
		e := queue[0]
		queue = queue[1:]
		r, miss, err := c.applyOne(ctx, t, e)
		if err != nil {
			// Storage failure: drop the uncommitted batch and reload.
			return failed(c.reset(ctx, err))
		}
		switch r.Status {
		case Applied:
			batch = append(batch, e)
			queue = append(queue, c.pend.release(e.cid)...)
			if len(batch) >= maxBatch {
				if err := flush(); err != nil {
					return failed(err)
				}
			}
		case Rejected:
			out.Rejected = append(out.Rejected, r.Err.(*RejectError))
			queue = append(queue, c.pend.release(e.cid)...)
		}
		if i, input := idx[e.cid]; input && out.Results[i].Status == 0 {
			out.record(i, e, r, miss, missing)
		}
	}
	if err := flush(); err != nil {
		return failed(err)
	}
	c.d.t = c.d.newTxn(c.store, 0)
	var err error
	out.Missing, err = c.unheld(ctx, missing)
	return out, err
}

// unheld returns the entries of set that are neither applied nor buffered.
func (c *Core) unheld(ctx context.Context, set map[cid.Cid]bool) ([]cid.Cid, error) {
	var out []cid.Cid
	for m := range set {
		if c.pend.buffered(m) {
			continue
		}
		ok, err := c.Has(ctx, m)
		if err != nil {
			return nil, err
		}
		if !ok {
			out = append(out, m)
		}
	}
	return sortedCids(out), nil
}

// newBatch starts the overlay the next applied entries write into.
func (c *Core) newBatch(size int) *txn {
	t := c.d.newTxn(c.store, min(size, maxBatch))
	t.heads0 = maps.Clone(c.heads)
	c.d.t = t
	return t
}

// reset drops in-memory state that may include uncommitted entries after a
// storage failure, and reloads heads and clock from the store. If that
// fails too, the core is stale until a later operation reloads them.
func (c *Core) reset(ctx context.Context, cause error) error {
	c.d.cache = map[cid.Cid]*node{}
	c.d.anc = map[[2]cid.Cid]bool{}
	c.d.sc.reset()
	c.d.t = c.d.newTxn(c.store, 0)
	c.stale = true
	if err := c.ready(ctx); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

// ready reloads heads and clock if a storage failure left them unknown.
func (c *Core) ready(ctx context.Context) error {
	if !c.stale {
		return nil
	}
	if err := c.load(ctx); err != nil {
		return fmt.Errorf("ledger: reload heads after a storage failure: %w", err)
	}
	c.stale = false
	return nil
}

// commit stores the entries of a batch, then the batch.
func (c *Core) commit(ctx context.Context, t *txn, applied []*Entry) error {
	if len(applied) > 0 {
		if err := c.store.PutEntries(ctx, applied); err != nil {
			return c.reset(ctx, err)
		}
	}
	if err := t.commit(ctx); err != nil {
		return c.reset(ctx, err)
	}
	return nil
}

// stageHeads writes the batch's net change of heads, and the clock, into t:
// per entry, the new head would replace the one put just before it.
func (c *Core) stageHeads(t *txn) {
	for h := range t.heads0 {
		if _, ok := c.heads[h]; !ok {
			t.del(pHeads + c.d.name(h))
		}
	}
	for h := range c.heads {
		if _, ok := t.heads0[h]; !ok {
			t.put(pHeads+c.d.name(h), nil)
		}
	}
	var cb [12]byte
	binary.BigEndian.PutUint64(cb[:], c.clock.Wall)
	binary.BigEndian.PutUint32(cb[8:], c.clock.Counter)
	t.put("/c/clock", cb[:])
	t.put(storedKey, encStored(c.stored))
	for ws := range c.scopeDirty {
		t.put(storedScopeKey(ws), encStored(c.scopeStored[ws]))
	}
	clear(c.scopeDirty)
	t.put(indexKey, []byte{indexVersion})
}

// parentsAreHeads reports whether e's parents are exactly the heads of the
// scopes in its closure: then every applied entry of those scopes is in its
// causal past.
func (c *Core) parentsAreHeads(e *Entry) bool {
	n := 0
	for h := range c.heads {
		if inClosure(e.Scope, c.hscope[h]) {
			n++
		}
	}
	if len(e.Parents) != n {
		return false
	}
	for _, p := range e.Parents {
		if _, ok := c.heads[p]; !ok || !inClosure(e.Scope, c.hscope[p]) {
			return false
		}
	}
	return true
}

// applyOne validates e and, if valid, applies it into t. It returns the
// missing parents of an entry it buffers; an error is a storage failure.
func (c *Core) applyOne(ctx context.Context, t *txn, e *Entry) (Result, []cid.Cid, error) {
	// c.clock is at least every applied entry's clock, so an entry with a
	// later clock (each new entry of a linear stream) cannot be a duplicate.
	if !c.clock.Less(e.Clock) {
		if n, err := c.d.get(ctx, e.cid); err != nil {
			return Result{}, nil, err
		} else if n != nil {
			return Result{Status: Duplicate}, nil, nil
		}
	}
	if r, ok := c.checkLinks(e); !ok {
		return r, nil, nil
	}
	// Parents: all applied, clock strictly after each.
	var missing []cid.Cid
	for _, p := range e.Parents {
		n, err := c.d.get(ctx, p)
		if err != nil {
			return Result{}, nil, err
		}
		if n == nil {
			if c.pend.rejected(p) {
				return c.reject(e, "invalid-parent", fmt.Errorf("parent %s was rejected", p)), nil, nil
			}
			missing = append(missing, p)
			continue
		}
		if !n.clock.Less(e.Clock) {
			return c.reject(e, "bad-clock", fmt.Errorf("clock %v not after parent %s", e.Clock, p)), nil, nil
		}
		if !inClosure(e.Scope, n.scope) {
			return c.reject(e, "wrong-scope", fmt.Errorf("an entry of scope %s names parent %s of scope %s", scopeName(e.Scope), p, scopeName(n.scope))), nil, nil
		}
	}
	if len(missing) > 0 {
		if !c.pend.add(e, missing) {
			return Result{Status: Pending, Err: ErrPendingFull}, missing, nil
		}
		return Result{Status: Pending, Err: ErrPending}, missing, nil
	}
	spec := c.types[e.Type]
	if spec == nil {
		return c.reject(e, "unknown-type", fmt.Errorf("type %q is not one this network runs", e.Type)), nil, nil
	}
	pl := spec.New()
	if err := canonicalUnmarshal(e.Payload, pl); err != nil {
		return c.reject(e, "invalid-payload", err), nil, nil
	}
	v, err := c.viewAt(ctx, t, e)
	if err != nil {
		return Result{}, nil, err
	}
	if err := c.checkScope(v, e, spec, pl); err != nil || v.err != nil {
		if v.err != nil {
			return Result{}, nil, v.err
		}
		return c.reject(e, "wrong-scope", err), nil, nil
	}
	if e.Type != TypeGenesis && !v.IsMember(e.Author) {
		if v.err != nil {
			return Result{}, nil, v.err
		}
		return c.reject(e, "not-member", fmt.Errorf("author %s is not a member at the entry's causal position", e.Author)), nil, nil
	}
	if err := spec.Validate(v, e, pl); err != nil || v.err != nil {
		if v.err != nil {
			return Result{}, nil, v.err
		}
		if errors.Is(err, ErrUnauthorized) {
			return c.reject(e, "unauthorized", err), nil, nil
		}
		return c.reject(e, "invalid-payload", err), nil, nil
	}
	if err := c.apply(ctx, t, e, spec, pl); err != nil {
		return Result{}, nil, err
	}
	return Result{Status: Applied}, nil, nil
}

// checkScope checks that e lives on the scope its type says (TypeSpec.Scope):
// in a network without scopes every entry is global; in a scoped one a
// global type on the global scope, an owner or audit type on the scope of
// the owner of its subject record, which must be announced in e's causal
// past on that owner's scope (the view finds no other), or of its author
// for an owner type without a subject.
func (c *Core) checkScope(v *causalView, e *Entry, spec *TypeSpec, pl any) error {
	if !c.scoped {
		if e.Scope != "" {
			return fmt.Errorf("scope %s in a network without scopes", e.Scope)
		}
		return nil
	}
	kind, owner, err := ParseScope(e.Scope)
	if err != nil {
		return err
	}
	if kind != spec.Scope {
		where := map[ScopeKind]string{KindGlobal: "the global scope", KindOwner: "an owner scope", KindAudit: "an audit scope"}[spec.Scope]
		return fmt.Errorf("a %s entry lives on %s, not %s", e.Type, where, scopeName(e.Scope))
	}
	if kind == KindGlobal {
		return nil
	}
	if spec.Subject == nil {
		if owner != e.Author {
			return fmt.Errorf("a %s entry lives on its author's scope %s, not %s", e.Type, OwnerScope(e.Author), e.Scope)
		}
		return nil
	}
	rec, err := spec.Subject(pl)
	if err != nil {
		return err
	}
	if _, ok := viewRecord(v, rec); !ok {
		return fmt.Errorf("record %s is not announced on scope %s in the entry's causal past", rec, OwnerScope(owner))
	}
	return nil
}

// checkLinks checks what needs no state: the entry's network, and that it
// does not descend from a rejected entry.
// Neither verdict is remembered: a foreign entry has no descendants here,
// and a previously rejected one is remembered already.
func (c *Core) checkLinks(e *Entry) (Result, bool) {
	if e.Type == TypeGenesis || len(e.Parents) == 0 {
		if e.cid != c.net {
			return rejected(e, "wrong-network", errors.New("foreign genesis")), false
		}
	} else if e.Network != c.net {
		return rejected(e, "wrong-network", fmt.Errorf("network %s", e.Network)), false
	}
	if c.pend.rejected(e.cid) {
		return rejected(e, "invalid-parent", errors.New("previously rejected")), false
	}
	return Result{}, true
}

// reject remembers e as rejected, so its descendants are rejected rather
// than buffered, and returns its Result.
func (c *Core) reject(e *Entry, reason string, err error) Result {
	c.pend.markRejected(e.cid)
	return rejected(e, reason, err)
}

func rejected(e *Entry, reason string, err error) Result {
	return Result{Status: Rejected, Err: &RejectError{Reason: reason, Entry: e.cid, Err: err}}
}

// viewAt returns the view of e's causal past: everything applied except
// what the current heads reach that the entry's parents do not.
func (c *Core) viewAt(ctx context.Context, t *txn, e *Entry) (*causalView, error) {
	v := &causalView{ctx: ctx, d: c.d, t: t, scoped: c.scoped, scope: e.Scope}
	if c.scoped {
		if _, owner, err := ParseScope(e.Scope); err == nil {
			v.owner = owner
		}
	}
	onHeads := c.parentsAreHeads(e)
	if onHeads && !c.slowPathOnly {
		v.cur = true
		return v, nil
	}
	if onHeads {
		return v, nil
	}
	diff, err := c.d.difference(ctx, c.closureHeads(e.Scope), e.Parents, 0)
	if err != nil {
		return nil, err
	}
	v.excluded = make(map[cid.Cid]bool, len(diff))
	for _, d := range diff {
		v.excluded[d] = true
	}
	if len(diff) > c.lateBehind && len(c.late) < 1000 {
		c.late = append(c.late, LateEntry{Entry: e.cid, Author: e.Author, Type: e.Type, Behind: len(diff)})
	}
	return v, nil
}

// apply writes a valid entry's meta, its type's state and its log indexes
// into t, and makes it a head.
func (c *Core) apply(ctx context.Context, t *txn, e *Entry, spec *TypeSpec, pl any) error {
	a := &applier{ctx: ctx, t: t, d: c.d, scoped: c.scoped}
	mb, err := encodeMeta(e)
	if err != nil {
		return err
	}
	t.put(pMeta+e.cs, mb)
	c.d.add(e.cid, &node{clock: e.Clock, parents: e.Parents, typ: e.Type, author: e.Author, cs: e.cs, scope: e.Scope})
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
		return err
	}
	ck := revClockKey(e.Clock, e.cs)
	t.putBlind(pLog+ck, []byte(e.Type))
	t.putBlind(pType+e.Type+"/"+ck, nil)
	for _, p := range e.Parents {
		if s, ok := c.hscope[p]; ok && s == e.Scope {
			delete(c.heads, p)
			delete(c.hscope, p)
		}
	}
	c.heads[e.cid] = e.Clock
	c.hscope[e.cid] = e.Scope
	if c.clock.Less(e.Clock) {
		c.clock = e.Clock
	}
	c.countStored(e.Scope, 1, int64(len(e.raw)))
	// /h/, /c/clock and /c/stored are written once per batch (stageHeads).
	return nil
}

// encodePayload turns an Append payload into canonical CBOR.
func encodePayload(types typeTable, typ string, payload any) ([]byte, error) {
	spec := types[typ]
	if spec == nil {
		return nil, fmt.Errorf("ledger: unknown entry type %q: not one this network runs", typ)
	}
	if w, ok := payload.(wirer); ok {
		var err error
		if payload, err = w.wirePayload(); err != nil {
			return nil, err
		}
	}
	return encMode.Marshal(payload)
}

// AppendAt is Append on top of candidates, heads this core had earlier
// (Ledger.Position), with the clock of now: the entry names as parents
// those of them in its scope's closure, as if it had been appended then,
// and is validated there.
func (c *Core) AppendAt(ctx context.Context, key crypto.PrivKey, typ string, payload any, candidates []cid.Cid, now time.Time) (*Entry, Outcome, error) {
	e, err := c.signAt(ctx, key, typ, payload, candidates, now)
	if err != nil {
		return nil, Outcome{}, err
	}
	return c.ingestOwn(ctx, e)
}

func (c *Core) signAt(ctx context.Context, key crypto.PrivKey, typ string, payload any, candidates []cid.Cid, now time.Time) (*Entry, error) {
	scope, pl, err := c.encode(ctx, key, typ, payload)
	if err != nil {
		return nil, err
	}
	type head struct {
		id    cid.Cid
		clock HLC
	}
	var heads []head
	for _, h := range candidates {
		n, err := c.d.get(ctx, h)
		if err != nil {
			return nil, err
		}
		if n != nil && inClosure(scope, n.scope) {
			heads = append(heads, head{h, n.clock})
		}
	}
	if len(heads) == 0 {
		return nil, fmt.Errorf("ledger: none of the %d earlier heads is in the closure of scope %s", len(candidates), scopeName(scope))
	}
	// Newest first, as Sign trims.
	sort.Slice(heads, func(i, j int) bool { return before(heads[j].clock, heads[j].id, heads[i].clock, heads[i].id) })
	heads = heads[:min(len(heads), MaxParents)]
	parents := make([]cid.Cid, len(heads))
	var maxc HLC
	for i, h := range heads {
		parents[i] = h.id
		if maxc.Less(h.clock) {
			maxc = h.clock
		}
	}
	return signScoped(key, c.net, scope, typ, pl, sortedCids(parents), clockAt(now, maxc))
}

// clockAt is the clock of an entry made at now after a parent of clock
// after (nextClock without this core's later entries).
func clockAt(now time.Time, after HLC) HLC {
	if wall := uint64(now.UnixMilli()); wall > after.Wall {
		return HLC{Wall: wall}
	}
	if after.Counter == ^uint32(0) {
		return HLC{Wall: after.Wall + 1}
	}
	return HLC{Wall: after.Wall, Counter: after.Counter + 1}
}
