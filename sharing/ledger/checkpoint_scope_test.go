package ledger

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// scopeCkptWorld is a scoped network of six members where member 0 (the
// owner, O) has its replica group (four of the five others) and one
// member outside it; each group member's node holds the global scope and
// O's owner and audit scopes.
type scopeCkptWorld struct {
	*scopedCkptWorld
	owner   *ident
	group   []*ident
	nodes   []*Ledger // the group's nodes, in group order
	outside *ident
}

func newScopeCkptWorld(t *testing.T) *scopeCkptWorld {
	t.Helper()
	sw := newScopedCkptWorldN(t, 6)
	w := sw.w
	x := &scopeCkptWorld{scopedCkptWorld: sw, owner: w.members[0]}
	sw.full.mu.Lock()
	group, err := sw.full.core.scopeSigners(context.Background(), wireScope(OwnerScope(x.owner.id)), x.owner.id, sw.full.core.ScopeHeads(ScopeGlobal))
	sw.full.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if len(group) != 4 {
		t.Fatalf("group %v", group)
	}
	for _, m := range w.members[1:] {
		if slices.Contains(group, m.id) {
			x.group = append(x.group, m)
		} else {
			x.outside = m
		}
	}
	for _, g := range x.group {
		l := openNode(t, g, w.genesis)
		ingestAll(t, l, sw.holding(0))
		x.nodes = append(x.nodes, l)
	}
	return x
}

// cosign has the first k group members sign scope's checkpoint in turn.
func (x *scopeCkptWorld) cosign(t *testing.T, scope string, k int) (*Checkpoint, bool) {
	t.Helper()
	var ck *Checkpoint
	trusted := false
	for i := 0; i < k; i++ {
		var err error
		ck, trusted, err = x.nodes[i].MakeCheckpoint(context.Background(), scope, ck)
		if err != nil {
			t.Fatalf("signer %d of %s: %v", i, scope, err)
		}
	}
	return ck, trusted
}

func scopeBlocks(l *Ledger, scope string) func(context.Context, cid.Cid) ([]byte, error) {
	return func(ctx context.Context, c cid.Cid) ([]byte, error) { return l.ScopeStateBlock(ctx, scope, c) }
}

