package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Automatic scope checkpoints (issue #16). A node that starts following an
// owner's scope (a grantee, a new member of the owner's replica group)
// loads the scope's latest checkpoint instead of syncing its whole
// history; so the scopes must be checkpointed as they grow, not only when
// an operator runs `ledger checkpoint --scope` on two members.
//
// With Options.ScopeCheckpointEvery = N, each member of an owner's replica
// group counts the entries of the owner's scopes it applies. When one of
// them has N entries past its latest checkpoint, the group's proposer (the
// first member, in peer ID order, that is this node or connected to it:
// with everyone up, exactly one; any other member at 2N, in case the first
// has automatic checkpoints off) drafts a checkpoint at its heads
// (scopeDraftAt), signs it, and asks the other members to co-sign it over
// the sync protocol (opCosign). Each co-signer drafts the checkpoint at the
// proposal's own heads and deps, which it must hold, so the scope moving on
// meanwhile changes nothing; it signs only if it computes the same
// checkpoint. With a majority of the group's signatures, the proposer
// stores it; the owner and the other members adopt it at their next sync
// (scopeCheckpointFrom), and a node that starts following the scope loads
// it. Other followers keep the entries only (keepsCheckpoints).
//
// Trust is what `ledger checkpoint --scope` has: a majority of the group
// vouches for the state, each having computed it. A member that proposes
// alone gets nothing stored anywhere; a non-member's proposal is refused
// before any work (its author must be a signer that signed it), and a
// co-signer replays at most one scope every cosignEvery.
const (
	// opCosign asks a member of an owner's replica group to co-sign a
	// checkpoint proposal (syncReq.Proposal). The answer is the proposal
	// with the member's signature (syncResp.Checkpoints[0]), or Err.
	opCosign = 5
	// autoCkptTick is how often a node looks at the scopes it signs.
	autoCkptTick = 5 * time.Second
	// autoCkptRetry is how long a failed attempt waits, and
	// autoCkptSpacing how long after a checkpoint the next one of the same
	// scope may be proposed: longer than a co-signer's cosignEvery, which
	// would refuse it as busy.
	autoCkptRetry   = 30 * time.Second
	autoCkptSpacing = 2 * cosignEvery
	// cosignTimeout bounds one co-signature: the co-signer replays the
	// scope from its latest checkpoint.
	cosignTimeout = 5 * time.Minute
	// cosignEvery is how often a co-signer replays one scope for others'
	// proposals.
	cosignEvery = 10 * time.Second
	// fallbackFactor: a member of the group other than its proposer
	// proposes a checkpoint itself once the scope has this many times
	// ScopeCheckpointEvery entries past its latest.
	fallbackFactor = 2
)

// autoCkpt is a node's state of automatic scope checkpoints; its zero
// value is ready.
type autoCkpt struct {
	mu sync.Mutex
	// grown counts the entries of each wire scope applied since it was
	// last counted exactly (counted).
	grown map[string]int
	// counted holds the scopes counted exactly since the node started.
	counted map[string]bool
	// failed is when an attempt for a scope last failed, made when this
	// node last made a checkpoint of it.
	failed, made map[string]time.Time
	// cosigned is when this node last replayed a scope for a proposal, and
	// the checkpoint it signed then.
	cosigned map[string]cosigned
}

type cosigned struct {
	at time.Time
	ck *Checkpoint
}

// grew counts applied entries (settle calls it, the core's lock held).
func (a *autoCkpt) grew(es []*Entry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range es {
		if e.Scope == "" {
			continue
		}
		if a.grown == nil {
			a.grown = map[string]int{}
		}
		a.grown[e.Scope]++
	}
}

// due reports whether wire scope ws may have every entries past its
// latest checkpoint: it was not counted since the start (or since this
// node's last checkpoint of it), or enough were applied since; and no
// attempt failed in the last autoCkptRetry, and this node made none in the
// last autoCkptSpacing.
func (a *autoCkpt) due(ws string, every int, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t, ok := a.failed[ws]; ok && now.Sub(t) < autoCkptRetry {
		return false
	}
	if t, ok := a.made[ws]; ok && now.Sub(t) < autoCkptSpacing {
		return false
	}
	return !a.counted[ws] || a.grown[ws] >= every
}

// set records an exact count of entries past the latest checkpoint.
func (a *autoCkpt) set(ws string, n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.counted == nil {
		a.counted, a.grown = map[string]bool{}, map[string]int{}
	}
	a.counted[ws] = true
	a.grown[ws] = n
	delete(a.failed, ws)
}

// madeAt records a checkpoint of wire scope ws made at now: the next look,
// autoCkptSpacing later, counts its entries past it exactly (those applied
// while it was drafted and co-signed included).
func (a *autoCkpt) madeAt(ws string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.counted, ws)
	if a.made == nil {
		a.made = map[string]time.Time{}
	}
	a.made[ws] = now
}

