package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/replication"
)

// Checkpoints of an owner or audit scope (doc.go, "Checkpoints"): the
// scope's own state, signed by a majority of its owner's replica group at
// the global heads it depends on, so that a node that starts following
// the scope (joining the owner's replica group, or granted a record) loads
// it instead of replaying the scope's history.

// ErrCheckpointDeps is returned when a scope's checkpoint depends on
// entries (global heads, the owner scope's heads) this node does not hold
// yet: it catches up those scopes first.
var ErrCheckpointDeps = errors.New("ledger: checkpoint depends on entries this node lacks")

// scopedRowPrefixes returns the /i/ and /s/ prefixes the entries of a
// scope kind write, each ascending: owner scopes the records' rows
// (announcements, versions, grants, revokes, receipts, holders, the owner,
// holder and grantee indexes, contested IDs) and their extension types'
// (record.erase); audit scopes the reads' rows (claims, attestations).
// Every row under them names the record it concerns (rowRecords). No other
// kind writes under them (TestCheckpointScopeRowsPartition).
func (c *Core) scopedRowPrefixes(kind ScopeKind) (idx, state []string) {
	switch kind {
	case KindOwner:
		idx = []string{pIdx + "g/", pIdx + "gto/", pIdx + "hold/", pIdx + "oh/", pIdx + "own/", pIdx + "r/", pIdx + "rc/", pIdx + "rv/", pIdx + "rx/", pIdx + "v/"}
		state = []string{pState + "g/", pState + "r/", pState + "rc/"}
	case KindAudit:
		idx = []string{pIdx + "as/"}
		state = []string{pState + "a/", pState + "as/", pState + "sv/"}
	}
	var ext []string
	for name, spec := range c.types {
		if spec.Scope == kind && spec.builtin == nil {
			ext = append(ext, extPrefix(name))
		}
	}
	sort.Strings(ext)
	return idx, append(state, ext...)
}

// rowRecords returns the records a scoped row's key names, by its
// prefix's layout: /i/own/<owner>/<record> and /i/oh/<owner>/<record>/..
// (the owner must be the scope's), /i/hold/<holder>/<record>,
// /i/gto/<grantee>/<record>, /i/v/<previous>/<record> (both), an extension
// type's <name>/<record>/... (doc.go: scoped extension types key their rows
// so), every other <record>/...
func (r *ckptRows) rowRecords(k string) ([]string, error) {
	p := r.prefixOf(k)
	seg := strings.Split(k[len(p):], "/")
	need := func(n int) error {
		if len(seg) < n {
			return fmt.Errorf("key %q does not name its record", k)
		}
		for _, s := range seg[:n] {
			if s == "" {
				return fmt.Errorf("key %q does not name its record", k)
			}
		}
		return nil
	}
	switch {
	case p == pIdx+"own/" || p == pIdx+"oh/":
		if err := need(2); err != nil {
			return nil, err
		}
		if seg[0] != r.owner.String() {
			return nil, fmt.Errorf("key %q is about another owner's records", k)
		}
		return seg[1:2], nil
	case p == pIdx+"hold/" || p == pIdx+"gto/":
		if err := need(2); err != nil {
			return nil, err
		}
		return seg[1:2], nil
	case p == pIdx+"v/":
		if err := need(2); err != nil {
			return nil, err
		}
		return seg[0:2], nil
	case strings.HasPrefix(p, pState+"x/"):
		if err := need(2); err != nil {
			return nil, err
		}
		return seg[1:2], nil
	}
	if err := need(1); err != nil {
		return nil, err
	}
	return seg[0:1], nil
}

// scopeRowCheck checks, row by row and then as a whole, that a scope
// checkpoint's rows are about the scope's own entries and records: what
// its signers, the owner's replica group, vouch for, and nothing else (no
// global row, no row about another owner's record).
type scopeRowCheck struct {
	c    *Core
	rows *ckptRows
	// metas are the checkpoint's entries; parents their parents (each
	// must be one of metas, or held here on a scope of the closure).
	metas, parents map[string]bool
	// announced maps the records announced in the checkpoint (owner
	// scope: /i/r/<record>/<entry>) to their announcements.
	announced map[string][]string
	// referenced are the records the other rows name.
	referenced map[string]bool
}

func newScopeRowCheck(c *Core, rows *ckptRows) *scopeRowCheck {
	return &scopeRowCheck{c: c, rows: rows, metas: map[string]bool{}, parents: map[string]bool{},
		announced: map[string][]string{}, referenced: map[string]bool{}}
}

