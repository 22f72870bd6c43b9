package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
)

// Checkpoints travel on the sync protocol (net.go carries the bytes):
// opCheckpoints asks for a peer's trusted chain of a scope from an index
// on; opStateBlock asks for one state block of its latest checkpoint. A
// node that syncs with a peer whose chain is longer verifies it from the
// genesis, fetches the latest state's blocks, and either loads it (a node
// that has nothing but the genesis, or one whose peer pruned what it
// lacks) or keeps it to serve and prune (a node that has the entries).
const (
	opCheckpoints = 2
	opStateBlock  = 3
)

// errPruned is what a server answers when entries a client lacks were
// pruned: the client joins from the checkpoint instead.
const errPruned = "pruned: entries before the checkpoint were pruned here; join from the checkpoint"

// errNotKept is what a node answers for the checkpoints of an owner or
// audit scope it follows but does not keep checkpoints of (keepsCheckpoints):
// the client asks another follower (the owner, its replica group).
const errNotKept = "not kept: this node does not keep this scope's checkpoints; ask the scope's owner or its replica group"

// keepsCheckpoints reports whether this node keeps the checkpoints of
// owner or audit scope s up to date as they are made: it is the scope's
// owner or in the owner's replica group (who sign them and serve them to
// new followers), or it prunes after checkpoints. Any other follower (a
// grantee, a holder the owner assigned) loads the latest checkpoint when
// it starts following and then keeps the entries only: adopting each
// newer one would mean replaying the scope to check it (adoptScopeLocally),
// a cost that follows the owner's activity, not this node's involvement.
func (l *Ledger) keepsCheckpoints(s string) bool {
	kind, owner, err := ParseScope(s)
	if err != nil || kind == KindGlobal {
		return true
	}
	return owner == l.self || l.o.PruneAfterCheckpoint || slices.Contains(l.groupOf(owner), l.self)
}

// serveCheckpoint answers opCheckpoints and opStateBlock.
func (l *Ledger) serveCheckpoint(ctx context.Context, req *syncReq) *syncResp {
	switch req.Op {
	case opCheckpoints:
		if _, _, err := ParseScope(req.Scope); err != nil {
			return &syncResp{Err: "bad scope"}
		}
		if req.Scope != "" && !l.keepsCheckpoints(scopeName(req.Scope)) {
			// What it has may be only the one it loaded long ago: a new
			// follower would replay everything since from it.
			return &syncResp{Err: errNotKept}
		}
		chain, err := l.CheckpointChain(ctx, scopeName(req.Scope))
		if err != nil {
			l.log.Error("answer checkpoint request", "err", err)
			return &syncResp{Err: "internal error"}
		}
		resp := &syncResp{}
		if req.Scope != "" {
			// A scope's checkpoints are each trusted on their own, and
			// nodes hold different ones (each adopts the latest it
			// hears of): the answer is the latest, unless it is the one
			// the client names as its own (Have). An index (Max) into
			// this node's chain would mean nothing to the client.
			n := len(chain)
			if n == 0 || (len(req.Have) == 1 && string(req.Have[0]) == string(chain[n-1].cid.Bytes())) {
				return resp
			}
			raw, err := chain[n-1].Encode()
			if err != nil {
				return &syncResp{Err: "internal error"}
			}
			resp.Checkpoints = [][]byte{raw}
			return resp
		}
		size := 0
		for i := int(req.Max); i < len(chain); i++ {
			raw, err := chain[i].Encode()
			if err != nil {
				return &syncResp{Err: "internal error"}
			}
			if size+len(raw) > respEntryBytes {
				resp.More = true
				break
			}
			resp.Checkpoints = append(resp.Checkpoints, raw)
			size += len(raw)
		}
		return resp
	case opStateBlock:
		if len(req.Have) != 1 {
			return &syncResp{Err: "want one block"}
		}
		c, err := cid.Cast(req.Have[0])
		if err != nil {
			return &syncResp{Err: "bad cid"}
		}
		if _, _, err := ParseScope(req.Scope); err != nil {
			return &syncResp{Err: "bad scope"}
		}
		b, err := l.ScopeStateBlock(ctx, scopeName(req.Scope), c)
		if err != nil {
			return &syncResp{Err: "no such state block"}
		}
		return &syncResp{Block: b}
	}
	return &syncResp{Err: "unknown op"}
}

