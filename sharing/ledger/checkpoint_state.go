package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// A checkpoint's state is the scope's rows (key, value) in key order, cut
// into blocks of at most MaxStateBlockSize bytes. A block is the rows
// concatenated, each as uvarint(len key) key uvarint(len value) value; its
// CID is raw sha2-256, so every block a joiner fetches is checked against
// the signed header before it is read.
//
// The rows are the scope's (ckptRows): the entries' metadata (/e/), the
// indexes (/i/) and the view (/s/): everything the core reads to judge a later entry at its causal
// position, so a node that starts from a checkpoint gives every entry the
// verdict a node that replayed all of them gives, stragglers concurrent
// with the checkpoint included. The entries' bodies and the logs (/l/,
// /t/) are not part of it: that is what pruning drops.

// ckptRows says which rows of a store are a scope's state, the rows its
// checkpoint carries. In a network without scopes, the global scope's are
// every row (all). In a scoped network, the global scope's are what every
// node holds alike whatever else it follows: the metadata of global
// entries (/e/ rows whose meta has no scope), the indexes global entries
// write (members, keys, organisations) and the view they write
// (globalStatePrefixes: members, keys, the network's genesis row, global
// extension types). No scoped entry writes those, and no global entry
// writes anything else, so the export is the same on two nodes in the same
// global state that follow different owner scopes.
type ckptRows struct {
	scope string // wire scope
	all   bool
	// kind and owner are the scope's (checkpoint_scope.go).
	kind  ScopeKind
	owner peer.ID
	// idx and state are the /i/ and /s/ prefixes, ascending.
	idx, state []string
}

// globalIdxPrefixes returns the index prefixes global entries write,
// ascending: keys (/i/k/), members (/i/m/), organisations (/i/o/).
func globalIdxPrefixes() []string { return []string{pIdx + "k/", pIdx + "m/", pIdx + "o/"} }

// ckptRows returns which rows make scope's checkpoint on this core.
func (c *Core) ckptRows(scope string) (*ckptRows, error) {
	kind, owner, err := ParseScope(scope)
	if err != nil {
		return nil, err
	}
	if kind == KindGlobal {
		if !c.scoped {
			return &ckptRows{all: true}, nil
		}
		return &ckptRows{scope: "", idx: globalIdxPrefixes(), state: c.globalStatePrefixes()}, nil
	}
	if !c.scoped {
		return nil, fmt.Errorf("ledger: scope %s: this network has no scopes (its checkpoints are of %q)", scope, ScopeGlobal)
	}
	idx, state := c.scopedRowPrefixes(kind)
	return &ckptRows{scope: wireScope(scope), kind: kind, owner: owner, idx: idx, state: state}, nil
}

// prefixes returns what to scan for the scope's rows, ascending and
// disjoint, so rows scanned one after the other are in key order: a
// prefix ends with "/", anything else is one key (scanRows).
func (r *ckptRows) prefixes() []string {
	if r.all {
		return []string{pMeta, pIdx, pState}
	}
	out := append([]string{pMeta}, r.idx...)
	return append(out, r.state...)
}

// key reports whether key k (with value v) is one of the scope's rows: under
// one of its prefixes and, for an entry's metadata, an entry of the scope.
func (r *ckptRows) key(k string, v []byte) (bool, error) {
	if r.prefixOf(k) == "" {
		return false, nil
	}
	if r.all || !strings.HasPrefix(k, pMeta) {
		return true, nil
	}
	var m meta
	if err := decMode.Unmarshal(v, &m); err != nil {
		return false, corrupt(k, err)
	}
	return m.Scope == r.scope, nil
}

// prefixOf returns the prefix (or key) of r that k is under, "" if none.
func (r *ckptRows) prefixOf(k string) string {
	for _, p := range r.prefixes() {
		if k == p || strings.HasSuffix(p, "/") && strings.HasPrefix(k, p) {
			return p
		}
	}
	return ""
}

// scanRows calls fn with the rows under p (a prefix, ending with "/"), or
// with the one row of key p if it exists.
func scanRows(ctx context.Context, s Store, p string, keysOnly bool, fn func(string, []byte) bool) error {
	if strings.HasSuffix(p, "/") {
		return s.Scan(ctx, p, keysOnly, fn)
	}
	v, ok, err := s.Get(ctx, p)
	if err != nil || !ok {
		return err
	}
	fn(p, v)
	return nil
}

// stateHasher computes State.Digest over rows fed in key order.
type stateHasher struct{ h hash.Hash }

func newStateHasher() *stateHasher { return &stateHasher{sha256.New()} }

