package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Where a node keeps checkpoints, beside the state (not part of it, nor of
// the digest):
//
//	/k/chain/<scope>/<index>   the trusted checkpoints, oldest first (encoded): the
//	                           global scope's chain; an owner or audit scope's
//	                           checkpoints, each trusted on its own (checkpoint_scope.go)
//	/k/b/<cid>                 the state blocks of the global scope's latest trusted checkpoint
//	/k/sb/<scope>/<cid>        those of an owner or audit scope's latest
//	                           (both only without Options.CheckpointDir: ckpt_blocks.go)
//	/k/base/<scope>            the checkpoint this node's state of the scope started from
//	/k/pruned/<scope>          the checkpoint up to which the scope's entries were pruned
//	/k/loading/<scope>         set while a checkpoint's state is being written
const (
	pCkptChain      = "/k/chain/"
	pCkptBlock      = "/k/b/"
	pCkptScopeBlock = "/k/sb/"
	pCkptBase       = "/k/base/"
	pCkptPruned     = "/k/pruned/"
	pCkptLoading    = "/k/loading/"
)

// blockPrefix is where the state blocks of scope's latest checkpoint are kept.
func blockPrefix(scope string) string {
	if scope == ScopeGlobal {
		return pCkptBlock
	}
	return pCkptScopeBlock + scope + "/"
}

func chainKey(scope string, i int) string {
	return pCkptChain + scope + "/" + fmt.Sprintf("%016x", i)
}

// CheckpointInfo describes a stored checkpoint.
type CheckpointInfo struct {
	Checkpoint *Checkpoint
	// Index is its position in the trusted chain (0: the first).
	Index int
	// Base is set on the checkpoint this node's state started from.
	Base bool
	// Pruned is set on the checkpoint up to which this node pruned.
	Pruned bool
}

// CheckpointChain returns the trusted chain of scope stored here, oldest
// first (empty if none).
func (l *Ledger) CheckpointChain(ctx context.Context, scope string) ([]*Checkpoint, error) {
	return loadChain(ctx, l.store, scope)
}

func loadChain(ctx context.Context, s Store, scope string) ([]*Checkpoint, error) {
	var out []*Checkpoint
	var derr error
	err := s.Scan(ctx, pCkptChain+scope+"/", false, func(k string, v []byte) bool {
		ck, err := DecodeCheckpoint(v)
		if err != nil {
			derr = corrupt(k, err)
			return false
		}
		out = append(out, ck)
		return true
	})
	if err := errors.Join(err, derr); err != nil {
		return nil, fmt.Errorf("ledger: read checkpoints: %w", err)
	}
	return out, nil
}

// Checkpoints lists the trusted checkpoints of scope, oldest first.
func (l *Ledger) Checkpoints(ctx context.Context, scope string) ([]CheckpointInfo, error) {
	chain, err := l.CheckpointChain(ctx, scope)
	if err != nil {
		return nil, err
	}
	base, err := l.marker(ctx, pCkptBase+scope)
	if err != nil {
		return nil, err
	}
	pruned, err := l.marker(ctx, pCkptPruned+scope)
	if err != nil {
		return nil, err
	}
	out := make([]CheckpointInfo, len(chain))
	for i, ck := range chain {
		out[i] = CheckpointInfo{Checkpoint: ck, Index: i, Base: ck.cid == base, Pruned: ck.cid == pruned}
	}
	return out, nil
}

// marker reads a checkpoint CID stored under k (cid.Undef if none).
func (l *Ledger) marker(ctx context.Context, k string) (cid.Cid, error) {
	v, ok, err := l.store.Get(ctx, k)
	if err != nil || !ok {
		return cid.Undef, err
	}
	c, err := cid.Cast(v)
	if err != nil {
		return cid.Undef, corrupt(k, err)
	}
	return c, nil
}

// StateBlock returns a state block of the global scope's latest trusted
// checkpoint.
func (l *Ledger) StateBlock(ctx context.Context, c cid.Cid) ([]byte, error) {
	return l.ScopeStateBlock(ctx, ScopeGlobal, c)
}

// ScopeStateBlock returns a state block of scope's latest trusted checkpoint.
func (l *Ledger) ScopeStateBlock(ctx context.Context, scope string, c cid.Cid) ([]byte, error) {
	v, ok, err := l.blocks.get(ctx, scope, c)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("ledger: state block %s of scope %s not held here", c, scope)
	}
	return v, nil
}