func (sc *scopeRowCheck) row(k string, m *meta) error {
	if m != nil {
		sc.metas[k] = true
		for _, b := range m.Parents {
			p, err := cid.Cast(b)
			if err != nil {
				return fmt.Errorf("entry row %q: parent: %v", k, err)
			}
			sc.parents[pMeta+p.String()] = true
		}
		return nil
	}
	recs, err := sc.rows.rowRecords(k)
	if err != nil {
		return err
	}
	if strings.HasPrefix(k, pIdx+"r/") {
		seg := strings.Split(k[len(pIdx+"r/"):], "/")
		if len(seg) != 2 {
			return fmt.Errorf("key %q is not an announcement's", k)
		}
		sc.announced[seg[0]] = append(sc.announced[seg[0]], pMeta+seg[1])
		return nil
	}
	for _, r := range recs {
		sc.referenced[r] = true
	}
	return nil
}

// done checks what needs every row: the parents not held here are entries
// of the checkpoint; an owner scope's announcements are its entries and
// every row names a record announced in it; an audit scope's rows name
// records announced on its owner scope here. With load (the node is about
// to load the state), no record it names is announced here on another
// scope (a contested ID: the node then replays the scope instead).
func (sc *scopeRowCheck) done(ctx context.Context, load bool) error {
	for p := range sc.parents {
		if sc.metas[p] {
			continue
		}
		c, err := cid.Decode(p[len(pMeta):])
		if err != nil {
			return err
		}
		n, err := sc.c.d.get(ctx, c)
		if err != nil {
			return err
		}
		if n == nil {
			return fmt.Errorf("entry %s, a parent of its entries, is neither in it nor held here: catch up the scopes it depends on first", c)
		}
		if !inClosure(sc.rows.scope, n.scope) {
			return fmt.Errorf("its entries name parent %s of scope %s", c, scopeName(n.scope))
		}
	}
	owner := wireScope(OwnerScope(sc.rows.owner))
	switch sc.rows.kind {
	case KindOwner:
		for rec, anns := range sc.announced {
			for _, a := range anns {
				if !sc.metas[a] {
					return fmt.Errorf("record %s's announcement %s is not an entry of the checkpoint", rec, a[len(pMeta):])
				}
			}
		}
		for rec := range sc.referenced {
			if _, ok := sc.announced[rec]; !ok {
				return fmt.Errorf("a row names record %s, which the scope does not announce", rec)
			}
		}
		if !load {
			return nil
		}
		for rec := range sc.announced {
			if _, ok, err := sc.c.store.Get(ctx, pState+"r/"+rec); err != nil {
				return err
			} else if ok {
				return fmt.Errorf("record %s is announced on another scope here (a contested ID): replay the scope instead", rec)
			}
		}
	case KindAudit:
		for rec := range sc.referenced {
			id, err := cid.Decode(rec)
			if err != nil {
				return fmt.Errorf("record %q: %v", rec, err)
			}
			ok, err := sc.c.announcedOn(ctx, id, owner)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("a row names record %s, which is not announced on %s here", rec, scopeName(owner))
			}
			if load {
				if _, ok, err := sc.c.store.Get(ctx, contestedKey(id)); err != nil {
					return err
				} else if ok {
					return fmt.Errorf("record %s is announced on another scope here (a contested ID): replay the scope instead", rec)
				}
			}
		}
	}
	return nil
}

// announcedOn reports whether record rec is announced here on wire scope
// owner (one of its /i/r/ rows is an entry of that scope).
func (c *Core) announcedOn(ctx context.Context, rec cid.Cid, owner string) (bool, error) {
	var anns []cid.Cid
	var derr error
	err := c.store.Scan(ctx, pIdx+"r/"+rec.String()+"/", true, func(k string, _ []byte) bool {
		a, err := cid.Decode(lastSeg(k))
		if err != nil {
			derr = corrupt(k, err)
			return false
		}
		anns = append(anns, a)
		return true
	})
	if err := errors.Join(err, derr); err != nil {
		return false, err
	}
	for _, a := range anns {
		n, err := c.d.get(ctx, a)
		if err != nil {
			return false, err
		}
		if n != nil && n.scope == owner {
			return true, nil
		}
	}
	return false, nil
}

