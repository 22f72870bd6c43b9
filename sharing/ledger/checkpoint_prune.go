package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/fxamacker/cbor/v2"

	"github.com/ipfs/go-cid"
)

// Pruning drops the bodies of entries a trusted checkpoint covers, with
// their rows in the logs (/l/, /t/). Their metadata (/e/), the indexes and
// the view stay: they are the checkpoint's state, what later entries are
// judged against. What is kept:
//
//   - entries of types whose bodies a node reads back (the genesis,
//     membership, keys, network keys, every extension type: research
//     consents, implant custody, ...): only the high-volume types whose
//     effect lives entirely in the view are pruned (prunable);
//   - every entry about a record this node owns: the owner keeps its
//     records' audit history (claims, attestations, grants, revokes,
//     receipts), which it may have to show an auditor;
//   - the reads (claims and attestations) of the records of an owner
//     whose replica group this node is in: the group keeps the owner's
//     audit alive if the owner's disk fails. A restored owner gets back
//     its audit log's order from its backup and the entries after it from
//     the group (node/repo: the backup's audit log); a pruned group would
//     have left holes in it.
//
// A pruned node cannot answer a sync for entries before the checkpoint; it
// answers "pruned" and the peer joins from the checkpoint instead.
func prunable(typ string) bool {
	switch typ {
	case TypeAccess, TypeServed, TypeReceipt, TypeAssign, TypeGrant, TypeRevoke, TypeRecordAnnounce:
		return true
	}
	return false
}

// entryDeleter is a Store that can drop entry bodies (MemStore,
// DatastoreStore).
type entryDeleter interface {
	DeleteEntries(ctx context.Context, cs []cid.Cid) error
}

// PruneStats says what Prune did.
type PruneStats struct {
	// Checkpoint is the global scope's checkpoint pruned up to (cid.Undef
	// if there is none).
	Checkpoint cid.Cid
	// Examined counts the entries in their past that still had bodies.
	Examined int
	// Pruned counts the bodies dropped; Kept those kept (see above).
	Pruned int
	Kept   int
	// Size is the bytes of entry bodies dropped.
	Size int64
	// Scopes says what was pruned under each scope's checkpoint, the
	// global scope first.
	Scopes []ScopePruneStats
}

// ScopePruneStats is what Prune did under one scope's latest checkpoint.
type ScopePruneStats struct {
	Scope      string
	Checkpoint cid.Cid
	Examined   int
	Pruned     int
	Kept       int
	Size       int64
}

// Prune drops, under the latest trusted checkpoint of each scope this node
// holds one of (the global scope's, and in a scoped network each owner or
// audit scope's), the entries of that scope it covers that this node does
// not need (see prunable). It is idempotent. ErrNoCheckpoint if there is
// none.
func (l *Ledger) Prune(ctx context.Context) (PruneStats, error) {
	l.pruneMu.Lock()
	defer l.pruneMu.Unlock()
	scopes, err := l.checkpointScopes(ctx)
	if err != nil {
		return PruneStats{}, err
	}
	if len(scopes) == 0 {
		return PruneStats{}, ErrNoCheckpoint
	}
	var st PruneStats
	for _, s := range scopes {
		ss, err := l.pruneScope(ctx, s)
		if err != nil {
			return st, err
		}
		if s == ScopeGlobal {
			st.Checkpoint = ss.Checkpoint
		}
		st.Examined += ss.Examined
		st.Pruned += ss.Pruned
		st.Kept += ss.Kept
		st.Size += ss.Size
		st.Scopes = append(st.Scopes, ss)
	}
	return st, nil
}