// MakeCheckpoint builds a checkpoint of scope at this node's current heads,
// extending its latest trusted checkpoint, and signs it with the node's
// key. This node must be one of the admins the previous checkpoint lists
// (the genesis admin for the first): ErrCheckpointUntrusted otherwise.
// With proposal (another admin's signed checkpoint, not yet trusted), the
// checkpoint built here must be the same one (same heads, state and
// signers: ErrCheckpointMismatch otherwise, typically because the heads
// moved) and its signatures are kept. Once the signatures are a majority
// of those admins (see doc.go) the checkpoint is trusted: it is stored with
// its state blocks and trusted is true. Otherwise nothing is stored and
// the checkpoint returned is a proposal for the next admin to co-sign.
func (l *Ledger) MakeCheckpoint(ctx context.Context, scope string, proposal *Checkpoint) (ck *Checkpoint, trusted bool, err error) {
	kind, _, err := ParseScope(scope)
	if err != nil {
		return nil, false, err
	}
	if kind != KindGlobal {
		return l.makeScopeCheckpoint(ctx, scope, proposal)
	}
	chain, err := l.CheckpointChain(ctx, scope)
	if err != nil {
		return nil, false, err
	}
	prev := cid.Undef
	signers := []peer.ID{l.genesisAdmin()}
	if len(chain) > 0 {
		last := chain[len(chain)-1]
		prev, signers = last.cid, last.Signers
	}
	if !slices.Contains(signers, l.self) {
		return nil, false, fmt.Errorf("%w: this node (%s) is not one of the admins that sign the next checkpoint %v", ErrCheckpointUntrusted, l.self, signers)
	}
	l.mu.Lock()
	ck, blocks, err := l.core.Checkpoint(ctx, scope, prev)
	l.mu.Unlock()
	if err != nil {
		return nil, false, err
	}
	if len(chain) > 0 && sameCids(chain[len(chain)-1].Heads, ck.Heads) {
		return nil, false, fmt.Errorf("%w: the latest checkpoint %s is at the current heads already", ErrCheckpointExists, prev)
	}
	if proposal != nil {
		if proposal.cid != ck.cid {
			return nil, false, fmt.Errorf("%w: the proposal %s (at %d heads, %d entries) is not the checkpoint of this node's state %s (%d heads, %d entries)",
				ErrCheckpointMismatch, proposal.cid, len(proposal.Heads), proposal.Entries, ck.cid, len(ck.Heads), ck.Entries)
		}
		ck.Sigs = append(ck.Sigs, proposal.Sigs...)
	}
	if err := ck.Sign(l.o.Key); err != nil {
		return nil, false, err
	}
	if trustedSigs(ck, signers) < Quorum(len(signers)) {
		return ck, false, nil
	}
	if err := l.storeGlobalCheckpoint(ctx, scope, chain, ck, blocks); err != nil {
		return nil, false, err
	}
	l.log.Info("checkpoint made", "checkpoint", ck.cid.String(), "scope", scope, "entries", ck.Entries, "size", ck.Size, "signatures", len(ck.Sigs))
	return ck, true, nil
}

// storeGlobalCheckpoint stores ck, a checkpoint of the global scope made
// here, after chain (the stored one when it was made), under the global
// scope's checkpoint lock (see adopt): the chain must not have moved
// meanwhile.
func (l *Ledger) storeGlobalCheckpoint(ctx context.Context, scope string, chain []*Checkpoint, ck *Checkpoint, blocks [][]byte) error {
	defer l.scopeCkptLock(ScopeGlobal)()
	now, err := l.CheckpointChain(ctx, scope)
	if err != nil {
		return err
	}
	if len(now) != len(chain) {
		return fmt.Errorf("%w: the chain grew to %d checkpoints while this one was made", ErrCheckpointExists, len(now))
	}
	if _, err := VerifyCheckpointChain(l.o.Genesis, scope, append(chain, ck)); err != nil {
		return err
	}
	return l.storeCheckpoint(ctx, scope, len(chain), ck, blockMap(blocks))
}

// ErrCheckpointMismatch is returned when a proposal to co-sign is not the
// checkpoint of this node's state.
var ErrCheckpointMismatch = errors.New("ledger: checkpoint proposal does not match this node's state")