func (s *stateHasher) add(k string, v []byte) {
	var lb [8]byte
	binary.BigEndian.PutUint64(lb[:], uint64(len(k)))
	s.h.Write(lb[:])
	s.h.Write([]byte(k))
	binary.BigEndian.PutUint64(lb[:], uint64(len(v)))
	s.h.Write(lb[:])
	s.h.Write(v)
}

func (s *stateHasher) sum() []byte { return s.h.Sum(nil) }

// appendRow appends one row in the block format.
func appendRow(b []byte, k string, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(k)))
	b = append(b, k...)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// eachRow calls fn with every row of a state block; it never panics on
// input and reports a malformed block as an error.
func eachRow(b []byte, fn func(k string, v []byte) error) error {
	for len(b) > 0 {
		kl, n := binary.Uvarint(b)
		if n <= 0 || kl > uint64(len(b)-n) {
			return errors.New("truncated key")
		}
		b = b[n:]
		k := string(b[:kl])
		b = b[kl:]
		vl, n := binary.Uvarint(b)
		if n <= 0 || vl > uint64(len(b)-n) {
			return errors.New("truncated value")
		}
		b = b[n:]
		v := b[:vl:vl]
		b = b[vl:]
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// checkpointDraft is what exporting a scope's state yields: a checkpoint
// header without Prev and signatures, and its blocks.
type checkpointDraft struct {
	ck     *Checkpoint
	blocks [][]byte
}

// exportCheckpoint cuts the scope's committed state at the current heads
// into blocks and fills in the header (heads, clock, entries, digest,
// blocks, the admins as signers). The caller must keep the core from
// committing meanwhile (Ledger holds its lock). emit, if not nil, receives
// each block as it is cut (and the draft then keeps none).
func (c *Core) exportCheckpoint(ctx context.Context, scope string, emit func(cid.Cid, []byte) error) (*checkpointDraft, error) {
	if err := c.ready(ctx); err != nil {
		return nil, err
	}
	rows, err := c.ckptRows(scope)
	if err != nil {
		return nil, err
	}
	// The scope's heads: in a network without scopes, every head.
	ck := &Checkpoint{Network: c.net, Scope: scope, Heads: c.ScopeHeads(scope)}
	for _, h := range ck.Heads {
		if ck.Clock.Less(c.heads[h]) {
			ck.Clock = c.heads[h]
		}
	}
	d := &checkpointDraft{ck: ck}
	hs := newStateHasher()
	var cur []byte
	var ferr error
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		bc := blockCID(cur)
		ck.Blocks = append(ck.Blocks, bc)
		ck.Size += uint64(len(cur))
		if emit != nil {
			if err := emit(bc, cur); err != nil {
				return err
			}
		} else {
			d.blocks = append(d.blocks, cur)
		}
		cur = nil
		return nil
	}
	for _, p := range rows.prefixes() {
		err := scanRows(ctx, c.store, p, false, func(k string, v []byte) bool {
			if p == pMeta && !rows.all {
				in, err := rows.key(k, v)
				if err != nil || !in {
					ferr = err
					return err == nil
				}
			}
			row := appendRow(nil, k, v)
			if len(row) > MaxStateBlockSize {
				ferr = fmt.Errorf("ledger: state row %s is %d bytes, more than a block", k, len(row))
				return false
			}
			if len(cur)+len(row) > MaxStateBlockSize {
				if ferr = flush(); ferr != nil {
					return false
				}
			}
			if cur == nil {
				cur = make([]byte, 0, MaxStateBlockSize)
			}
			cur = append(cur, row...)
			switch {
			case p == pMeta:
				ck.Entries++
			case strings.HasPrefix(p, pState):
				hs.add(k, v)
				if rows.kind == KindGlobal && strings.HasPrefix(k, pState+"m/") {
					var mi memberIdx
					if err := decMode.Unmarshal(v, &mi); err != nil {
						ferr = corrupt(k, err)
						return false
					}
					if slices.Contains(mi.Roles, RoleAdmin) {
						id, err := peer.Decode(lastSeg(k))
						if err != nil {
							ferr = corrupt(k, err)
							return false
						}
						ck.Signers = append(ck.Signers, id)
					}
				}
			}
			return true
		})
		if err := errors.Join(err, ferr); err != nil {
			return nil, fmt.Errorf("ledger: export %s state: %w", scope, err)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	ck.Digest = hs.sum()
	if rows.kind != KindGlobal {
		// Signed by the owner's replica group at the global heads it
		// depends on (checkpoint_scope.go).
		for h, s := range c.hscope {
			if s != rows.scope && inClosure(rows.scope, s) {
				ck.Deps = append(ck.Deps, h)
			}
		}
		if ck.Signers, err = c.scopeSigners(ctx, rows.scope, rows.owner, ck.Deps); err != nil {
			return nil, err
		}
		if len(ck.Heads) == 0 {
			return nil, fmt.Errorf("ledger: this node holds no entry of scope %s", scope)
		}
	}
	if len(ck.Signers) == 0 {
		return nil, errors.New("ledger: the state has no admin to sign checkpoints")
	}
	return d, ck.seal()
}

// verifyCheckpointState reads every state block of ck (through get, which
// returns the bytes stored under a block's CID) and checks, without
// writing anything: each block matches its CID and parses; rows are in
// strictly ascending key order and of the scope; the entries count; every
// head is an entry of the state; the view hashes to ck.Digest; the signers
// are exactly the state's admins (a scope's: checkpoint_scope.go); and,
// with coverage, this core's heads are all entries of the state (the
// checkpoint covers what this node has).
func (c *Core) verifyCheckpointState(ctx context.Context, ck *Checkpoint, get func(context.Context, cid.Cid) ([]byte, error), coverage bool) error {
	x, err := c.newStateChecker(ck)
	if err != nil {
		return err
	}
	x.track(c.ScopeHeads(ck.Scope))
	for _, bc := range ck.Blocks {
		b, err := get(ctx, bc)
		if err != nil {
			return fmt.Errorf("ledger: checkpoint %s: read state block %s: %w", ck.cid, bc, err)
		}
		if err := x.block(bc, b); err != nil {
			return err
		}
	}
	return x.finish(ctx, coverage)
}

// stateChecker verifies a checkpoint's state block by block, as the
// blocks arrive (block needs nothing of the core but its types), then as a
// whole (finish, under the core's lock): a joiner checks each block while
// it fetches it, and reads the stored blocks once more only to load them.
type stateChecker struct {
	c       *Core
	ck      *Checkpoint
	rows    *ckptRows
	sc      *scopeRowCheck
	heads   map[string]bool
	ours    map[string]bool // this core's heads of the scope (track), found or not
	hs      *stateHasher
	entries uint64
	size    uint64
	admins  []peer.ID
	last    string
	next    int // index in ck.Blocks of the next block
}

func (c *Core) newStateChecker(ck *Checkpoint) (*stateChecker, error) {
	rows, err := c.ckptRows(ck.Scope)
	if err != nil {
		return nil, err
	}
	if ck.Network != c.net {
		return nil, fmt.Errorf("%w: checkpoint %s is of network %s, not %s", ErrCheckpointState, ck.cid, ck.Network, c.net)
	}
	x := &stateChecker{c: c, ck: ck, rows: rows, heads: map[string]bool{}, hs: newStateHasher()}
	for _, h := range ck.Heads {
		x.heads[pMeta+h.String()] = false
	}
	if rows.kind != KindGlobal {
		x.sc = newScopeRowCheck(c, rows)
	}
	return x, nil
}

// track notes this core's heads of the scope before the blocks are
// checked: finish's coverage check needs each to be an entry of the state.
func (x *stateChecker) track(heads []cid.Cid) {
	x.ours = make(map[string]bool, len(heads))
	for _, h := range heads {
		x.ours[pMeta+h.String()] = false
	}
}

// covered reports whether the metadata row k was among the state's (k one
// of the tracked heads).
func (x *stateChecker) covered(k string) bool { return x.ours[k] }

// block checks the next block of the checkpoint, in order.
func (x *stateChecker) block(bc cid.Cid, b []byte) error {
	ck := x.ck
	if x.next >= len(ck.Blocks) || ck.Blocks[x.next] != bc {
		return fmt.Errorf("%w: checkpoint %s: block %s out of order", ErrCheckpointState, ck.cid, bc)
	}
	x.next++
	if blockCID(b) != bc {
		return fmt.Errorf("%w: state block %s does not hash to its CID (checkpoint %s)", ErrCheckpointState, bc, ck.cid)
	}
	x.size += uint64(len(b))
	err := eachRow(b, func(k string, v []byte) error {
		if k <= x.last {
			return fmt.Errorf("key %q out of order", k)
		}
		x.last = k
		var m *meta
		if strings.HasPrefix(k, pMeta) && !x.rows.all {
			m = new(meta)
			if err := decMode.Unmarshal(v, m); err != nil {
				return fmt.Errorf("entry row %q: %v", k, err)
			}
		}
		if x.rows.prefixOf(k) == "" || m != nil && m.Scope != x.rows.scope {
			return fmt.Errorf("key %q is not part of scope %s", k, ck.Scope)
		}
		if x.sc != nil {
			if err := x.sc.row(k, m); err != nil {
				return err
			}
		}
		switch {
		case strings.HasPrefix(k, pMeta):
			x.entries++
			if _, ok := x.heads[k]; ok {
				x.heads[k] = true
			}
			if _, ok := x.ours[k]; ok {
				x.ours[k] = true
			}
		case strings.HasPrefix(k, pState):
			x.hs.add(k, v)
			if x.rows.kind == KindGlobal && strings.HasPrefix(k, pState+"m/") {
				var mi memberIdx
				if err := decMode.Unmarshal(v, &mi); err != nil {
					return fmt.Errorf("member row %q: %v", k, err)
				}
				if slices.Contains(mi.Roles, RoleAdmin) {
					id, err := peer.Decode(lastSeg(k))
					if err != nil {
						return fmt.Errorf("member row %q: %v", k, err)
					}
					x.admins = append(x.admins, id)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: state block %s of checkpoint %s: %v", ErrCheckpointState, bc, ck.cid, err)
	}
	return nil
}

// finish checks what needs every block, and this core (its lock held).
func (x *stateChecker) finish(ctx context.Context, coverage bool) error {
	ck, c := x.ck, x.c
	if x.next != len(ck.Blocks) {
		return fmt.Errorf("%w: checkpoint %s: %d of its %d blocks checked", ErrCheckpointState, ck.cid, x.next, len(ck.Blocks))
	}
	if x.size != ck.Size {
		return fmt.Errorf("%w: checkpoint %s: state is %d bytes, the header says %d", ErrCheckpointState, ck.cid, x.size, ck.Size)
	}
	if x.entries != ck.Entries {
		return fmt.Errorf("%w: checkpoint %s: state holds %d entries, the header says %d", ErrCheckpointState, ck.cid, x.entries, ck.Entries)
	}
	for k, found := range x.heads {
		if !found {
			return fmt.Errorf("%w: checkpoint %s: head %s is not an entry of its state", ErrCheckpointState, ck.cid, k[len(pMeta):])
		}
	}
	if d := x.hs.sum(); !bytes.Equal(d, ck.Digest) {
		return fmt.Errorf("%w: checkpoint %s: its state hashes to digest %x, the header says %x", ErrCheckpointState, ck.cid, d, ck.Digest)
	}
	ours := c.ScopeHeads(ck.Scope)
	if x.sc != nil {
		if coverage && len(ours) > 0 {
			return fmt.Errorf("%w: this node holds entries of scope %s already: it syncs the ones it lacks instead of loading checkpoint %s", ErrCheckpointCoverage, ck.Scope, ck.cid)
		}
		// The signers (the owner's replica group) are checked against the
		// membership by verifyScopeSigners; here, that every row is about
		// the scope's own records and entries.
		if err := x.sc.done(ctx, coverage); err != nil {
			return fmt.Errorf("%w: checkpoint %s: %v", ErrCheckpointState, ck.cid, err)
		}
		return nil
	}
	slices.Sort(x.admins)
	if !slices.Equal(x.admins, ck.Signers) {
		return fmt.Errorf("%w: checkpoint %s: its signers %v are not the admins of its state %v", ErrCheckpointState, ck.cid, ck.Signers, x.admins)
	}
	if coverage {
		// This node's heads must be entries of the state: each has a row
		// there, and the rows were checked above; look them up in the
		// blocks' keys through the heads' metadata rows.
		for _, h := range ours {
			if !x.covered(pMeta + h.String()) {
				return fmt.Errorf("%w: checkpoint %s does not include this node's head %s: sync entries instead", ErrCheckpointCoverage, ck.cid, h)
			}
		}
	}
	return nil
}

// loadBatchRows bounds the rows written in one store batch by a load.
const loadBatchRows = 20000

// loadCheckpoint replaces the scope's state with a verified checkpoint's
// (verifyCheckpointState first: this writes) and makes its heads the
// core's heads. Entries after the checkpoint then come by sync; the
// entries before it are not fetched.
func (c *Core) loadCheckpoint(ctx context.Context, ck *Checkpoint, get func(context.Context, cid.Cid) ([]byte, error)) error {
	rows, err := c.ckptRows(ck.Scope)
	if err != nil {
		return err
	}
	// Drop what the state replaces: the scope's rows and heads (in a
	// scoped network, the other scopes' stay: their entries' ancestors in
	// this scope are covered, as verifyCheckpointState checked). Keys only
	// in the old state (a view row a later entry deleted) must not survive.
	var keys []string
	for _, p := range rows.prefixes() {
		if rows.kind != KindGlobal {
			// A scope's checkpoint is loaded only by a node that holds
			// nothing of it (verifyCheckpointState): no row to drop, and
			// its prefixes hold other owners' rows.
			break
		}
		var ferr error
		if err := scanRows(ctx, c.store, p, p != pMeta || rows.all, func(k string, v []byte) bool {
			if p == pMeta && !rows.all {
				in, err := rows.key(k, v)
				if err != nil || !in {
					ferr = err
					return err == nil
				}
			}
			keys = append(keys, k)
			return true
		}); err != nil || ferr != nil {
			return c.reset(ctx, errors.Join(err, ferr))
		}
	}
	for _, h := range c.ScopeHeads(ck.Scope) {
		keys = append(keys, pHeads+h.String())
	}
	for len(keys) > 0 {
		n := min(len(keys), loadBatchRows)
		b, err := c.store.Batch(ctx)
		if err != nil {
			return c.reset(ctx, err)
		}
		for _, k := range keys[:n] {
			if err := b.Delete(k); err != nil {
				return c.reset(ctx, err)
			}
		}
		if err := b.Commit(ctx); err != nil {
			return c.reset(ctx, err)
		}
		keys = keys[n:]
	}
	b, err := c.store.Batch(ctx)
	if err != nil {
		return c.reset(ctx, err)
	}
	n := 0
	for _, bc := range ck.Blocks {
		raw, err := get(ctx, bc)
		if err != nil {
			return c.reset(ctx, fmt.Errorf("ledger: checkpoint %s: read state block %s: %w", ck.cid, bc, err))
		}
		err = eachRow(raw, func(k string, v []byte) error {
			if err := b.Put(k, v); err != nil {
				return err
			}
			if n++; n%loadBatchRows == 0 {
				if err := b.Commit(ctx); err != nil {
					return err
				}
				if b, err = c.store.Batch(ctx); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return c.reset(ctx, err)
		}
	}
	for _, h := range ck.Heads {
		if err := b.Put(pHeads+h.String(), nil); err != nil {
			return c.reset(ctx, err)
		}
	}
	if err := b.Commit(ctx); err != nil {
		return c.reset(ctx, err)
	}
	// Everything cached may describe the old state: reload.
	c.d.cache = map[cid.Cid]*node{}
	c.d.anc = map[[2]cid.Cid]bool{}
	c.d.sc.reset()
	c.d.t = c.d.newTxn(c.store, 0)
	if err := c.load(ctx); err != nil {
		c.stale = true
		return fmt.Errorf("ledger: load heads of checkpoint %s: %w", ck.cid, err)
	}
	return nil
}

// Checkpoint builds an unsigned checkpoint of scope at the core's current
// heads, extending prev (cid.Undef for a network's first), and returns it
// with its state blocks.
func (c *Core) Checkpoint(ctx context.Context, scope string, prev cid.Cid) (*Checkpoint, [][]byte, error) {
	d, err := c.exportCheckpoint(ctx, scope, nil)
	if err != nil {
		return nil, nil, err
	}
	d.ck.Prev = prev
	if err := d.ck.seal(); err != nil {
		return nil, nil, err
	}
	return d.ck, d.blocks, nil
}

// LoadCheckpoint verifies a checkpoint's state against its header and this
// core (verifyCheckpointState), then replaces the core's state with it.
// The checkpoint's signatures must have been checked already
// (VerifyCheckpointChain): this trusts the header. blocks returns a state
// block's bytes by CID.
func (c *Core) LoadCheckpoint(ctx context.Context, ck *Checkpoint, blocks func(context.Context, cid.Cid) ([]byte, error)) error {
	if err := c.ready(ctx); err != nil {
		return err
	}
	if err := c.verifyCheckpointState(ctx, ck, blocks, true); err != nil {
		return err
	}
	return c.loadCheckpoint(ctx, ck, blocks)
}

// blockMap serves blocks from memory (tests, Verify).
func blockMap(bs [][]byte) func(context.Context, cid.Cid) ([]byte, error) {
	m := make(map[cid.Cid][]byte, len(bs))
	for _, b := range bs {
		m[blockCID(b)] = b
	}
	return func(_ context.Context, c cid.Cid) ([]byte, error) {
		b, ok := m[c]
		if !ok {
			return nil, fmt.Errorf("state block %s not held", c)
		}
		return b, nil
	}
}