func rowsUnder(t *testing.T, s Store, prefixes ...string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, p := range prefixes {
		if err := s.Scan(context.Background(), p, false, func(k string, v []byte) bool {
			out[k] = append([]byte{}, v...)
			return true
		}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestCheckpointScopeRowsPartition: a scope's checkpoint rows are exactly
// what its entries add to the state of the scopes it depends on: the rows
// of a node that replayed its closure are the rows of one that replayed
// the closure without it plus the checkpoint's, none changed, none
// missing; and two nodes that follow the scope beside different other
// scopes export the same checkpoint.
func TestCheckpointScopeRowsPartition(t *testing.T) {
	ctx := context.Background()
	sw := newScopedCkptWorld(t)
	o := sw.w.members[0]
	for _, scope := range []string{OwnerScope(o.id), AuditScope(o.id)} {
		t.Run(scope[:5], func(t *testing.T) {
			with := openNode(t, newIdent(t), sw.w.genesis)
			without := openNode(t, newIdent(t), sw.w.genesis)
			for _, e := range sw.holding(0) {
				if slices.Contains(Closure(scope), e.ScopeName()) {
					ingestAll(t, with, []*Entry{e})
					if e.ScopeName() != scope {
						ingestAll(t, without, []*Entry{e})
					}
				}
			}
			with.mu.Lock()
			ck, blocks, err := with.core.Checkpoint(ctx, scope, cid.Undef)
			with.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]byte{}
			for _, r := range ckptRowsOf(t, ck, blockMap(blocks)) {
				got[r.Key] = r.Value
			}
			all := rowsUnder(t, with.store, pMeta, pIdx, pState)
			base := rowsUnder(t, without.store, pMeta, pIdx, pState)
			for k, v := range base {
				if _, dup := got[k]; dup {
					t.Fatalf("row %s is both the scope's and its dependencies'", k)
				}
				got[k] = v
			}
			if len(got) != len(all) {
				t.Fatalf("dependencies + checkpoint: %d rows, the closure's replay %d", len(got), len(all))
			}
			for k, v := range all {
				if g, ok := got[k]; !ok || !bytes.Equal(g, v) {
					t.Fatalf("row %s: the closure's replay has %x, dependencies + checkpoint %x (present %v)", k, v, g, ok)
				}
			}
			// A node that follows the scope and others exports the same.
			other := openNode(t, newIdent(t), sw.w.genesis)
			ingestAll(t, other, sw.holding(0, 2))
			ck2, _, err := other.heldDraft(ctx, scope)
			if err != nil {
				t.Fatal(err)
			}
			if ck2.CID() != ck.CID() {
				t.Fatalf("a node that also follows member 2's scopes exports %s, not %s", ck2.CID(), ck.CID())
			}
		})
	}
}

// TestScopeCheckpointSignedByGroupMajority: a scope's checkpoint is made by
// the owner's replica group: one or two signatures of four are a proposal,
// the third makes it trusted; the owner and a member outside the group
// cannot sign; a node that starts following the scopes loads the owner
// scope's then the audit scope's checkpoint instead of replaying, applies
// the entries after them (a straggler concurrent with them included) and
// reaches the digest of each scope a full replay reaches, and its Verify
// passes.
func TestScopeCheckpointSignedByGroupMajority(t *testing.T) {
	ctx := context.Background()
	x := newScopeCkptWorld(t)
	os, as := OwnerScope(x.owner.id), AuditScope(x.owner.id)
	ownerNode := openNode(t, x.owner, x.w.genesis)
	ingestAll(t, ownerNode, x.holding(0))
	if _, _, err := ownerNode.MakeCheckpoint(ctx, os, nil); !errors.Is(err, ErrCheckpointUntrusted) {
		t.Fatalf("the owner signing its own scope's checkpoint: %v", err)
	}
	out := openNode(t, x.outside, x.w.genesis)
	ingestAll(t, out, x.holding(0))
	if _, _, err := out.MakeCheckpoint(ctx, os, nil); !errors.Is(err, ErrCheckpointUntrusted) {
		t.Fatalf("a member outside the group signing: %v", err)
	}
	prop, trusted := x.cosign(t, os, 2)
	if trusted || len(prop.Sigs) != 2 {
		t.Fatalf("two of four: trusted=%v sigs=%d", trusted, len(prop.Sigs))
	}
	if _, _, err := out.MakeCheckpoint(ctx, os, prop); !errors.Is(err, ErrCheckpointUntrusted) {
		t.Fatalf("a member outside the group co-signing: %v", err)
	}
	preHeads := x.full.core.closureHeads(wireScope(as))
	ck, trusted := x.cosign(t, os, 3)
	if !trusted || len(ck.Sigs) != 3 || !slices.Equal(ck.Signers, sortedPeers(x.group)) {
		t.Fatalf("three of four: trusted=%v sigs=%d signers=%v", trusted, len(ck.Sigs), ck.Signers)
	}
	ack, trusted := x.cosign(t, as, 3)
	if !trusted {
		t.Fatal("audit scope's checkpoint not trusted with three of four")
	}
	// After them: a grant, claims, and a straggler signed on the heads
	// before them.
	late := []*Entry{
		x.add(t, x.owner, TypeGrant, GrantPayload{Record: recordPayload(t, x.owner, "a").Record, Grantee: x.outside.id,
			Envelope: envelopeFor(t, x.outside, "late"), Purpose: PurposeTreatment}),
		x.add(t, x.w.members[2], TypeAccess, x.w.claim(t, 0, 2, testEpoch.Add(time.Hour))),
	}
	straggler := forge(t, x.full, x.w.members[3], TypeAccess, x.w.claim(t, 0, 3, testEpoch.Add(2*time.Hour)), preHeads)
	if err := x.full.Ingest(ctx, straggler.raw); err != nil {
		t.Fatal(err)
	}
	late = append(late, straggler)

	// The member outside the group holds the global scope only, then
	// starts following O's scopes: it loads both checkpoints.
	j := openNode(t, x.outside, x.w.genesis)
	ingestAll(t, j, x.byScope[ScopeGlobal])
	if err := j.JoinFromCheckpoint(ctx, []*Checkpoint{ack}, scopeBlocks(x.nodes[2], as)); !errors.Is(err, ErrCheckpointDeps) || !strings.Contains(err.Error(), "catch up global and "+os) {
		t.Fatalf("the audit scope's checkpoint before its owner scope: %v", err)
	}
	sub, cancel := j.Subscribe()
	defer cancel()
	if err := j.JoinFromCheckpoint(ctx, []*Checkpoint{ck}, scopeBlocks(x.nodes[2], os)); err != nil {
		t.Fatal(err)
	}
	waitStateLoaded(t, sub, os)
	if err := j.JoinFromCheckpoint(ctx, []*Checkpoint{ack}, scopeBlocks(x.nodes[2], as)); err != nil {
		t.Fatal(err)
	}
	waitStateLoaded(t, sub, as)
	if !sameCids(j.core.ScopeHeads(os), ck.Heads) || !sameCids(j.core.ScopeHeads(as), ack.Heads) {
		t.Fatal("the loaded scopes' heads are not the checkpoints'")
	}
	if got := j.Stat(ctx).Entries; got != int64(1+len(x.byScope[ScopeGlobal])) {
		t.Fatalf("the node stores %d entries: it fetched scoped ones", got)
	}
	// Once it holds the scope, it syncs rather than loads.
	if err := j.JoinFromCheckpoint(ctx, []*Checkpoint{ck}, scopeBlocks(x.nodes[2], os)); !errors.Is(err, ErrCheckpointExists) {
		t.Fatalf("loading the same checkpoint twice: %v", err)
	}
	for _, e := range late {
		if err := j.Ingest(ctx, e.raw); err != nil {
			t.Fatalf("%s after the checkpoints: %v", e.Type, err)
		}
	}
	for _, s := range []string{os, as} {
		dj, nj, err := j.ScopeDigest(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		df, nf, err := x.full.ScopeDigest(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dj, df) || nj != nf {
			t.Fatalf("scope %s: loaded from its checkpoint %x (%d entries), full replay %x (%d)", s, dj, nj, df, nf)
		}
	}
	if err := j.Verify(ctx); err != nil {
		t.Fatalf("verify after loading scope checkpoints: %v", err)
	}
	if cks, err := j.Checkpoints(ctx, os); err != nil || len(cks) != 1 || !cks[0].Base {
		t.Fatalf("checkpoints of %s: %+v %v", os, cks, err)
	}
}

func sortedPeers(ids []*ident) []peer.ID {
	var out []peer.ID
	for _, i := range ids {
		out = append(out, i.id)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

// TestScopeCheckpointForgedRejected: a scope checkpoint signed by fewer
// than a majority of the group (the owner's signature does not count),
// listing other signers than the group, or whose rows reach outside the
// scope (a global row, a row about another owner's record) is refused with
// an error saying so, and the node is unchanged.
func TestScopeCheckpointForgedRejected(t *testing.T) {
	ctx := context.Background()
	x := newScopeCkptWorld(t)
	os := OwnerScope(x.owner.id)
	good, trusted := x.cosign(t, os, 3)
	if !trusted {
		t.Fatal("not trusted")
	}
	blocks := func() []kv { return ckptRowsOf(t, good, scopeBlocks(x.nodes[2], os)) }
	clone := func() *Checkpoint {
		raw, err := good.Encode()
		if err != nil {
			t.Fatal(err)
		}
		ck, err := DecodeCheckpoint(raw)
		if err != nil {
			t.Fatal(err)
		}
		return ck
	}
	sign := func(ck *Checkpoint, who ...*ident) *Checkpoint {
		ck.Sigs = nil
		if err := ck.seal(); err != nil {
			t.Fatal(err)
		}
		for _, w := range who {
			if err := ck.Sign(w.key); err != nil {
				t.Fatal(err)
			}
		}
		return ck
	}
	extra := map[cid.Cid][]byte{}
	recut := func(add kv) *Checkpoint {
		rows := append(blocks(), add)
		sort.Slice(rows, func(i, j int) bool { return rows[i].Key < rows[j].Key })
		var blk []byte
		hs := newStateHasher()
		for _, r := range rows {
			blk = appendRow(blk, r.Key, r.Value)
			if strings.HasPrefix(r.Key, pState) {
				hs.add(r.Key, r.Value)
			}
		}
		ck := clone()
		ck.Blocks, ck.Size, ck.Digest = []cid.Cid{blockCID(blk)}, uint64(len(blk)), hs.sum()
		extra[blockCID(blk)] = blk
		return sign(ck, x.group[:3]...)
	}
	other := recordPayload(t, x.w.members[2], string(rune('a'+2))).Record
	cases := []struct {
		name string
		ck   func() *Checkpoint
		want error
		says string
	}{
		{"two group members and the owner", func() *Checkpoint { return sign(clone(), x.group[0], x.group[1], x.owner) }, ErrCheckpointUntrusted, "needs 3"},
		{"signers other than the group", func() *Checkpoint {
			ck := clone()
			ck.Signers = append(ck.Signers[:3:3], x.owner.id)
			sort.Slice(ck.Signers, func(i, j int) bool { return ck.Signers[i] < ck.Signers[j] })
			return sign(ck, x.group[:3]...)
		}, ErrCheckpointUntrusted, "replica group"},
		{"deps naming another owner's scope", func() *Checkpoint {
			ck := clone()
			ck.Deps = append(ck.Deps, x.byScope[OwnerScope(x.w.members[2].id)][0].cid)
			return sign(ck, x.group[:3]...)
		}, ErrCheckpointMalformed, "not one"},
		{"a global row (making the outsider an admin)", func() *Checkpoint {
			return recut(kv{pState + "m/" + x.outside.id.String(), []byte{0xa0}})
		}, ErrCheckpointState, "not part of scope"},
		{"a row about another owner's record", func() *Checkpoint {
			return recut(kv{pState + "g/" + other.String() + "/" + x.outside.id.String() + "/" + fakeCid("g").String(), []byte{0xa0}})
		}, ErrCheckpointState, "does not announce"},
		{"an owner index row of another owner", func() *Checkpoint {
			return recut(kv{pIdx + "own/" + x.w.members[2].id.String() + "/" + other.String(), []byte{0xa0}})
		}, ErrCheckpointState, "another owner"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := openNode(t, x.outside, x.w.genesis)
			ingestAll(t, j, x.holding(2)) // the global scope and member 2's
			get := func(ctx context.Context, c cid.Cid) ([]byte, error) {
				if b, ok := extra[c]; ok {
					return b, nil
				}
				return x.nodes[2].ScopeStateBlock(ctx, os, c)
			}
			err := j.JoinFromCheckpoint(ctx, []*Checkpoint{tc.ck()}, get)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v, want %v saying %q", err, tc.want, tc.says)
			}
			if len(j.core.ScopeHeads(os)) != 0 || len(chainOf2(t, j, os)) != 0 {
				t.Fatal("a refused checkpoint changed the node")
			}
		})
	}
}

func chainOf2(t *testing.T, l *Ledger, scope string) []*Checkpoint {
	t.Helper()
	ch, err := l.CheckpointChain(context.Background(), scope)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// TestScopeCheckpointPrune: a group member that holds a trusted checkpoint
// of the owner's scopes drops the bodies it covers and still computes the
// scopes' digests and passes Verify; the owner, holding the same
// checkpoints, keeps every entry about its own records.
func TestScopeCheckpointPrune(t *testing.T) {
	ctx := context.Background()
	x := newScopeCkptWorld(t)
	os, as := OwnerScope(x.owner.id), AuditScope(x.owner.id)
	ck, _ := x.cosign(t, os, 3)
	ack, _ := x.cosign(t, as, 3)
	n := x.nodes[0] // signed both, did not store them (proposals): adopts
	for _, c := range []*Checkpoint{ck, ack} {
		if err := n.AdoptCheckpoint(ctx, []*Checkpoint{c}, scopeBlocks(x.nodes[2], c.Scope)); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string][]byte{}
	for _, s := range []string{os, as} {
		d, _, err := x.full.ScopeDigest(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		want[s] = d
	}
	st, err := n.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byScope := map[string]ScopePruneStats{}
	for _, s := range st.Scopes {
		byScope[s.Scope] = s
	}
	// A group member drops the owner scope's entries the checkpoint
	// covers, and keeps the owner's reads: if the owner's disk fails, its
	// audit log comes back from the group.
	if byScope[os].Pruned == 0 || byScope[as].Pruned != 0 || byScope[as].Kept == 0 || st.Checkpoint.Defined() {
		t.Fatalf("prune on a group member: %+v", st)
	}
	checkStoredByScope(t, n) // the pruned entries are off their scope's counters
	for _, s := range []string{os, as} {
		d, _, err := n.ScopeDigest(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(d, want[s]) {
			t.Fatalf("scope %s after pruning: digest differs", s)
		}
	}
	if err := n.Verify(ctx); err != nil {
		t.Fatalf("verify after pruning: %v", err)
	}
	ownerNode := openNode(t, x.owner, x.w.genesis)
	ingestAll(t, ownerNode, x.holding(0))
	for _, c := range []*Checkpoint{ck, ack} {
		if err := ownerNode.AdoptCheckpoint(ctx, []*Checkpoint{c}, scopeBlocks(x.nodes[2], c.Scope)); err != nil {
			t.Fatal(err)
		}
	}
	st, err = ownerNode.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pruned != 0 || st.Kept == 0 {
		t.Fatalf("the owner pruned its own records' history: %+v", st)
	}
}

// TestPruneAfterCheckpoint: with PruneAfterCheckpoint, a group member
// that adopts a checkpoint of an owner's scope prunes what it covers by
// itself, as `ledger prune` would (the scope's digest unchanged, the
// ledger still verifies, a prune by hand after it finds nothing more);
// the owner, with the option on, prunes nothing of its own records'
// history.
func TestPruneAfterCheckpoint(t *testing.T) {
	ctx := context.Background()
	x := newScopeCkptWorld(t)
	os := OwnerScope(x.owner.id)
	ck, _ := x.cosign(t, os, 3)
	want, _, err := x.full.ScopeDigest(ctx, os)
	if err != nil {
		t.Fatal(err)
	}
	pruned := func(l *Ledger) bool {
		m, err := l.ckptMarkers(ctx, pCkptPruned)
		if err != nil {
			t.Fatal(err)
		}
		return m[os]
	}
	n := x.nodes[0] // signed it, did not store it (a proposal): adopts
	n.o.PruneAfterCheckpoint = true
	before := n.Stat(ctx).Entries
	if err := n.AdoptCheckpoint(ctx, []*Checkpoint{ck}, scopeBlocks(x.nodes[2], os)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !pruned(n) {
		if time.Now().After(deadline) {
			t.Fatal("the group member did not prune the scope after adopting its checkpoint")
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.pruneMu.Lock() // the prune is over
	n.pruneMu.Unlock()
	if after := n.Stat(ctx).Entries; after >= before {
		t.Fatalf("entries stored: %d before the checkpoint, %d after", before, after)
	}
	if d, _, err := n.ScopeDigest(ctx, os); err != nil || !bytes.Equal(d, want) {
		t.Fatalf("scope %s after pruning: digest differs (%v)", os, err)
	}
	if err := n.Verify(ctx); err != nil {
		t.Fatalf("verify after pruning: %v", err)
	}
	st, err := n.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Scopes {
		if s.Scope == os && s.Pruned != 0 {
			t.Fatalf("a prune by hand after the automatic one: %+v", s)
		}
	}

	ownerNode := openNode(t, x.owner, x.w.genesis)
	ownerNode.o.PruneAfterCheckpoint = true
	ingestAll(t, ownerNode, x.holding(0))
	before = ownerNode.Stat(ctx).Entries
	if err := ownerNode.AdoptCheckpoint(ctx, []*Checkpoint{ck}, scopeBlocks(x.nodes[2], os)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	ownerNode.pruneMu.Lock()
	ownerNode.pruneMu.Unlock()
	if pruned(ownerNode) || ownerNode.Stat(ctx).Entries != before {
		t.Fatalf("the owner pruned its own scope: %d entries, was %d", ownerNode.Stat(ctx).Entries, before)
	}
}