// checkpointScopes returns the scopes this node holds trusted checkpoints
// of, the global scope first.
func (l *Ledger) checkpointScopes(ctx context.Context) ([]string, error) {
	set := map[string]bool{}
	err := l.store.Scan(ctx, pCkptChain, true, func(k string, _ []byte) bool {
		rest := k[len(pCkptChain):]
		if i := strings.LastIndexByte(rest, '/'); i > 0 {
			set[rest[:i]] = true
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: read checkpoints: %w", err)
	}
	var out []string
	for s := range set {
		if s != ScopeGlobal {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	if set[ScopeGlobal] {
		out = append([]string{ScopeGlobal}, out...)
	}
	return out, nil
}

// pruneScope prunes the entries of scope that its latest trusted
// checkpoint covers.
func (l *Ledger) pruneScope(ctx context.Context, scope string) (ScopePruneStats, error) {
	del, ok := l.store.(entryDeleter)
	if !ok {
		return ScopePruneStats{}, errors.New("ledger: this store cannot drop entries")
	}
	chain, err := l.CheckpointChain(ctx, scope)
	if err != nil {
		return ScopePruneStats{}, err
	}
	if len(chain) == 0 {
		return ScopePruneStats{}, ErrNoCheckpoint
	}
	ck := chain[len(chain)-1]
	st := ScopePruneStats{Scope: scope, Checkpoint: ck.cid}
	ws := wireScope(scope)
	// The walk of the checkpoint's past is as long as the history: on a
	// DAG of its own, without the ledger's lock (storeDag).
	d := l.storeDag()
	past, err := d.difference(ctx, ck.Heads, nil, 0)
	if err == nil && l.core.scoped {
		// The checkpoint's heads' past reaches the scopes it depends on:
		// keep to the scope's own entries.
		mine := past[:0]
		for _, c := range past {
			n, gerr := d.get(ctx, c)
			if gerr != nil {
				err = gerr
				break
			}
			if n != nil && n.scope == ws {
				mine = append(mine, c)
			}
		}
		past = mine
	}
	if err != nil {
		return st, err
	}
	state := l.State()
	// Reads a payload's record field, ignoring its other fields.
	lax, err := cbor.DecOptions{MaxNestedLevels: 16}.DecMode()
	if err != nil {
		return st, err
	}
	const batch = 2000
	for len(past) > 0 {
		n := min(len(past), batch)
		var drop []cid.Cid
		var rows []string
		var size int64
		for _, c := range past[:n] {
			raw, err := l.store.GetEntry(ctx, c)
			if err != nil {
				continue // pruned already, or never held (joined from a checkpoint)
			}
			st.Examined++
			e, err := DecodeEntry(raw)
			if err != nil {
				return st, fmt.Errorf("ledger: prune: stored entry %s: %w", c, err)
			}
			keep, err := l.keepEntry(ctx, lax, state, e)
			if err != nil {
				return st, err
			}
			if keep {
				st.Kept++
				continue
			}
			drop = append(drop, c)
			size += int64(len(raw))
			ck := revClockKey(e.Clock, e.cs)
			rows = append(rows, pLog+ck, pType+e.Type+"/"+ck)
		}
		past = past[n:]
		if len(drop) == 0 {
			continue
		}
		if err := l.dropEntries(ctx, del, ws, drop, rows, size); err != nil {
			return st, err
		}
		st.Pruned += len(drop)
		st.Size += size
	}
	if err := l.putMarker(ctx, pCkptPruned+scope, ck.cid); err != nil {
		return st, err
	}
	l.log.Info("pruned", "scope", scope, "checkpoint", ck.cid.String(), "pruned", st.Pruned, "kept", st.Kept, "size", st.Size)
	return st, nil
}

// pruneAfter prunes scope in the background after this node stored a
// newer checkpoint of it, with Options.PruneAfterCheckpoint: a busy
// owner's replica group and grantees then keep what came after the
// latest checkpoint (and what Prune always keeps), not the scope's whole
// history. A peer that asks this node for older entries is told to load
// the checkpoint, or to catch up from the owner, which keeps them. The
// scopes of this node's own records are left alone (Prune would keep all
// of them).
func (l *Ledger) pruneAfter(scope string) {
	if !l.o.PruneAfterCheckpoint {
		return
	}
	if kind, owner, err := ParseScope(scope); err != nil || kind == KindGlobal || owner == l.self {
		return
	}
	l.goBackground(func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-l.closed:
				cancel()
			case <-ctx.Done():
			}
		}()
		l.pruneMu.Lock()
		defer l.pruneMu.Unlock()
		if _, err := l.pruneScope(ctx, scope); err != nil && ctx.Err() == nil {
			l.log.Warn("prune after a checkpoint", "scope", scope, "err", err)
		}
	})
}

// dropEntries deletes entries' log rows and bodies, and takes them off the
// stored counters (ledger stat), under the core's lock: the counters are
// written with each batch of applied entries.
func (l *Ledger) dropEntries(ctx context.Context, del entryDeleter, ws string, drop []cid.Cid, rows []string, size int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.core
	b, err := l.store.Batch(ctx)
	if err != nil {
		return err
	}
	for _, k := range rows {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	after := Stored{Entries: max(c.stored.Entries-int64(len(drop)), 0), Bytes: max(c.stored.Bytes-size, 0)}
	if err := b.Put(storedKey, encStored(after)); err != nil {
		return err
	}
	sc := c.scopeStored[ws]
	sc = Stored{Entries: max(sc.Entries-int64(len(drop)), 0), Bytes: max(sc.Bytes-size, 0)}
	if err := b.Put(storedScopeKey(ws), encStored(sc)); err != nil {
		return err
	}
	if err := b.Commit(ctx); err != nil {
		return err
	}
	c.stored = after
	c.scopeStored[ws] = sc
	// The bodies go after the rows: an entry listed in the log can always
	// be read back.
	return del.DeleteEntries(ctx, drop)
}

// ErrNoCheckpoint is returned by Prune when there is no trusted checkpoint.
var ErrNoCheckpoint = errors.New("ledger: no trusted checkpoint")

// keepEntry reports whether this node keeps e's body when pruning.
func (l *Ledger) keepEntry(ctx context.Context, lax cbor.DecMode, st State, e *Entry) (bool, error) {
	if !prunable(e.Type) {
		return true, nil
	}
	rec, err := entryRecord(lax, e)
	if err != nil {
		return false, fmt.Errorf("ledger: prune: entry %s: %w", e.cid, err)
	}
	if e.Type == TypeRecordAnnounce && e.Author == l.self {
		return true, nil
	}
	info, ok, err := st.Record(ctx, rec)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, nil
	}
	if info.Owner == l.self {
		return true, nil
	}
	if e.Type == TypeAccess || e.Type == TypeServed {
		return slices.Contains(l.groupOf(info.Owner), l.self), nil
	}
	return false, nil
}

// entryRecord returns the record a prunable entry is about.
func entryRecord(lax cbor.DecMode, e *Entry) (cid.Cid, error) {
	var w struct {
		Record []byte `cbor:"1,keyasint"`
	}
	// Every prunable type's payload has the record under key 1; the other
	// keys are ignored here (the entry was validated when applied).
	if err := lax.Unmarshal(e.Payload, &w); err != nil {
		return cid.Undef, err
	}
	return cid.Cast(w.Record)
}

// DeleteEntries drops entries' bodies (pruning).
func (m *MemStore) DeleteEntries(_ context.Context, cs []cid.Cid) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range cs {
		delete(m.entries, c)
	}
	return nil
}

// DeleteEntries drops entries' blocks (pruning).
func (s *DatastoreStore) DeleteEntries(ctx context.Context, cs []cid.Cid) error {
	for _, c := range cs {
		if err := s.blocks.DeleteBlock(ctx, c); err != nil {
			return fmt.Errorf("ledger: prune entry %s: %w", c, err)
		}
	}
	return nil
}