// catchUpCheckpoints asks a peer (through ask, one request and its answer)
// for checkpoints this node lacks and adopts them (AdoptCheckpoint), or
// loads the latest (JoinFromCheckpoint) when join is set or this node has
// nothing but the genesis. It reports whether it loaded one.
func (l *Ledger) catchUpCheckpoints(ctx context.Context, ask func(*syncReq) (*syncResp, error), join bool) (bool, error) {
	ours, err := l.CheckpointChain(ctx, ScopeGlobal)
	if err != nil {
		return false, err
	}
	var theirs []*Checkpoint
	for from := len(ours); ; {
		resp, err := ask(&syncReq{Network: l.net.Bytes(), Op: opCheckpoints, Max: uint32(from)})
		if err != nil {
			return false, fmt.Errorf("%w: %w", errNoAnswer, err)
		}
		if resp.Err != "" {
			if resp.Err == "unknown op" {
				return false, nil // a peer from before checkpoints
			}
			return false, fmt.Errorf("ledger: checkpoints: %s", resp.Err)
		}
		for _, raw := range resp.Checkpoints {
			ck, err := DecodeCheckpoint(raw)
			if err != nil {
				return false, err
			}
			theirs = append(theirs, ck)
		}
		from += len(resp.Checkpoints)
		if !resp.More || len(resp.Checkpoints) == 0 {
			break
		}
	}
	if len(theirs) == 0 {
		return false, nil
	}
	chain := append(append([]*Checkpoint{}, ours...), theirs...)
	if !join {
		l.mu.Lock()
		join = l.onlyGenesis()
		l.mu.Unlock()
	}
	fetch := func(ctx context.Context, c cid.Cid) ([]byte, error) {
		resp, err := ask(&syncReq{Network: l.net.Bytes(), Op: opStateBlock, Have: [][]byte{c.Bytes()}})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errNoAnswer, err)
		}
		if resp.Err != "" {
			return nil, errors.New(resp.Err)
		}
		return resp.Block, nil
	}
	if join {
		if err := l.JoinFromCheckpoint(ctx, chain, fetch); err != nil {
			return false, err
		}
		return true, nil
	}
	if err := l.AdoptCheckpoint(ctx, chain, fetch); err != nil && !errors.Is(err, ErrCheckpointExists) {
		return false, err
	}
	return false, nil
}

// onlyGenesis reports, l.mu held, whether the genesis is the only entry
// this node has.
func (l *Ledger) onlyGenesis() bool {
	_, ok := l.core.heads[l.net]
	return ok && len(l.core.heads) == 1
}

func isPruned(msg string) bool { return strings.HasPrefix(msg, "pruned:") }

// prunedHere reports whether this node pruned or started a scope from a
// checkpoint: then an entry it lacks may be one it never had or dropped.
func (l *Ledger) prunedHere(ctx context.Context) bool {
	p, err1 := l.ckptMarkers(ctx, pCkptPruned)
	b, err2 := l.ckptMarkers(ctx, pCkptBase)
	return err1 == nil && err2 == nil && len(p)+len(b) > 0
}

