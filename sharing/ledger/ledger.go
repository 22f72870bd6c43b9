package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/medmesh/medmesh/sharing/replication"
)

// Options configure a Ledger.
type Options struct {
	// Store holds the entries and state. Nodes leave it nil and set DS and
	// Blocks (NewDatastoreStore); tests may pass a MemStore.
	Store Store
	// DS is the node's datastore; the ledger keeps its state under /ledger.
	DS datastore.Batching
	// Blocks stores entries as raw blocks.
	Blocks blockstore.Blockstore
	// Key is the node's Ed25519 identity; it signs appended entries.
	Key crypto.PrivKey
	// Genesis is the genesis entry's bytes (from NewGenesis).
	Genesis []byte
	// Types are the entry types this node runs: ledger.Builtin() and the
	// node's own, for example append(ledger.Builtin(), dataset.Types()...).
	// Nothing registers itself: Open fails unless every built-in type is
	// there, and unless every type the network's genesis declares is. An
	// entry of a type the network does not run is rejected.
	Types []TypeSpec
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics prometheus.Registerer
	// Now defaults to time.Now.
	Now func() time.Time
	// SyncInterval is how often heads are exchanged with a random peer
	// (default 10s).
	SyncInterval time.Duration
	// GossipRepairAfter is how long a connected member may stay lost to
	// GossipSub (no outbound GossipSub stream to it, or its subscriptions
	// forgotten while its stream is open) before the ledger repairs the
	// streams (net_gossip.go). Default 1 minute; negative: never.
	GossipRepairAfter time.Duration
	// MaxPending bounds entries waiting for missing parents (default 10,000).
	MaxPending int
	// ScopeCheckpointEvery makes the owner scopes and audit scopes whose
	// owner's replica group this node is in checkpointed automatically,
	// once a scope has this many entries past its latest checkpoint
	// (checkpoint_auto.go). 0: only by hand (`ledger checkpoint --scope`).
	ScopeCheckpointEvery int
	// PruneAfterCheckpoint makes the node prune a scope (as Prune does)
	// each time it stores a newer checkpoint of it, made, co-signed or
	// adopted; never the scopes of its own records.
	PruneAfterCheckpoint bool
	// ScratchDir, if set, is where replays (scope checkpoint drafts,
	// Verify, scope digests) build their state: a badger database each,
	// deleted when done, rather than memory (store_scratch.go). Nodes set
	// it; what an earlier run left there is deleted by Open.
	ScratchDir string
	// CheckpointDir, if set, is where the state blocks of each scope's
	// latest checkpoint are kept, a file each, rather than in Store
	// (ckpt_blocks.go). Nodes set it; Open moves there the blocks an
	// older version kept in the store.
	CheckpointDir string

	// checkpointAskEvery is how often a node asks a peer for a followed
	// scope's newer checkpoints (default scopeCkptEvery); tests shorten
	// it so that adoption takes seconds, not tens of them.
	checkpointAskEvery time.Duration
}