// scopeSigners returns who signs a checkpoint of an owner's scope that
// depends on deps: the owner's replica group (replication.Group) in the
// membership at the global entries among deps (their causal past), sorted.
// ErrCheckpointDeps if this node lacks one of deps.
func (c *Core) scopeSigners(ctx context.Context, scope string, owner peer.ID, deps []cid.Cid) ([]peer.ID, error) {
	var global []cid.Cid
	for _, d := range deps {
		n, err := c.d.get(ctx, d)
		if err != nil {
			return nil, err
		}
		if n == nil {
			return nil, fmt.Errorf("%w: %s", ErrCheckpointDeps, d)
		}
		if n.scope == scope || !inClosure(scope, n.scope) {
			return nil, fmt.Errorf("%w: dep %s is of scope %s, not one %s depends on", ErrCheckpointMalformed, d, scopeName(n.scope), scopeName(scope))
		}
		if n.scope == "" {
			global = append(global, d)
		}
	}
	if len(global) == 0 {
		return nil, fmt.Errorf("%w: it names no global head", ErrCheckpointMalformed)
	}
	diff, err := c.d.difference(ctx, c.closureHeads(""), global, 0)
	if err != nil {
		return nil, err
	}
	v := &causalView{ctx: ctx, d: c.d, t: c.d.t, scoped: c.scoped, excluded: make(map[cid.Cid]bool, len(diff))}
	for _, x := range diff {
		v.excluded[x] = true
	}
	ms := v.Members()
	if v.err != nil {
		return nil, v.err
	}
	rms := make([]replication.Member, len(ms))
	for i, m := range ms {
		rms[i] = replication.Member{Peer: m.Peer, Org: m.Org}
	}
	g := slices.Clone(replication.Group(owner, rms))
	slices.Sort(g)
	return g, nil
}

// minScopeSigners is the smallest replica group that signs a scope's
// checkpoints: with one member, that member alone could make up the
// scope's state (doc.go, "Checkpoints").
const minScopeSigners = 2

// verifyScopeSigners checks that a scope checkpoint is trusted: its
// signers are its owner's replica group at the global heads it depends on
// (this node must hold them: ErrCheckpointDeps), the group has at least
// two members, and a majority of them signed it (the owner's signature
// does not count: it is not in its own group).
func (c *Core) verifyScopeSigners(ctx context.Context, ck *Checkpoint) error {
	kind, owner, err := ParseScope(ck.Scope)
	if err != nil || kind == KindGlobal {
		return fmt.Errorf("%w: checkpoint %s of scope %q is not an owner's or audit scope's", ErrCheckpointMalformed, ck.cid, ck.Scope)
	}
	if ck.Network != c.net {
		return fmt.Errorf("%w: checkpoint %s is of network %s, not %s", ErrCheckpointUntrusted, ck.cid, ck.Network, c.net)
	}
	group, err := c.scopeSigners(ctx, wireScope(ck.Scope), owner, ck.Deps)
	if err != nil {
		return fmt.Errorf("ledger: checkpoint %s of %s: %w (catch up %s first)", ck.cid, ck.Scope, err, strings.Join(Closure(ck.Scope)[:len(Closure(ck.Scope))-1], " and "))
	}
	if !slices.Equal(group, ck.Signers) {
		return fmt.Errorf("%w: checkpoint %s of %s lists signers %v, the owner's replica group at its global heads is %v", ErrCheckpointUntrusted, ck.cid, ck.Scope, ck.Signers, group)
	}
	if len(group) < minScopeSigners {
		return fmt.Errorf("%w: checkpoint %s of %s: the owner's replica group has %d member(s), fewer than %d: its scopes have no checkpoints", ErrCheckpointUntrusted, ck.cid, ck.Scope, len(group), minScopeSigners)
	}
	if n, need := trustedSigs(ck, group), Quorum(len(group)); n < need {
		return fmt.Errorf("%w: checkpoint %s of %s has %d valid signature(s) by the owner's replica group, needs %d of %v", ErrCheckpointUntrusted, ck.cid, ck.Scope, n, need, group)
	}
	return nil
}

// makeScopeCheckpoint is MakeCheckpoint for an owner or audit scope: the
// scope's state is exported from a replay of its closure (scopeDraftAt:
// the state a node that follows this scope and no other would hold,
// whatever else this node follows), signed by this node, which must be in
// the owner's replica group. Each scope checkpoint is trusted on its own
// (its Prev is empty): the group, computed from the membership at its
// global heads, vouches for it, not the checkpoint before. Without a
// proposal the draft is of this node's heads; with one, of the proposal's
// (its Heads and Deps), so a member co-signs while the scope moves on.
func (l *Ledger) makeScopeCheckpoint(ctx context.Context, scope string, proposal *Checkpoint) (*Checkpoint, bool, error) {
	d, err := l.signScopeDraft(ctx, scope, proposal)
	if err != nil {
		return nil, false, err
	}
	defer d.close()
	ck := d.ck
	if trustedSigs(ck, ck.Signers) < Quorum(len(ck.Signers)) {
		return ck, false, nil
	}
	if err := l.storeScopeCheckpoint(ctx, ck, d.block); err != nil {
		return nil, false, err
	}
	return ck, true, nil
}