// catchUpScopeCheckpoint asks a peer (through ask) for its latest
// checkpoint of wire scope scope (an owner's or audit scope) and, if it is
// newer than this node's, adopts it (adoptScope): it loads its state when
// this node holds nothing of the scope yet (it just started following it),
// and otherwise, if it keeps the scope's checkpoints (keepsCheckpoints),
// keeps it to serve and prune. It reports whether it loaded
// one. A peer without one, or from before scope checkpoints, answers none.
func (l *Ledger) catchUpScopeCheckpoint(ctx context.Context, ask func(*syncReq) (*syncResp, error), scope string) (bool, error) {
	name := scopeName(scope)
	kind, owner, err := ParseScope(name)
	if err != nil || kind == KindGlobal {
		return false, err
	}
	l.mu.Lock()
	held := len(l.core.ScopeHeads(name)) > 0
	l.mu.Unlock()
	if !held {
		// A new follower: two syncs starting together must not both load.
		defer l.scopeCkptLock(name)()
	} else if unlock, ok := l.scopeCkptTryLock(name); ok {
		defer unlock()
	} else {
		// Another sync is adopting a checkpoint of it (a replay:
		// adoptScopeLocally): this one goes on to the entries.
		return false, nil
	}
	if kind == KindAudit {
		// The audit scope's sync brings its owner scope too: load that
		// one's checkpoint first, or its entries would be replayed.
		l.mu.Lock()
		fresh := len(l.core.ScopeHeads(OwnerScope(owner))) == 0
		l.mu.Unlock()
		if fresh {
			unlock := l.scopeCkptLock(OwnerScope(owner)) // an audit scope's first, always
			_, err := l.scopeCheckpointFrom(ctx, ask, wireScope(OwnerScope(owner)))
			unlock()
			if err != nil {
				l.log.Log(ctx, ckptAskLevel(err), "scope checkpoint from peer", "scope", OwnerScope(owner), "err", err)
			}
			if errors.Is(err, errNoAnswer) {
				return false, err // the audit scope's rounds would replay the owner scope (syncRounds)
			}
		}
	}
	return l.scopeCheckpointFrom(ctx, ask, scope)
}

// scopeCkptTryLock is scopeCkptLock if the lock is free.
func (l *Ledger) scopeCkptTryLock(name string) (func(), bool) {
	m := l.scopeCkptMutex(name)
	if !m.TryLock() {
		return nil, false
	}
	return m.Unlock, true
}

// scopeCkptLock takes the lock that serializes catching up scope name
// from checkpoints and returns its unlock. Only syncs of the same scope
// wait on it (never a global lock across a peer's answer); a node takes
// an audit scope's before its owner scope's.
func (l *Ledger) scopeCkptLock(name string) func() {
	m := l.scopeCkptMutex(name)
	m.Lock()
	return m.Unlock
}

// scopeCkptMutex returns scope name's checkpoint lock.
func (l *Ledger) scopeCkptMutex(name string) *sync.Mutex {
	l.scopeCkptMu.Lock()
	defer l.scopeCkptMu.Unlock()
	if l.scopeCkptLocks == nil {
		l.scopeCkptLocks = map[string]*sync.Mutex{}
	}
	m := l.scopeCkptLocks[name]
	if m == nil {
		m = new(sync.Mutex)
		l.scopeCkptLocks[name] = m
	}
	return m
}

// scopeCkptEvery is how often a node asks a peer for a scope's
// checkpoints: at its first sync of the scope (a node that starts
// following it loads the latest then), and then at most this often (to
// serve and prune the newer ones), not at every sync.
const scopeCkptEvery = 10 * time.Second

// errNoAnswer wraps a transport error of a checkpoint or state block
// request: the peer never answered (syncRounds then stops rather than
// replay a scope a new follower could load).
var errNoAnswer = errors.New("no answer")