func (a *autoCkpt) fail(ws string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failed == nil {
		a.failed = map[string]time.Time{}
	}
	a.failed[ws] = now
}

// autoCheckpointLoop checkpoints the scopes this node signs as they grow.
func (l *Ledger) autoCheckpointLoop(ctx context.Context) {
	l.every(ctx, autoCkptTick, func() { l.autoCheckpoints(ctx) })
}

// autoCheckpoints makes the checkpoints that are due (see the top of the
// file). Its cost follows this node's involvement: it looks only at the
// scopes of owners whose replica group it is in, and counts one exactly
// only once the applied entries say it may be due.
func (l *Ledger) autoCheckpoints(ctx context.Context) {
	every := l.o.ScopeCheckpointEvery
	n := l.tr.Load()
	if every <= 0 || n == nil || !l.core.scoped {
		return
	}
	for _, s := range l.Followed()[1:] {
		kind, owner, err := ParseScope(s)
		if err != nil || kind == KindGlobal || owner == l.self || ctx.Err() != nil {
			continue
		}
		group := slices.Sorted(slices.Values(l.groupOf(owner)))
		if len(group) < minScopeSigners || !slices.Contains(group, l.self) {
			continue
		}
		ws := wireScope(s)
		need, first := proposeAt(group, l.self, n.connected, every)
		if !l.auto.due(ws, need, l.now()) {
			continue
		}
		past, err := l.sinceCheckpoint(ctx, s)
		if err != nil {
			l.log.Warn("count entries past the latest checkpoint", "scope", s, "err", err)
			l.auto.fail(ws, l.now())
			continue
		}
		if past < need {
			l.auto.set(ws, past)
			continue
		}
		if need != every {
			l.log.Info("automatic checkpoint: the group's first member has not made one; proposing instead", "scope", s, "first", first.String(), "entries_past_latest", past)
		}
		ck, err := l.proposeScopeCheckpoint(ctx, n, s)
		if err != nil {
			l.log.Warn("automatic checkpoint", "scope", s, "entries_past_latest", past, "err", err)
			l.met.scopeCkpts.WithLabelValues("failed").Inc()
			l.auto.fail(ws, l.now())
			continue
		}
		l.auto.madeAt(ws, l.now())
		l.met.scopeCkpts.WithLabelValues("made").Inc()
		l.log.Info("automatic checkpoint", "scope", s, "checkpoint", ck.cid.String(), "entries", ck.Entries, "entries_past_latest", past)
	}
}

// proposeAt says when this node (self, a member of group, sorted)
// proposes a checkpoint of a scope the group signs: at every entries past
// its latest if it is the proposer, the group's first member it can reach
// (itself or connected), which first returns; otherwise at fallbackFactor
// times that. The others step in because the proposer may have automatic
// checkpoints off (its own setting) or keep failing, and the owner's
// scopes would then get none; at twice the count it has had a whole
// interval's entries to do it.
func proposeAt(group []peer.ID, self peer.ID, connected func(peer.ID) bool, every int) (need int, first peer.ID) {
	i := slices.IndexFunc(group, func(p peer.ID) bool { return p == self || connected(p) })
	if i < 0 || group[i] == self {
		return every, self
	}
	return fallbackFactor * every, group[i]
}