// signScopeDraft drafts a checkpoint of scope (at the proposal's roots, or
// at this node's heads without one), checks that this node signs it and,
// with a proposal, that it is the same checkpoint, then adds this node's
// signature to the proposal's. The caller closes the draft.
func (l *Ledger) signScopeDraft(ctx context.Context, scope string, proposal *Checkpoint) (*scopeDraft, error) {
	chain, err := l.CheckpointChain(ctx, scope)
	if err != nil {
		return nil, err
	}
	var roots []cid.Cid
	if proposal != nil {
		if n := len(chain); n > 0 && chain[n-1].cid != proposal.cid && !chain[n-1].Clock.Less(proposal.Clock) {
			return nil, fmt.Errorf("%w: this node's latest checkpoint of %s (%s) is as recent as the proposal", ErrCheckpointExists, scope, chain[n-1].cid)
		}
		roots = append(slices.Clone(proposal.Heads), proposal.Deps...)
	} else {
		l.mu.Lock()
		roots = l.core.closureHeads(wireScope(scope))
		l.mu.Unlock()
	}
	d, err := l.scopeDraftAt(ctx, scope, roots)
	if err != nil {
		return nil, err
	}
	if err := l.signDraft(d.ck, chain, proposal); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

// signDraft checks that this node signs ck (drafted at the proposal's
// roots, or at its heads) and, with a proposal, that it is the same
// checkpoint, then adds the proposal's signatures and this node's.
func (l *Ledger) signDraft(ck *Checkpoint, chain []*Checkpoint, proposal *Checkpoint) error {
	scope := ck.Scope
	if !slices.Contains(ck.Signers, l.self) {
		return fmt.Errorf("%w: this node (%s) is not in the replica group of the owner of %s, which signs its checkpoints: %v", ErrCheckpointUntrusted, l.self, scope, ck.Signers)
	}
	if len(ck.Signers) < minScopeSigners {
		return fmt.Errorf("%w: the replica group of the owner of %s has %d member(s), fewer than %d: its scopes have no checkpoints", ErrCheckpointUntrusted, scope, len(ck.Signers), minScopeSigners)
	}
	if len(chain) > 0 && chain[len(chain)-1].cid == ck.cid && proposal == nil {
		return fmt.Errorf("%w: the latest checkpoint of %s is of this state already", ErrCheckpointExists, scope)
	}
	if proposal != nil {
		if proposal.cid != ck.cid {
			return fmt.Errorf("%w: the proposal %s (at %d heads, %d entries) is not the checkpoint this node computes at the same heads, %s (%d entries)",
				ErrCheckpointMismatch, proposal.cid, len(proposal.Heads), proposal.Entries, ck.cid, ck.Entries)
		}
		ck.Sigs = append(ck.Sigs, proposal.Sigs...)
	}
	return ck.Sign(l.o.Key)
}

// storeScopeCheckpoint stores a scope checkpoint signed by a quorum of its
// group (checked against this node's membership) with its state blocks,
// after this node's latest: ErrCheckpointExists if that one is as recent.
func (l *Ledger) storeScopeCheckpoint(ctx context.Context, ck *Checkpoint, blocks func(context.Context, cid.Cid) ([]byte, error)) error {
	defer l.scopeCkptLock(ck.Scope)()
	if err := l.storeScopeCheckpointLocked(ctx, ck, blocks); err != nil {
		return err
	}
	l.log.Info("checkpoint made", "checkpoint", ck.cid.String(), "scope", ck.Scope, "entries", ck.Entries, "size", ck.Size, "signatures", len(ck.Sigs))
	return nil
}

// storeScopeCheckpointLocked is storeScopeCheckpoint, the scope's
// checkpoint lock held.
func (l *Ledger) storeScopeCheckpointLocked(ctx context.Context, ck *Checkpoint, blocks func(context.Context, cid.Cid) ([]byte, error)) error {
	scope := ck.Scope
	chain, err := l.CheckpointChain(ctx, scope)
	if err != nil {
		return err
	}
	if n := len(chain); n > 0 && (chain[n-1].cid == ck.cid || !chain[n-1].Clock.Less(ck.Clock)) {
		return fmt.Errorf("%w: this node's latest checkpoint of %s is %s", ErrCheckpointExists, scope, chain[n-1].cid)
	}
	l.mu.Lock()
	err = l.core.verifyScopeSigners(ctx, ck)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if err := l.storeCheckpoint(ctx, scope, len(chain), ck, blocks); err != nil {
		return err
	}
	l.pruneAfter(scope)
	return nil
}

// scopeDraftAt exports an unsigned checkpoint of an owner or audit scope
// at roots (the heads of the scope and of those it depends on) from a
// replay, into a fresh core, of the roots' causal past within the scope's
// closure: the state a node that follows the scope and no other holds at
// those heads, so every follower that holds the roots exports the same
// checkpoint whatever else it follows or received since (a record ID
// contested by another scope this node follows included). The replay
// starts from the scope's latest trusted checkpoint when the roots descend
// from it, and runs without the ledger's lock (entries are immutable; a
// prune racing it makes it fail, not differ), the walk of the roots' past
// too (storeDag). The replay's core is on a scratch store (store_scratch.go),
// where the draft's state blocks stay until stored: the caller closes the
// draft. ErrCheckpointDeps if this node lacks one of roots.
func (l *Ledger) scopeDraftAt(ctx context.Context, scope string, roots []cid.Cid) (*scopeDraft, error) {
	select {
	case l.draftSem <- struct{}{}:
		defer func() { <-l.draftSem }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	l.met.scopeDrafts.Inc()
	l.scopeDrafts.Add(1)
	ws := wireScope(scope)
	l.mu.Lock()
	var past *causalPast
	err := l.core.ready(ctx)
	for _, r := range roots {
		if err != nil {
			break
		}
		var n *node
		if n, err = l.core.d.get(ctx, r); err == nil && n == nil {
			err = fmt.Errorf("%w: %s (catch up %s first)", ErrCheckpointDeps, r, scopeName(ws))
		} else if err == nil && !inClosure(ws, n.scope) {
			err = fmt.Errorf("%w: %s is of scope %s, not one %s depends on", ErrCheckpointMalformed, r, scopeName(n.scope), scope)
		}
	}
	l.mu.Unlock()
	if err == nil {
		// The roots' whole past, walked on a DAG of its own over the store
		// rather than the core's, without the ledger's lock: the walk is
		// as long as the history, and with the lock held the node's own
		// adds and gossip waited for it.
		past, err = l.pastOf(ctx, roots)
	}
	if err != nil {
		return nil, err
	}
	in := past.in
	deps := map[string]bool{}
	for _, s := range closure(ws) {
		deps[s] = true
	}
	want := func(s string) bool { return deps[s] }
	// Each scope of the closure (the global scope, an audit scope's owner
	// scope, the scope itself) starts from its latest trusted checkpoint
	// when the roots descend from it: its state is what a replay up to its
	// heads gives, and the draft replays only what came after.
	var from []string
	for _, ds := range closure(ws) {
		chain, err := l.CheckpointChain(ctx, scopeName(ds))
		if err != nil {
			return nil, err
		}
		if n := len(chain); n > 0 && allIn(in, chain[n-1].Heads) && allIn(in, chain[n-1].Deps) {
			from = append(from, scopeName(ds))
		}
	}
	for {
		fresh, st, release, err := l.scratchCore(ctx)
		if err != nil {
			return nil, err
		}
		_, _, err = l.replay(ctx, fresh, replayOpts{want: want, in: in, byScope: past.byScope, fromChain: from})
		if err != nil && len(from) > 0 && ctx.Err() == nil {
			// A checkpoint moved under the replay (adopted, pruned):
			// the entries themselves decide.
			l.log.Debug("checkpoint draft from the latest checkpoints failed; replaying", "scope", scope, "err", err)
			release()
			from = nil
			continue
		}
		var ck *Checkpoint
		if err == nil {
			ck, err = exportDraft(ctx, fresh, st, scope)
		}
		if err != nil {
			release()
			return nil, fmt.Errorf("ledger: checkpoint of %s: %w", scope, err)
		}
		return &scopeDraft{ck: ck, store: st, release: release}, nil
	}
}

// causalPast is the causal past of some roots (pastOf): the set of its
// entries, and its entries by wire scope, each oldest first.
type causalPast struct {
	in      map[cid.Cid]bool
	byScope map[string][]cid.Cid
}

// pastOf walks the causal past of roots (inclusive) on a DAG over the store
// (storeDag), without the ledger's lock. The walk yields the newest first;
// reversed, it is in clock order, a causal order (an entry's clock is
// above its parents'), the order replay applies.
func (l *Ledger) pastOf(ctx context.Context, roots []cid.Cid) (*causalPast, error) {
	dg := l.storeDag()
	cs, err := dg.difference(ctx, roots, nil, 0)
	if err != nil {
		return nil, err
	}
	p := &causalPast{in: make(map[cid.Cid]bool, len(cs)), byScope: map[string][]cid.Cid{}}
	for i := len(cs) - 1; i >= 0; i-- {
		c := cs[i]
		n, err := dg.get(ctx, c) // cached by the walk
		if err != nil {
			return nil, err
		}
		if n == nil {
			return nil, fmt.Errorf("ledger: entry %s of the walk has no metadata", c)
		}
		p.in[c] = true
		p.byScope[n.scope] = append(p.byScope[n.scope], c)
	}
	return p, nil
}

// storeDag returns a DAG over the ledger's store with a cache of its own,
// for walks of applied history without the ledger's lock: applied entries'
// metadata never changes (a prune drops bodies and log rows, not it), and
// the core commits an entry's before it is a head anyone can name.
func (l *Ledger) storeDag() *dag {
	return &dag{t: &txn{s: l.store, writes: map[string][]byte{}}, cache: map[cid.Cid]*node{}, anc: map[[2]cid.Cid]bool{}}
}

// ScopeDrafts returns how many scope checkpoint drafts this node has made
// since it opened: each a replay of a scope from its previous checkpoint,
// to propose, co-sign or adopt a checkpoint (the simulation's measure of
// what checkpoints cost).
func (l *Ledger) ScopeDrafts() int64 { return l.scopeDrafts.Load() }

// scopeCheckpointDraft is scopeDraftAt at this node's heads.
func (l *Ledger) scopeCheckpointDraft(ctx context.Context, scope string) (*scopeDraft, error) {
	l.mu.Lock()
	roots := l.core.closureHeads(wireScope(scope))
	l.mu.Unlock()
	return l.scopeDraftAt(ctx, scope, roots)
}

func allIn(set map[cid.Cid]bool, cs []cid.Cid) bool {
	for _, c := range cs {
		if !set[c] {
			return false
		}
	}
	return true
}

// adoptScope stores a trusted checkpoint of an owner or audit scope (its
// signers checked against the membership, its state against its header)
// with its blocks, and with load makes its state this node's state of the
// scope: only on a node that holds nothing of the scope yet
// (ErrCheckpointCoverage otherwise: it syncs the entries it lacks).
func (l *Ledger) adoptScope(ctx context.Context, ck *Checkpoint, blocks func(context.Context, cid.Cid) ([]byte, error), load bool) (err error) {
	scope := ck.Scope
	defer func() {
		if err != nil {
			// What it stored of ck's blocks (the scope's checkpoint lock
			// is held).
			l.dropUncommitted(ctx, scope)
		}
	}()
	old, err := loadChain(ctx, l.store, scope)
	if err != nil {
		return err
	}
	if n := len(old); n > 0 && (old[n-1].cid == ck.cid || !old[n-1].Clock.Less(ck.Clock)) {
		return fmt.Errorf("%w: this node's latest checkpoint of %s is %s", ErrCheckpointExists, scope, old[n-1].cid)
	}
	if !load {
		return l.adoptScopeLocally(ctx, ck)
	}
	l.mu.Lock()
	err = l.core.ready(ctx)
	if err == nil {
		err = l.core.verifyScopeSigners(ctx, ck)
	}
	l.mu.Unlock()
	if err != nil {
		return err
	}
	have, x, err := l.fetchChecked(ctx, ck, blocks, load)
	if err != nil {
		return err
	}
	local := func(ctx context.Context, c cid.Cid) ([]byte, error) { return l.ScopeStateBlock(ctx, scope, c) }
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := x.finish(ctx, load); err != nil {
		return err
	}
	if load {
		if err := l.putMarker(ctx, pCkptLoading+scope, ck.cid); err != nil {
			return err
		}
		if err := l.core.loadCheckpoint(ctx, ck, local); err != nil {
			return err
		}
	}
	raw, err := ck.Encode()
	if err != nil {
		return err
	}
	b, err := l.store.Batch(ctx)
	if err != nil {
		return err
	}
	if err := b.Put(chainKey(scope, len(old)), raw); err != nil {
		return err
	}
	if err := l.commitAdoption(ctx, b, scope, have, ck, load); err != nil {
		return err
	}
	if load {
		l.met.heads.Set(float64(len(l.core.heads)))
		l.log.Info("caught up scope from checkpoint", "checkpoint", ck.cid.String(), "scope", scope, "entries", ck.Entries, "size", ck.Size)
		l.notifyStateLoaded(scope)
	} else {
		l.log.Info("checkpoint adopted", "checkpoint", ck.cid.String(), "scope", scope, "entries", ck.Entries, "size", ck.Size)
	}
	return nil
}

// adoptScopeLocally is adoptScope for a node that holds the scope's
// entries (load false): it keeps the checkpoint to serve it to new
// followers and to prune. Rather than fetching the checkpoint's state (a
// follower would download each new checkpoint of a busy scope whole), it
// drafts the checkpoint at its heads and deps itself (scopeDraftAt: a
// replay from its own latest checkpoint) and keeps it, with the group's
// signatures, if it is the same one: it has then checked the state, not
// only the signatures. ErrCheckpointDeps while it lacks the heads (it is
// behind: the next ask retries). The caller holds the scope's checkpoint
// lock (scopeCkptLock).
func (l *Ledger) adoptScopeLocally(ctx context.Context, ck *Checkpoint) error {
	l.mu.Lock()
	err := l.core.ready(ctx)
	if err == nil {
		err = l.core.verifyScopeSigners(ctx, ck)
	}
	l.mu.Unlock()
	if err != nil {
		return err
	}
	d, err := l.scopeDraftAt(ctx, ck.Scope, append(slices.Clone(ck.Heads), ck.Deps...))
	if err != nil {
		return err
	}
	defer d.close()
	mine := d.ck
	if mine.cid != ck.cid {
		l.log.Error("a checkpoint the owner's replica group signed is not this node's state at its heads: not adopted",
			"scope", ck.Scope, "checkpoint", ck.cid.String(), "entries", ck.Entries, "here", mine.cid.String(), "entries_here", mine.Entries)
		return fmt.Errorf("%w: checkpoint %s of %s (%d entries) is not this node's state at its heads (%s, %d entries)",
			ErrCheckpointMismatch, ck.cid, ck.Scope, ck.Entries, mine.cid, mine.Entries)
	}
	mine.Sigs = ck.Sigs
	if err := l.storeScopeCheckpointLocked(ctx, mine, d.block); err != nil {
		return err
	}
	l.log.Info("checkpoint adopted", "checkpoint", ck.cid.String(), "scope", ck.Scope, "entries", ck.Entries, "size", ck.Size, "computed_here", true)
	return nil
}

// ckptMarkers returns the scopes with a marker under prefix (pCkptBase,
// pCkptPruned).
func (l *Ledger) ckptMarkers(ctx context.Context, prefix string) (map[string]bool, error) {
	out := map[string]bool{}
	err := l.store.Scan(ctx, prefix, true, func(k string, _ []byte) bool {
		out[k[len(prefix):]] = true
		return true
	})
	return out, err
}

// replayInto rebuilds in fresh (a new core on a MemStore) the state of the
// scopes want selects (wire scope names) from what this node stores: each
// scope this node started from a checkpoint (joined, or loaded when it
// started following it) or pruned starts from its latest trusted
// checkpoint, re-verified (the global scope's chain from the genesis, a
// scope's signers against the membership); then the entries stored of it
// that the checkpoint does not hold are replayed, oldest first. The global
// scope comes first, then owner scopes, then audit scopes, so each
// checkpoint finds the entries it depends on. It returns how many entries
// (the genesis aside) came from checkpoints and how many were replayed.
func (l *Ledger) replayInto(ctx context.Context, fresh *Core, want func(string) bool) (loaded, replayed int, err error) {
	return l.replay(ctx, fresh, replayOpts{want: want})
}

// replayOpts select what replay rebuilds.
type replayOpts struct {
	// want selects the scopes (wire names).
	want func(string) bool
	// in, if set, selects the entries: the causal past of a proposal's
	// roots (scopeDraftAt), so the state is the one at those roots, not
	// at this node's heads.
	in map[cid.Cid]bool
	// byScope, if set, is in's entries by wire scope, each oldest first
	// (causalPast): replay then takes them from it instead of reading the
	// metadata of every entry this node has logged, of every scope it
	// follows.
	byScope map[string][]cid.Cid
	// fromChain names scopes to start from their latest trusted
	// checkpoint even if this node did not load or prune them (a draft
	// need not replay what a checkpoint already vouches for).
	fromChain []string
}

// replay is replayInto with options (replayOpts).
func (l *Ledger) replay(ctx context.Context, fresh *Core, o replayOpts) (loaded, replayed int, err error) {
	want := o.want
	starts, err := l.ckptMarkers(ctx, pCkptBase)
	if err != nil {
		return 0, 0, err
	}
	pruned, err := l.ckptMarkers(ctx, pCkptPruned)
	if err != nil {
		return 0, 0, err
	}
	for s := range pruned {
		starts[s] = true
	}
	for _, s := range o.fromChain {
		starts[s] = true
	}
	byScope := map[string][]cid.Cid{}
	for s, cs := range o.byScope {
		if !want(s) {
			continue
		}
		for _, c := range cs {
			if c != l.net {
				byScope[s] = append(byScope[s], c)
			}
		}
	}
	var all []cid.Cid
	if o.byScope == nil {
		if all, err = logCIDs(ctx, l.store); err != nil {
			return 0, 0, err
		}
	}
	for i := len(all) - 1; i >= 0; i-- { // oldest first
		c := all[i]
		if c == l.net || (o.in != nil && !o.in[c]) {
			continue
		}
		v, ok, err := l.store.Get(ctx, pMeta+c.String())
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			return 0, 0, fmt.Errorf("ledger: logged entry %s has no metadata", c)
		}
		var m meta
		if err := decMode.Unmarshal(v, &m); err != nil {
			return 0, 0, corrupt(pMeta+c.String(), err)
		}
		if want(m.Scope) {
			byScope[m.Scope] = append(byScope[m.Scope], c)
		}
	}
	fromCkpt := false
	start := func(s string) error {
		name := scopeName(s)
		if !starts[name] {
			return nil
		}
		chain, err := l.CheckpointChain(ctx, name)
		if err != nil {
			return err
		}
		if len(chain) == 0 {
			return fmt.Errorf("ledger: scope %s started from a checkpoint this node no longer has", name)
		}
		ck := chain[len(chain)-1]
		if s == "" {
			ck, err = VerifyCheckpointChain(l.o.Genesis, ScopeGlobal, chain)
		} else {
			err = fresh.verifyScopeSigners(ctx, ck)
		}
		if err != nil {
			return fmt.Errorf("ledger: replay from checkpoint: %w", err)
		}
		get := func(ctx context.Context, c cid.Cid) ([]byte, error) { return l.ScopeStateBlock(ctx, name, c) }
		if err := fresh.LoadCheckpoint(ctx, ck, get); err != nil {
			return fmt.Errorf("ledger: replay from checkpoint %s: %w", ck.cid, err)
		}
		fromCkpt = true
		loaded += int(ck.Entries)
		if s == "" {
			loaded-- // the genesis
		}
		return nil
	}
	replay := func(cs []cid.Cid) error {
		var batch []*Entry
		run := func() error {
			out, err := fresh.Ingest(ctx, batch)
			if err != nil {
				return err
			}
			for i, r := range out.Results {
				if r.Status != Applied && !(fromCkpt && r.Status == Duplicate) {
					return fmt.Errorf("ledger: entry %s fails verification: %s: %w", batch[i].cid, r.Status, r.Err)
				}
			}
			replayed += len(batch)
			batch = batch[:0]
			return nil
		}
		for _, c := range cs {
			if ok, err := fresh.Has(ctx, c); err != nil {
				return err
			} else if ok {
				continue // in a checkpoint's state
			}
			e, err := l.Entry(ctx, c)
			if err != nil {
				return fmt.Errorf("ledger: entry %s fails verification: %w", c, err)
			}
			batch = append(batch, e)
			if len(batch) >= 1000 {
				if err := run(); err != nil {
					return err
				}
			}
		}
		return run()
	}
	scopes := map[string]bool{}
	for s := range byScope {
		scopes[s] = true
	}
	for s := range starts {
		if ws := wireScope(s); want(ws) {
			scopes[ws] = true
		}
	}
	order := make([]string, 0, len(scopes))
	for s := range scopes {
		order = append(order, s)
	}
	rank := func(s string) int {
		kind, _, _ := ParseScope(s)
		return int(kind) // global, owner, audit
	}
	sort.Slice(order, func(i, j int) bool {
		if ri, rj := rank(order[i]), rank(order[j]); ri != rj {
			return ri < rj
		}
		return order[i] < order[j]
	})
	for _, s := range order {
		if err := start(s); err != nil {
			return 0, 0, err
		}
		if err := replay(byScope[s]); err != nil {
			return 0, 0, err
		}
	}
	return loaded, replayed, nil
}