// Ledger is one node's replica of the network's ledger: a Core over the
// node's Store, serialized under one mutex, with what a node adds around
// it: metrics and logs of what the core did, the member table the
// connection gater reads, subscriptions to applied entries, and the network
// transport (net.go). All methods are safe for concurrent use.
type Ledger struct {
	o     Options
	store Store
	// blocks holds the state blocks of each scope's latest checkpoint.
	blocks stateBlocks
	log    *slog.Logger
	net    cid.Cid
	self   peer.ID
	met    *metrics
	now    func() time.Time

	mu   sync.Mutex // serializes the core
	core *Core

	stateMu sync.RWMutex // guards the in-memory caches below
	members map[peer.ID]Member
	// groups memoizes replica groups (groupOf) under members; memberGen
	// counts reloads of members, so a group computed from an older
	// membership is not stored.
	groups    map[peer.ID][]peer.ID
	memberGen uint64
	digest    []byte
	// follow holds the wire scopes this node follows (follow.go).
	follow map[string]bool
	// trim is the trim loop's view of the DAG cache (trim.go), under mu.
	trim trimState
	// followMu serializes recomputing follow (refreshFollow).
	followMu sync.Mutex
	// inGroups tracks the owners whose replica group this node is in
	// (involvedScopes); guarded by followMu.
	inGroups *replication.GroupTracker
	// scopeCkptMu guards scopeCkptLocks and scopeCkptAsked (held briefly,
	// never across I/O).
	scopeCkptMu sync.Mutex
	// scopeCkptLocks serialize catching up one scope from checkpoints
	// (catchUpScopeCheckpoint): two syncs of a scope starting together (a
	// topic's peers joining) must not both try to load it, while syncs of
	// other scopes go on.
	scopeCkptLocks map[string]*sync.Mutex
	// scopeCkptAsked is when each scope's checkpoints were last asked for:
	// at most every scopeCkptEvery, not at every sync.
	scopeCkptAsked map[string]time.Time

	// digestHook, set by tests only, runs in each scope digest's replay
	// before it starts.
	digestHook func()
	// draftSem lets one scope checkpoint draft (a replay) run at a time.
	draftSem chan struct{}
	// auto is the state of automatic scope checkpoints (checkpoint_auto.go).
	auto autoCkpt
	// hints are the owner scopes known to involve each peer (hints.go).
	hints followHints
	// pruneMu serializes prunes (Prune, pruneAfter): two would each
	// take the entries they drop off the stored counters.
	pruneMu sync.Mutex
	// cursors keep the rest of peers' catch-ups between their rounds
	// (sync_cursor.go).
	cursors syncCursors
	// pending wakes the validations of gossiped entries that arrived
	// before their parents when they apply (relay.go).
	pending pendingWaits

	subMu sync.Mutex
	subs  map[*subscriber]struct{}

	tr atomic.Pointer[transport] // set by Start
	// gossipRepairs counts gossipLoop's repairs (GossipRepairs).
	gossipRepairs atomic.Int64
	// ahead remembers the authors of entries held back for their clocks,
	// lateLog those of entries judged far behind the heads (ahead.go).
	ahead, lateLog aheadLog
	// scopeDrafts counts scope checkpoint drafts (ScopeDrafts).
	scopeDrafts atomic.Int64
	closed      chan struct{}
	once        sync.Once
	// Background goroutines: launched only through goBackground. The
	// WaitGroup holds one extra count from Open to Close so it never returns
	// to zero (and is never reused) while goroutines come and go.
	bgMu     sync.Mutex
	bgClosed bool
	wg       sync.WaitGroup
	// handling are the sync streams being answered (handleSync), which
	// the WaitGroup counts too: Close resets them so it need not wait for
	// a slow peer.
	handling map[resetter]struct{}
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

// GenesisOption sets a property of a new network.
type GenesisOption func(*genesisWire)

// WithScopes founds a scoped network (doc.go, "Scopes"): entries about one
// owner's records travel on that owner's scopes, not to every node.
// Without it every entry is global, as in networks founded before scopes
// (the simulation's baseline runs that way).
func WithScopes() GenesisOption { return func(g *genesisWire) { g.Scoped = true } }

// NewGenesis creates a genesis entry founding a network administered by
// key's peer, which runs the given entry types (the founding node's
// Options.Types): every node that opens the network must run them all. The
// network ID is the entry's CID.
func NewGenesis(key crypto.PrivKey, name string, now time.Time, types []TypeSpec, opts ...GenesisOption) ([]byte, cid.Cid, error) {
	admin, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, cid.Undef, err
	}
	tt, err := newTypeTable(types)
	if err != nil {
		return nil, cid.Undef, err
	}
	g := &genesisWire{Name: name, Admin: []byte(admin), Created: now.UnixMilli(), Types: tt.names()}
	for _, o := range opts {
		o(g)
	}
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
// network founded before types were declared) and whether it is scoped.
func genesisTypes(g *Entry) ([]string, bool, error) {
	var w genesisWire
	if err := canonicalUnmarshal(g.Payload, &w); err != nil {
		return nil, false, fmt.Errorf("ledger: genesis payload: %w", err)
	}
	if err := checkDeclaredTypes(w.Types); err != nil {
		return nil, false, fmt.Errorf("ledger: genesis: %w", err)
	}
	return w.Types, w.Scoped, nil
}

// Open opens the ledger kept in o.Store (or o.DS and o.Blocks), applying the
// genesis entry on first use. On later opens it loads only heads, clock and
// members: nothing is replayed.
func Open(ctx context.Context, o Options) (*Ledger, error) {
	if o.Key == nil || (o.Store == nil && (o.DS == nil || o.Blocks == nil)) {
		return nil, errors.New("ledger: Key and a Store (or DS and Blocks) are required")
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
	if o.checkpointAskEvery <= 0 {
		o.checkpointAskEvery = scopeCkptEvery
	}
	if o.GossipRepairAfter == 0 {
		o.GossipRepairAfter = time.Minute
	}
	if o.Store == nil {
		o.Store = NewDatastoreStore(o.DS, o.Blocks)
	}
	self, err := peer.IDFromPrivateKey(o.Key)
	if err != nil {
		return nil, err
	}
	l := &Ledger{
		o: o, store: o.Store, self: self, met: newMetrics(o.Metrics), now: o.Now,
		members: map[peer.ID]Member{}, subs: map[*subscriber]struct{}{}, closed: make(chan struct{}), draftSem: make(chan struct{}, 1),
	}
	l.wg.Add(1) // released by Close
	if err := clearScratch(o.ScratchDir); err != nil {
		return nil, err
	}
	if err := checkInterruptedLoad(ctx, o.Store); err != nil {
		return nil, err
	}
	if l.blocks, err = openStateBlocks(ctx, o.Store, o.CheckpointDir); err != nil {
		return nil, err
	}
	core, err := NewCore(ctx, CoreConfig{Store: o.Store, Genesis: o.Genesis, Types: o.Types, MaxPending: o.MaxPending})
	if err != nil {
		return nil, err
	}
	l.core, l.net = core, core.NetworkID()
	l.log = o.Logger.With("component", "ledger", "network", l.net.String())
	if err := l.reloadMembers(ctx); err != nil {
		return nil, err
	}
	if _, _, err := l.refreshFollow(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// reloadMembers refreshes the member table from the store.
func (l *Ledger) reloadMembers(ctx context.Context) error {
	ms, err := l.State().Members(ctx)
	if err != nil {
		return fmt.Errorf("ledger: load members: %w", err)
	}
	m := make(map[peer.ID]Member, len(ms))
	for _, x := range ms {
		m[x.Peer] = x
	}
	l.stateMu.Lock()
	l.members = m
	l.groups = nil
	l.memberGen++
	l.digest = nil
	l.stateMu.Unlock()
	return nil
}

// NetworkID returns the genesis CID.
func (l *Ledger) NetworkID() cid.Cid { return l.net }

// State returns a reader of the committed state whose methods report
// storage failures as errors. The query methods of Ledger itself (Record,
// Grants, ...) log such a failure, count it in
// medmesh_ledger_read_errors_total and answer "none"; new code should read
// through State.
func (l *Ledger) State() State { return State{l.store} }

// Append signs an entry of type typ with the node's key, on top of the
// current heads; validates, applies and stores it; and publishes it if the
// ledger is started. The payload is one of the *Payload types of this
// package for built-in types, or the type's own payload value.
func (l *Ledger) Append(ctx context.Context, typ string, payload any) (*Entry, error) {
	return l.appendOwn(ctx, func() (*Entry, Outcome, error) { return l.core.Append(ctx, l.o.Key, typ, payload, l.now()) })
}

// appendOwn runs a core append under the ledger's lock, settles it and
// publishes the entry.
func (l *Ledger) appendOwn(ctx context.Context, app func() (*Entry, Outcome, error)) (*Entry, error) {
	l.mu.Lock()
	e, out, err := app()
	err = errors.Join(err, l.settle(ctx, out))
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	l.publish(ctx, e)
	return e, nil
}

// Position is where this node's ledger stood at a moment: its heads then.
type Position struct{ heads []cid.Cid }

// Position returns the ledger's current position, for a later AppendAt.
func (l *Ledger) Position() Position {
	l.mu.Lock()
	defer l.mu.Unlock()
	hs := make([]cid.Cid, 0, len(l.core.heads))
	for h := range l.core.heads {
		hs = append(hs, h)
	}
	return Position{heads: hs}
}

// AppendAt is Append at an earlier position of this ledger, with the
// clock of at: the entry's parents are the heads it had then (those of
// the entry's scope), so it is validated as of then. A node reports with
// it what it did at that position but could not append then, as the reads
// of a burst it claims once the burst ends: the grant they were made under
// was live there, though its revoke may have arrived since. Nothing it
// signs this way confers more than it could have signed then.
func (l *Ledger) AppendAt(ctx context.Context, typ string, payload any, pos Position, at time.Time) (*Entry, error) {
	return l.appendOwn(ctx, func() (*Entry, Outcome, error) { return l.core.AppendAt(ctx, l.o.Key, typ, payload, pos.heads, at) })
}

// Ingest validates and applies one entry received out of band. An entry
// whose parents are missing is buffered (and fetched if the ledger is
// started); ErrPending is returned for it. A duplicate is not an error.
func (l *Ledger) Ingest(ctx context.Context, raw []byte) error {
	e, err := DecodeEntry(raw)
	if err != nil {
		l.rejectedUndecoded(err)
		return err
	}
	out, err := l.ingest(ctx, []*Entry{e})
	if err != nil {
		return err
	}
	return out.Results[0].Err
}

// ingest runs the core on decoded entries and settles the outcome.
// Entries whose clock is too far ahead of this node's are held back
// (ahead.go): their Result is Pending with ErrAhead.
func (l *Ledger) ingest(ctx context.Context, es []*Entry) (Outcome, error) {
	kept, held := l.holdBackAhead(es)
	l.mu.Lock()
	defer l.mu.Unlock()
	var out Outcome
	var err error
	if len(kept) > 0 {
		out, err = l.core.Ingest(ctx, kept)
	}
	if held != nil {
		// Back to one Result per input, in input order.
		k := 0
		for i := range held {
			if held[i].Status == 0 && k < len(out.Results) {
				held[i] = out.Results[k]
				k++
			}
		}
		out.Results = held
	}
	return out, errors.Join(err, l.settle(ctx, out))
}

// settle does what a node does with an Outcome, l.mu held: count and log
// it, refresh the member table and digest, tell subscribers.
func (l *Ledger) settle(ctx context.Context, out Outcome) error {
	l.reportLate(l.core.TakeLate())
	for _, r := range out.Rejected {
		l.met.rejected.WithLabelValues(r.Reason).Inc()
		l.log.Warn("entry rejected", "entry", r.Entry.String(), "reason", r.Reason, "err", r.Err)
	}
	l.met.duplicates.Add(float64(out.Duplicates))
	if out.Dropped > 0 {
		l.met.rejected.WithLabelValues("pending-full").Add(float64(out.Dropped))
	}
	l.met.pending.Set(float64(l.core.PendingLen()))
	if len(out.Applied) == 0 {
		return nil
	}
	l.met.applied.Add(float64(len(out.Applied)))
	if l.o.ScopeCheckpointEvery > 0 {
		l.auto.grew(out.Applied)
	}
	l.met.heads.Set(float64(len(l.core.heads)))
	var err error
	if membersChanged(out.Applied) {
		err = l.reloadMembers(ctx)
		if l.core.scoped {
			l.followChanged()
		}
	} else {
		l.stateMu.Lock()
		l.digest = nil
		l.stateMu.Unlock()
	}
	l.hints.forget(out.Applied, false)
	l.pending.applied(out.Applied)
	l.notify(out.Applied)
	return err
}

func membersChanged(es []*Entry) bool {
	for _, e := range es {
		switch e.Type {
		case TypeGenesis, TypeMemberAdd, TypeMemberRemove, TypeMemberOrg:
			return true
		}
	}
	return false
}

// rejectedUndecoded counts an entry that failed to decode.
func (l *Ledger) rejectedUndecoded(err error) {
	reason := reasonOf(err)
	l.met.rejected.WithLabelValues(reason).Inc()
	l.log.Warn("entry rejected", "reason", reason, "err", err)
}

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

// Heads returns the current heads sorted by CID bytes.
func (l *Ledger) Heads() []cid.Cid {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.core.Heads()
}

// Digest returns SHA-256 over the canonical encoding of the materialized view:
// for every state key in order, len(key) key len(value) value. Two nodes
// with the same valid entries have the same digest. In a scoped network it
// is the global scope's state (Core.GlobalDigest), the same on every node
// in the same global state whatever scopes each follows. It returns nil if
// the state cannot be read (the failure is logged and counted).
func (l *Ledger) Digest() []byte {
	l.stateMu.RLock()
	d := l.digest
	l.stateMu.RUnlock()
	if d != nil {
		return append([]byte(nil), d...)
	}
	l.mu.Lock() // no batch commits between hashing and caching
	defer l.mu.Unlock()
	d, err := l.core.GlobalDigest(context.Background())
	if err != nil {
		l.readFailed("digest", err)
		return nil
	}
	l.stateMu.Lock()
	l.digest = d
	l.stateMu.Unlock()
	return append([]byte(nil), d...)
}

// Entry returns an applied entry by CID.
func (l *Ledger) Entry(ctx context.Context, c cid.Cid) (*Entry, error) {
	return l.State().Entry(ctx, c)
}

// Log returns up to limit applied entries of type typ ("" for all), newest
// first in (clock, CID) order.
func (l *Ledger) Log(ctx context.Context, typ string, limit int) ([]*Entry, error) {
	return l.State().Log(ctx, typ, limit)
}

// EachEntry calls fn with the CID of every applied entry (State.EachEntry).
func (l *Ledger) EachEntry(ctx context.Context, fn func(cid.Cid) error) error {
	return l.State().EachEntry(ctx, fn)
}

// Verify re-checks the whole log from genesis: every entry's signature,
// links and authority are validated again by replaying all entries, in
// (clock, CID) order, into a fresh core (on a scratch store:
// store_scratch.go); then the rebuilt view's digest must equal this one's.
// The error names the first bad entry.
func (l *Ledger) Verify(ctx context.Context) error {
	fresh, release, err := l.rebuild(ctx)
	if err != nil {
		return err
	}
	defer release()
	a, err := fresh.State().Digest(ctx)
	if err != nil {
		return err
	}
	l.mu.Lock()
	b, err := l.State().Digest(ctx)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if string(a) != string(b) {
		return fmt.Errorf("ledger: rebuilt state differs from stored state (digest %x, stored %x)", a, b)
	}
	return nil
}

// rebuild replays every stored entry into a new core on a scratch store,
// which the function it returns releases. A node that joined from a
// checkpoint, caught a scope up from one, or pruned, replays from its
// latest trusted checkpoints (replayInto).
func (l *Ledger) rebuild(ctx context.Context) (*Core, func(), error) {
	fresh, _, release, err := l.scratchCore(ctx)
	if err != nil {
		return nil, nil, err
	}
	if _, _, err := l.replayInto(ctx, fresh, func(string) bool { return true }); err != nil {
		release()
		return nil, nil, err
	}
	return fresh, release, nil
}

// Close stops networking and subscriptions. It does not close the store.
func (l *Ledger) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.bgMu.Lock()
		l.bgClosed = true
		for s := range l.handling {
			s.Reset()
		}
		l.bgMu.Unlock()
		tr := l.tr.Load()
		if tr != nil {
			tr.cancel()
			tr.h.Network().StopNotify(tr.notif)
		}
		l.wg.Done()
		l.wg.Wait()
		if tr != nil {
			tr.stop()
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