// genesisAdmin is the founding admin, from the genesis this node opened.
func (l *Ledger) genesisAdmin() peer.ID {
	g, err := DecodeEntry(l.o.Genesis)
	if err != nil {
		return ""
	}
	var gw genesisWire
	if canonicalUnmarshal(g.Payload, &gw) != nil {
		return ""
	}
	id, _ := peer.IDFromBytes(gw.Admin)
	return id
}

// ErrCheckpointExists is returned when the latest checkpoint is already at
// the current heads.
var ErrCheckpointExists = errors.New("ledger: checkpoint exists")

func sameCids(a, b []cid.Cid) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// storeCheckpoint appends a trusted checkpoint to the stored chain at index
// i and replaces the stored state blocks with its own: its blocks are
// stored first, then the chain row, and the older checkpoint's blocks are
// dropped once the row is committed (ckpt_blocks.go).
func (l *Ledger) storeCheckpoint(ctx context.Context, scope string, i int, ck *Checkpoint, blocks func(context.Context, cid.Cid) ([]byte, error)) (err error) {
	defer func() {
		if err != nil {
			l.dropUncommitted(ctx, scope)
		}
	}()
	raw, err := ck.Encode()
	if err != nil {
		return err
	}
	keep := make(map[cid.Cid]bool, len(ck.Blocks))
	// Up to 64 blocks (of up to a MiB) at a time.
	batch := make([][]byte, 0, 64)
	for _, c := range ck.Blocks {
		keep[c] = true
		blk, err := blocks(ctx, c)
		if err != nil {
			return err
		}
		if batch = append(batch, blk); len(batch) == cap(batch) {
			if err := l.blocks.put(ctx, scope, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := l.blocks.put(ctx, scope, batch); err != nil {
		return err
	}
	b, err := l.store.Batch(ctx)
	if err != nil {
		return err
	}
	if err := b.Put(chainKey(scope, i), raw); err != nil {
		return err
	}
	if err := b.Commit(ctx); err != nil {
		return err
	}
	l.dropOlderBlocks(ctx, scope, keep)
	return nil
}

// dropUncommitted deletes scope's state blocks that its stored chain's
// latest checkpoint does not name: those a checkpoint that failed before
// its row committed (a full disk, a bad block) had stored. The scope's
// checkpoint lock is held, so no other store is between its blocks and
// its row.
func (l *Ledger) dropUncommitted(ctx context.Context, scope string) {
	keep, err := latestBlocks(ctx, l.store, scope)
	if err != nil {
		l.log.Warn("drop a failed checkpoint's state blocks", "scope", scope, "err", err)
		return
	}
	l.dropOlderBlocks(ctx, scope, keep)
}

// dropOlderBlocks deletes scope's state blocks not in keep, those of the
// checkpoint the one just committed replaced. A failure leaves them on
// disk (the next checkpoint, or Open, drops them) and is logged: the
// checkpoint itself is stored.
func (l *Ledger) dropOlderBlocks(ctx context.Context, scope string, keep map[cid.Cid]bool) {
	if err := l.blocks.retain(ctx, scope, keep); err != nil {
		l.log.Warn("drop an older checkpoint's state blocks", "scope", scope, "err", err)
	}
}

// JoinFromCheckpoint makes this node's state the state of the last
// checkpoint of chain, without replaying the entries behind it: the chain
// must be trusted from the genesis (VerifyCheckpointChain); blocks fetches
// each state block, which is checked against its CID and stored; the state
// must hash to the checkpoint's digest, list its admins as signers, and
// include every entry this node has (ErrCheckpointCoverage otherwise:
// sync entries instead). Then the entries after the checkpoint come by
// sync as usual.
func (l *Ledger) JoinFromCheckpoint(ctx context.Context, chain []*Checkpoint, blocks func(context.Context, cid.Cid) ([]byte, error)) error {
	if err := l.adopt(ctx, chain, blocks, true); err != nil {
		return err
	}
	l.retryPending(ctx)
	return nil
}

// retryPending ingests again the entries waiting for parents that a
// checkpoint just loaded made known. Pending entries are released when a
// parent applies; one loaded from a checkpoint never does, so a gossiped
// entry that arrived while the node was joining waited for ever, and the
// node reported itself behind (TestJoinFromCheckpointCLI, now and then).
func (l *Ledger) retryPending(ctx context.Context) {
	l.mu.Lock()
	var es []*Entry
	if l.core.ready(ctx) == nil {
		for _, m := range l.core.pend.missing() {
			if ok, err := l.core.Has(ctx, m); err == nil && ok {
				es = append(es, l.core.pend.release(m)...)
			}
		}
	}
	l.mu.Unlock()
	if len(es) == 0 {
		return
	}
	if _, err := l.ingest(ctx, es); err != nil {
		l.log.Warn("entries waiting for a checkpoint's entries", "entries", len(es), "err", err)
	}
}

// AdoptCheckpoint stores a trusted chain that extends this node's, with
// its last checkpoint's state blocks (fetched, checked as
// JoinFromCheckpoint does), without loading that state: a node that has
// the entries keeps its own state, and can then serve the checkpoint to
// joiners and prune up to it.
func (l *Ledger) AdoptCheckpoint(ctx context.Context, chain []*Checkpoint, blocks func(context.Context, cid.Cid) ([]byte, error)) error {
	return l.adopt(ctx, chain, blocks, false)
}

func (l *Ledger) adopt(ctx context.Context, chain []*Checkpoint, blocks func(context.Context, cid.Cid) ([]byte, error), load bool) (err error) {
	if len(chain) == 0 {
		return fmt.Errorf("%w: no checkpoint", ErrCheckpointUntrusted)
	}
	if kind, _, err := ParseScope(chain[0].Scope); err != nil {
		return err
	} else if kind != KindGlobal {
		// An owner's or audit scope's checkpoint is trusted on its own.
		defer l.scopeCkptLock(chain[0].Scope)()
		return l.adoptScope(ctx, chain[len(chain)-1], blocks, load)
	}
	// One global adoption or store at a time: each drops the state
	// blocks the chain it committed does not name (dropOlderBlocks),
	// which would include blocks another had stored and not committed.
	defer l.scopeCkptLock(ScopeGlobal)()
	ck, err := VerifyCheckpointChain(l.o.Genesis, chain[0].Scope, chain)
	if err != nil {
		return err
	}
	scope := ck.Scope
	defer func() {
		if err != nil {
			l.dropUncommitted(ctx, scope)
		}
	}()
	old, err := loadChain(ctx, l.store, scope)
	if err != nil {
		return err
	}
	if !load {
		if len(old) >= len(chain) {
			return fmt.Errorf("%w: this node's chain is as long already", ErrCheckpointExists)
		}
		for i := range old {
			if old[i].cid != chain[i].cid {
				return fmt.Errorf("%w: checkpoint %s differs from this node's %s at index %d", ErrCheckpointUntrusted, chain[i].cid, old[i].cid, i)
			}
		}
	}
	// Fetch, check and store the blocks first: each is checked as it
	// arrives, the whole once all are in; the state is then loaded from
	// the store, and served to the next joiner.
	have, x, err := l.fetchChecked(ctx, ck, blocks, load)
	if err != nil {
		return err
	}
	local := func(ctx context.Context, c cid.Cid) ([]byte, error) { return l.StateBlock(ctx, c) }
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.core.ready(ctx); err != nil {
		return err
	}
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
	// The chain, the base marker, the old blocks; the loading marker last.
	b, err := l.store.Batch(ctx)
	if err != nil {
		return err
	}
	for i := range old {
		if err := b.Delete(chainKey(scope, i)); err != nil {
			return err
		}
	}
	for i, c := range chain {
		raw, err := c.Encode()
		if err != nil {
			return err
		}
		if err := b.Put(chainKey(scope, i), raw); err != nil {
			return err
		}
	}
	if err := l.commitAdoption(ctx, b, scope, have, ck, load); err != nil {
		return err
	}
	if !load {
		l.log.Info("checkpoint adopted", "checkpoint", ck.cid.String(), "scope", scope, "entries", ck.Entries, "size", ck.Size)
		return nil
	}
	if err := l.reloadMembers(ctx); err != nil {
		return err
	}
	if l.core.scoped {
		// The membership changed: follow the replica groups it puts this
		// node in, and catch up their scopes (by sync).
		l.followChanged()
	}
	l.met.heads.Set(float64(len(l.core.heads)))
	l.log.Info("joined from checkpoint", "checkpoint", ck.cid.String(), "scope", scope, "entries", ck.Entries, "size", ck.Size)
	l.notifyStateLoaded(scope)
	return nil
}

// fetchChecked fetches through blocks the state blocks of ck this node
// does not store yet, reads the others from the store, checks each one in
// order as it comes (stateChecker.block: its CID, rows, scope) and stores
// the fetched ones. It returns the set of ck's blocks and the checker,
// for the caller to finish under the core's lock; with coverage the
// checker tracks this node's heads of the scope.
func (l *Ledger) fetchChecked(ctx context.Context, ck *Checkpoint, blocks func(context.Context, cid.Cid) ([]byte, error), coverage bool) (map[cid.Cid]bool, *stateChecker, error) {
	l.mu.Lock()
	x, err := l.core.newStateChecker(ck)
	if err == nil && coverage {
		x.track(l.core.ScopeHeads(ck.Scope))
	}
	l.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	fetched := make([][]byte, 0, 64)
	have := map[cid.Cid]bool{}
	for _, bc := range ck.Blocks {
		have[bc] = true
		b, ok, err := l.blocks.get(ctx, ck.Scope, bc)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			if b, err = blocks(ctx, bc); err != nil {
				return nil, nil, fmt.Errorf("ledger: fetch state block %s of checkpoint %s: %w", bc, ck.cid, err)
			}
		}
		if err := x.block(bc, b); err != nil {
			return nil, nil, err
		}
		if ok {
			continue
		}
		fetched = append(fetched, b)
		if len(fetched) == cap(fetched) {
			if err := l.blocks.put(ctx, ck.Scope, fetched); err != nil {
				return nil, nil, err
			}
			fetched = fetched[:0]
		}
	}
	return have, x, l.blocks.put(ctx, ck.Scope, fetched)
}

func (l *Ledger) putMarker(ctx context.Context, k string, c cid.Cid) error {
	b, err := l.store.Batch(ctx)
	if err != nil {
		return err
	}
	if err := b.Put(k, c.Bytes()); err != nil {
		return err
	}
	return b.Commit(ctx)
}

// checkInterruptedLoad fails if a checkpoint load was interrupted: the
// state is then partly the old one's, partly the checkpoint's.
func checkInterruptedLoad(ctx context.Context, s Store) error {
	var found []string
	err := s.Scan(ctx, pCkptLoading, true, func(k string, _ []byte) bool {
		found = append(found, k[len(pCkptLoading):])
		return true
	})
	if err != nil {
		return err
	}
	if len(found) > 0 {
		return fmt.Errorf("ledger: loading a checkpoint of scope %s was interrupted, the ledger state is incomplete: remove the repo's datastore and join again", found[0])
	}
	return nil
}

// CheckpointStat is what `ledger stat` reports about checkpoints.
type CheckpointStat struct {
	// Latest is the latest trusted checkpoint of the global scope (nil if none).
	Latest *Checkpoint
	// Base is the checkpoint this node joined from (cid.Undef if it replayed everything).
	Base cid.Cid
	// Count is the trusted chain's length.
	Count int
}

// CheckpointStat describes the global scope's checkpoints on this node.
func (l *Ledger) CheckpointStat(ctx context.Context) (CheckpointStat, error) {
	chain, err := l.CheckpointChain(ctx, ScopeGlobal)
	if err != nil {
		return CheckpointStat{}, err
	}
	st := CheckpointStat{Count: len(chain)}
	if len(chain) > 0 {
		st.Latest = chain[len(chain)-1]
	}
	st.Base, err = l.marker(ctx, pCkptBase+ScopeGlobal)
	return st, err
}

// Time returns the checkpoint's clock as a time (its newest head's wall clock).
func (ck *Checkpoint) Time() time.Time { return time.UnixMilli(int64(ck.Clock.Wall)).UTC() }

// SignerStrings returns the signers of the checkpoint's signatures.
func (ck *Checkpoint) SignerStrings() []string {
	out := []string{}
	for _, s := range ck.Sigs {
		out = append(out, s.Signer.String())
	}
	return out
}

// commitAdoption ends the adoption of checkpoint ck of scope in batch b,
// which holds its chain rows: for a loaded checkpoint it sets the base
// marker and clears the loading marker, commits, then drops the older
// state blocks (those not in have). The global and the scope adoptions
// share it.
func (l *Ledger) commitAdoption(ctx context.Context, b Batch, scope string, have map[cid.Cid]bool, ck *Checkpoint, load bool) error {
	if load {
		if err := b.Put(pCkptBase+scope, ck.cid.Bytes()); err != nil {
			return err
		}
		if err := b.Delete(pCkptLoading + scope); err != nil {
			return err
		}
	}
	if err := b.Commit(ctx); err != nil {
		return err
	}
	l.dropOlderBlocks(ctx, scope, have)
	return nil
}