// scopeCheckpointFrom is catchUpScopeCheckpoint for one scope, its lock held.
func (l *Ledger) scopeCheckpointFrom(ctx context.Context, ask func(*syncReq) (*syncResp, error), scope string) (_ bool, err error) {
	name := scopeName(scope)
	l.mu.Lock()
	held := len(l.core.ScopeHeads(name)) > 0
	l.mu.Unlock()
	if held && !l.keepsCheckpoints(name) {
		return false, nil // it has the entries, and keeps no newer checkpoint
	}
	l.scopeCkptMu.Lock()
	at, ok := l.scopeCkptAsked[name]
	l.scopeCkptMu.Unlock()
	if ok && l.now().Sub(at) < l.o.checkpointAskEvery {
		return false, nil
	}
	// Only an answer this node could use counts: after a failure (a peer
	// unreachable, a checkpoint that depends on entries not caught up
	// yet) a new follower asks again at the next sync. A node that holds
	// the scope waits as after a success: its failures cost a replay
	// (adoptScopeLocally), and it loses nothing by waiting.
	defer func() {
		if err == nil || held {
			l.scopeCkptMu.Lock()
			if l.scopeCkptAsked == nil {
				l.scopeCkptAsked = map[string]time.Time{}
			}
			l.scopeCkptAsked[name] = l.now()
			l.scopeCkptMu.Unlock()
		}
	}()
	// The peer's latest, unless it is this node's (peers hold different
	// lists: the latest decides). Max is for peers from before that
	// answer: those past the count this node has.
	ours, err := l.CheckpointChain(ctx, name)
	if err != nil {
		return false, err
	}
	req := &syncReq{Network: l.net.Bytes(), Op: opCheckpoints, Scope: scope, Max: uint32(len(ours))}
	if n := len(ours); n > 0 {
		req.Have = [][]byte{ours[n-1].cid.Bytes()}
	}
	resp, err := ask(req)
	if err != nil {
		return false, fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	if resp.Err != "" {
		if resp.Err == "unknown op" || resp.Err == "bad scope" {
			return false, nil
		}
		if resp.Err == errNotKept && !held {
			// A new follower asked a follower that keeps none: as if
			// unanswered, it syncs nothing of the scope from it (it would
			// replay the history) and asks the next peer.
			return false, fmt.Errorf("%w: %s", errNoAnswer, resp.Err)
		}
		return false, fmt.Errorf("ledger: checkpoints of %s: %s", name, resp.Err)
	}
	// Each is trusted on its own: the latest is the one to take. A long
	// answer (More) has the latest on a later page.
	var raw []byte
	for from := uint32(len(ours)); ; {
		if n := len(resp.Checkpoints); n > 0 {
			raw = resp.Checkpoints[n-1]
		}
		if !resp.More || len(resp.Checkpoints) == 0 {
			break
		}
		from += uint32(len(resp.Checkpoints))
		if resp, err = ask(&syncReq{Network: l.net.Bytes(), Op: opCheckpoints, Scope: scope, Max: from}); err != nil {
			return false, fmt.Errorf("%w: %w", errNoAnswer, err)
		}
		if resp.Err != "" {
			return false, fmt.Errorf("ledger: checkpoints of %s: %s", name, resp.Err)
		}
	}
	if raw == nil {
		return false, nil
	}
	ck, err := DecodeCheckpoint(raw)
	if err != nil {
		return false, err
	}
	if ck.Scope != name {
		return false, fmt.Errorf("%w: asked for checkpoints of %s, got one of %s", ErrCheckpointMalformed, name, ck.Scope)
	}
	fetch := func(ctx context.Context, c cid.Cid) ([]byte, error) {
		resp, err := ask(&syncReq{Network: l.net.Bytes(), Op: opStateBlock, Scope: scope, Have: [][]byte{c.Bytes()}})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errNoAnswer, err)
		}
		if resp.Err != "" {
			return nil, errors.New(resp.Err)
		}
		return resp.Block, nil
	}
	load := !held
	if err := l.adoptScope(ctx, ck, fetch, load); err != nil {
		if errors.Is(err, ErrCheckpointExists) || (!load && errors.Is(err, ErrCheckpointDeps)) {
			return false, nil // ours is as recent; or not caught up to it yet: ask again later
		}
		return false, err
	}
	if load {
		l.retryPending(ctx)
	}
	return load, nil
}