// sinceCheckpoint counts the entries of scope s this node holds that its
// latest checkpoint of s does not cover (all of them without one).
func (l *Ledger) sinceCheckpoint(ctx context.Context, s string) (int, error) {
	chain, err := l.CheckpointChain(ctx, s)
	if err != nil {
		return 0, err
	}
	var exclude []cid.Cid
	if n := len(chain); n > 0 {
		exclude = append(slices.Clone(chain[n-1].Heads), chain[n-1].Deps...)
	}
	ws := wireScope(s)
	l.mu.Lock()
	defer l.mu.Unlock()
	diff, err := l.core.d.difference(ctx, l.core.ScopeHeads(s), exclude, 0)
	if err != nil {
		return 0, err
	}
	count := 0
	for _, c := range diff {
		nd, err := l.core.d.get(ctx, c)
		if err != nil {
			return 0, err
		}
		if nd != nil && nd.scope == ws {
			count++
		}
	}
	return count, nil
}

// proposeScopeCheckpoint drafts and signs a checkpoint of scope s at this
// node's heads, gathers the signatures of the other members of the owner's
// replica group until a majority signed, and stores it.
func (l *Ledger) proposeScopeCheckpoint(ctx context.Context, n *transport, s string) (*Checkpoint, error) {
	d, err := l.signScopeDraft(ctx, s, nil)
	if err != nil {
		return nil, err
	}
	defer d.close()
	ck := d.ck
	need := Quorum(len(ck.Signers))
	var errs []error
	for _, p := range ck.Signers {
		if trustedSigs(ck, ck.Signers) >= need {
			break
		}
		if p == l.self {
			continue
		}
		got, err := l.askCosign(ctx, n, p, ck)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		for _, sig := range got.Sigs {
			if slices.Contains(ck.Signers, sig.Signer) && !slices.ContainsFunc(ck.Sigs, func(x CheckpointSig) bool { return x.Signer == sig.Signer }) {
				ck.Sigs = append(ck.Sigs, sig)
			}
		}
		slices.SortFunc(ck.Sigs, func(a, b CheckpointSig) int {
			switch {
			case a.Signer < b.Signer:
				return -1
			case a.Signer > b.Signer:
				return 1
			}
			return 0
		})
	}
	if have := trustedSigs(ck, ck.Signers); have < need {
		return nil, fmt.Errorf("%d of the %d signatures it needs from %v: %w", have, need, ck.Signers, errors.Join(errs...))
	}
	if err := l.storeScopeCheckpoint(ctx, ck, d.block); err != nil {
		return nil, err
	}
	return ck, nil
}

// askCosign asks member p to co-sign proposal ck, and returns the
// checkpoint it signed: ck with p's signature among its own, checked.
func (l *Ledger) askCosign(ctx context.Context, n *transport, p peer.ID, ck *Checkpoint) (*Checkpoint, error) {
	raw, err := ck.Encode()
	if err != nil {
		return nil, err
	}
	resp, err := l.requestWithin(ctx, n.h, p, &syncReq{Network: l.net.Bytes(), Op: opCosign, Scope: wireScope(ck.Scope), Proposal: raw}, cosignTimeout)
	if err != nil {
		return nil, err
	}
	if resp.Err != "" {
		return nil, errors.New(resp.Err)
	}
	if len(resp.Checkpoints) != 1 {
		return nil, fmt.Errorf("answered %d checkpoints, want 1", len(resp.Checkpoints))
	}
	got, err := DecodeCheckpoint(resp.Checkpoints[0])
	if err != nil {
		return nil, err
	}
	if got.cid != ck.cid {
		return nil, fmt.Errorf("signed checkpoint %s, not the proposal %s", got.cid, ck.cid)
	}
	if !slices.ContainsFunc(got.Sigs, func(x CheckpointSig) bool { return x.Signer == p }) {
		return nil, errors.New("answered without its signature")
	}
	return got, nil
}

// serveCosign answers opCosign from peer from: the proposal must be of a
// scope this node follows and signs, by one of its signers that signed it
// (a non-member's costs nothing); this node then drafts the checkpoint at
// the proposal's heads (at most one replay per scope every cosignEvery, one
// at a time), signs it if it is the same, and stores it if that makes a
// majority.
func (l *Ledger) serveCosign(ctx context.Context, req *syncReq, from peer.ID) *syncResp {
	kind, _, err := ParseScope(req.Scope)
	if err != nil || kind == KindGlobal || !l.core.scoped {
		return &syncResp{Err: "bad scope"}
	}
	ck, err := DecodeCheckpoint(req.Proposal)
	if err != nil {
		return &syncResp{Err: "bad proposal"}
	}
	if ck.Scope != scopeName(req.Scope) || ck.Network != l.net {
		return &syncResp{Err: "the proposal is of another scope or network"}
	}
	if !l.Follows(ck.Scope) || !slices.Contains(ck.Signers, l.self) {
		return &syncResp{Err: "not a signer of this scope here"}
	}
	// The sender must be a signer that signed it, and in the owner's
	// replica group as this node sees it now: a member that lists itself
	// among made-up signers costs this node nothing.
	_, owner, _ := ParseScope(ck.Scope)
	if from == "" || !slices.Contains(ck.Signers, from) || !slices.ContainsFunc(ck.Sigs, func(x CheckpointSig) bool { return x.Signer == from }) ||
		!slices.Contains(l.groupOf(owner), from) {
		return &syncResp{Err: "only a signer may propose, signed"}
	}
	ws := wireScope(ck.Scope)
	l.auto.mu.Lock()
	last, ok := l.auto.cosigned[ws]
	l.auto.mu.Unlock()
	var signed *Checkpoint
	if ok && last.ck != nil && last.ck.cid == ck.cid {
		signed = last.ck // asked again (a retry): no replay
	} else if ok && l.now().Sub(last.at) < cosignEvery {
		return &syncResp{Err: fmt.Sprintf("busy: co-signed a checkpoint of %s less than %s ago", ck.Scope, cosignEvery)}
	} else {
		l.auto.mu.Lock()
		if l.auto.cosigned == nil {
			l.auto.cosigned = map[string]cosigned{}
		}
		l.auto.cosigned[ws] = cosigned{at: l.now()}
		l.auto.mu.Unlock()
		ctx, cancel := context.WithTimeout(ctx, cosignTimeout)
		defer cancel()
		d, err := l.signScopeDraft(ctx, ck.Scope, ck)
		if err != nil {
			l.log.Info("checkpoint proposal not co-signed", "scope", ck.Scope, "proposal", ck.cid.String(), "from", from.String(), "err", err)
			l.met.scopeCkpts.WithLabelValues("refused").Inc()
			return &syncResp{Err: err.Error()}
		}
		defer d.close()
		signed = d.ck
		l.auto.mu.Lock()
		l.auto.cosigned[ws] = cosigned{at: l.now(), ck: signed}
		l.auto.mu.Unlock()
		l.met.scopeCkpts.WithLabelValues("cosigned").Inc()
		if trustedSigs(signed, signed.Signers) >= Quorum(len(signed.Signers)) {
			if err := l.storeScopeCheckpoint(ctx, signed, d.block); err != nil && !errors.Is(err, ErrCheckpointExists) {
				l.log.Warn("store co-signed checkpoint", "scope", ck.Scope, "err", err)
			}
		}
	}
	raw, err := signed.Encode()
	if err != nil {
		return &syncResp{Err: "internal error"}
	}
	return &syncResp{Checkpoints: [][]byte{raw}}
}
