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
)

// scopedCkptWorld is a scoped network of four members (the genesis admin
// and member 1 admins) whose history (admissions, keys, one record per
// member, every member granting its record to every other, reads) was
// built on a node that holds every scope (full). byScope splits it.
type scopedCkptWorld struct {
	w       *world
	full    *Ledger
	all     []*Entry
	byScope map[string][]*Entry
}

func newScopedCkptWorld(t *testing.T) *scopedCkptWorld { return newScopedCkptWorldN(t, 4) }

func newScopedCkptWorldN(t *testing.T, n int) *scopedCkptWorld {
	t.Helper()
	w := newWorld(t, n, WithScopes())
	full := openNode(t, w.members[2], w.genesis)
	sw := &scopedCkptWorld{w: w, full: full}
	sw.all = append(sw.all, w.setup(t, full)...)
	sw.all = append(sw.all, as(t, full, w.admin, TypeMemberAdd, MemberAddPayload{Peer: w.members[1].id, Org: "clinic", Roles: []string{RoleAdmin}}))
	sw.all = append(sw.all, w.grantAll(t, full)...)
	for i := 0; i < 3*n; i++ {
		owner, reader := i%n, (i+1)%n
		sw.all = append(sw.all, as(t, full, w.members[reader], TypeAccess, w.claim(t, owner, reader, testEpoch.Add(time.Duration(i)*time.Second))))
	}
	sw.split()
	return sw
}

func (sw *scopedCkptWorld) split() {
	sw.byScope = map[string][]*Entry{}
	for _, e := range sw.all {
		sw.byScope[e.ScopeName()] = append(sw.byScope[e.ScopeName()], e)
	}
}

// add appends an entry on the full node and to the history.
func (sw *scopedCkptWorld) add(t *testing.T, who *ident, typ string, pl any) *Entry {
	t.Helper()
	e := as(t, sw.full, who, typ, pl)
	sw.all = append(sw.all, e)
	sw.split()
	return e
}

// holding returns the entries of the global scope and of the owner and
// audit scopes of the given members, in the order they were built.
func (sw *scopedCkptWorld) holding(members ...int) []*Entry {
	keep := map[string]bool{ScopeGlobal: true}
	for _, m := range members {
		keep[OwnerScope(sw.w.members[m].id)] = true
		keep[AuditScope(sw.w.members[m].id)] = true
	}
	var out []*Entry
	for _, e := range sw.all {
		if keep[e.ScopeName()] {
			out = append(out, e)
		}
	}
	return out
}

// ckptRowsOf reads every row of a checkpoint's blocks.
func ckptRowsOf(t *testing.T, ck *Checkpoint, get func(context.Context, cid.Cid) ([]byte, error)) []kv {
	t.Helper()
	var rows []kv
	for _, bc := range ck.Blocks {
		b, err := get(context.Background(), bc)
		if err != nil {
			t.Fatal(err)
		}
		if err := eachRow(b, func(k string, v []byte) error {
			rows = append(rows, kv{k, append([]byte{}, v...)})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return rows
}

// TestCheckpointScopedGlobalOnly: in a scoped network the global scope's
// checkpoint is the global scope's state alone. Two admins that follow
// different owner scopes (and the node that holds them all) export the
// same checkpoint, so one co-signs the other's proposal; its rows are
// exactly those of a node that replayed the global entries alone; a joiner
// loads it (the global heads and digest, no scoped head), then catches up
// the scopes it follows by replay and reaches each one's ScopeDigest, and
// its Verify passes.
func TestCheckpointScopedGlobalOnly(t *testing.T) {
	ctx := context.Background()
	sw := newScopedCkptWorld(t)
	w := sw.w
	a := openNode(t, w.admin, w.genesis) // follows member 2's scopes (and its own)
	ingestAll(t, a, sw.holding(0, 2))
	b := openNode(t, w.members[1], w.genesis) // follows member 3's (and its own)
	ingestAll(t, b, sw.holding(1, 3))
	g := openNode(t, newIdent(t), w.genesis) // the global entries alone
	ingestAll(t, g, sw.byScope[ScopeGlobal])
	if len(a.core.Scopes()) < 3 || len(b.core.Scopes()) < 3 {
		t.Fatalf("scopes held: a %v, b %v", a.core.Scopes(), b.core.Scopes())
	}

	export := func(l *Ledger) (*Checkpoint, [][]byte) {
		t.Helper()
		l.mu.Lock()
		defer l.mu.Unlock()
		ck, blocks, err := l.core.Checkpoint(ctx, ScopeGlobal, cid.Undef)
		if err != nil {
			t.Fatal(err)
		}
		return ck, blocks
	}
	ca, blocksA := export(a)
	cb, _ := export(b)
	cf, _ := export(sw.full)
	cg, _ := export(g)
	if ca.CID() != cb.CID() || ca.CID() != cf.CID() || ca.CID() != cg.CID() {
		t.Fatalf("global checkpoints differ: a %s, b %s, full %s, global entries alone %s", ca.CID(), cb.CID(), cf.CID(), cg.CID())
	}
	if !sameCids(ca.Heads, a.Heads()) || int(ca.Entries) != 1+len(sw.byScope[ScopeGlobal]) || !bytes.Equal(ca.Digest, a.Digest()) {
		t.Fatalf("checkpoint: heads %v (global heads %v), %d entries (%d global), digest %x (global digest %x)",
			ca.Heads, a.Heads(), ca.Entries, 1+len(sw.byScope[ScopeGlobal]), ca.Digest, a.Digest())
	}
	// Exactly the rows of a node holding the global entries alone.
	var want []kv
	for _, p := range []string{pMeta, pIdx, pState} {
		if err := g.store.Scan(ctx, p, false, func(k string, v []byte) bool {
			want = append(want, kv{k, append([]byte{}, v...)})
			return true
		}); err != nil {
			t.Fatal(err)
		}
	}
	got := ckptRowsOf(t, ca, blockMap(blocksA))
	if len(got) != len(want) {
		var gk, wk []string
		for _, r := range got {
			gk = append(gk, r.Key)
		}
		for _, r := range want {
			wk = append(wk, r.Key)
		}
		t.Fatalf("checkpoint has %d rows, the global entries alone make %d:\n%s\n%s", len(got), len(want), strings.Join(gk, "\n"), strings.Join(wk, "\n"))
	}
	for i := range got {
		if got[i].Key != want[i].Key || !bytes.Equal(got[i].Value, want[i].Value) {
			t.Fatalf("row %d: checkpoint %q, global entries alone %q", i, got[i].Key, want[i].Key)
		}
	}

	// The first is the genesis admin's; it lists both admins, so the next
	// needs both: a proposes, b (other scopes) co-signs.
	if _, trusted, err := a.MakeCheckpoint(ctx, ScopeGlobal, nil); err != nil || !trusted {
		t.Fatalf("first checkpoint: trusted=%v err=%v", trusted, err)
	}
	if err := b.AdoptCheckpoint(ctx, chainOf(t, a), a.StateBlock); err != nil {
		t.Fatal(err)
	}
	late := newIdent(t)
	for _, e := range []*Entry{
		sw.add(t, w.admin, TypeMemberAdd, MemberAddPayload{Peer: late.id, Org: "late"}),
		sw.add(t, w.members[2], TypeAccess, w.claim(t, 3, 2, testEpoch.Add(time.Hour))),
		sw.add(t, w.members[3], TypeAccess, w.claim(t, 2, 3, testEpoch.Add(time.Hour))),
	} {
		for _, l := range []*Ledger{a, b} {
			if slices.Contains(l.core.Scopes(), e.ScopeName()) {
				if err := l.Ingest(ctx, e.raw); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	prop, trusted, err := a.MakeCheckpoint(ctx, ScopeGlobal, nil)
	if err != nil || trusted {
		t.Fatalf("one admin of two: trusted=%v err=%v", trusted, err)
	}
	ck, trusted, err := b.MakeCheckpoint(ctx, ScopeGlobal, prop)
	if err != nil || !trusted || ck.CID() != prop.CID() {
		t.Fatalf("co-signed by the admin that follows other scopes: trusted=%v err=%v", trusted, err)
	}

	// A joiner loads it: the global scope only.
	j := openNode(t, newIdent(t), w.genesis)
	if err := j.JoinFromCheckpoint(ctx, chainOf(t, b), b.StateBlock); err != nil {
		t.Fatal(err)
	}
	if !sameCids(j.Heads(), a.Heads()) || !bytes.Equal(j.Digest(), a.Digest()) {
		t.Fatalf("joiner: heads %v digest %x, a's %v %x", j.Heads(), j.Digest(), a.Heads(), a.Digest())
	}
	if s := j.core.Scopes(); len(s) != 1 {
		t.Fatalf("the joiner holds scopes %v from a global checkpoint", s)
	}
	// It catches up the scopes it follows by replay (members 2 and 3's),
	// and reaches each one's digest, as computed by the node that replayed
	// everything.
	for _, e := range sw.holding(2, 3) {
		if e.ScopeName() == ScopeGlobal {
			continue
		}
		if err := j.Ingest(ctx, e.raw); err != nil {
			t.Fatalf("joiner: %s on %s: %v", e.Type, e.ScopeName(), err)
		}
	}
	for _, m := range []int{2, 3} {
		for _, s := range []string{OwnerScope(w.members[m].id), AuditScope(w.members[m].id)} {
			dj, nj, err := j.ScopeDigest(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			df, nf, err := sw.full.ScopeDigest(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dj, df) || nj != nf {
				t.Fatalf("scope %s: joiner %x (%d entries), full replay %x (%d)", s, dj, nj, df, nf)
			}
		}
	}
	if !bytes.Equal(j.Digest(), sw.full.Digest()) {
		t.Fatal("global digest differs after the scopes' catch-up")
	}
	if err := j.Verify(ctx); err != nil {
		t.Fatalf("verify on the joiner: %v", err)
	}
}

// TestCheckpointScopedGlobalRejectsScopedRows: a global checkpoint of a
// scoped network that carries a row of an owner or audit scope (an admin
// handing joiners the state of scopes they do not follow, or made up) is
// refused, even signed by the admin and with a matching digest.
func TestCheckpointScopedGlobalRejectsScopedRows(t *testing.T) {
	ctx := context.Background()
	sw := newScopedCkptWorld(t)
	a := openNode(t, sw.w.admin, sw.w.genesis)
	ingestAll(t, a, sw.all)
	a.mu.Lock()
	good, blocks, err := a.core.Checkpoint(ctx, ScopeGlobal, cid.Undef)
	a.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	rec := sw.byScope[OwnerScope(sw.w.admin.id)][0]
	for _, tc := range []struct {
		name string
		row  kv
	}{
		{"an owner scope's entry", kv{pMeta + rec.cs, mustMeta(t, rec)}},
		{"a record's view row", kv{pState + "r/" + fakeCid("rec a").String(), []byte{0xa0}}},
		{"a record index row", kv{pIdx + "own/" + sw.w.admin.id.String() + "/" + fakeCid("rec a").String(), []byte{0xa0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows := append(ckptRowsOf(t, good, blockMap(blocks)), tc.row)
			sort.Slice(rows, func(i, j int) bool { return rows[i].Key < rows[j].Key })
			var blk []byte
			hs := newStateHasher()
			entries := uint64(0)
			for _, r := range rows {
				blk = appendRow(blk, r.Key, r.Value)
				if strings.HasPrefix(r.Key, pState) {
					hs.add(r.Key, r.Value)
				}
				if strings.HasPrefix(r.Key, pMeta) {
					entries++
				}
			}
			ck := *good
			ck.Blocks, ck.Size, ck.Digest, ck.Entries, ck.Sigs = []cid.Cid{blockCID(blk)}, uint64(len(blk)), hs.sum(), entries, nil
			if err := ck.seal(); err != nil {
				t.Fatal(err)
			}
			if err := ck.Sign(sw.w.admin.key); err != nil {
				t.Fatal(err)
			}
			j := openNode(t, newIdent(t), sw.w.genesis)
			err := j.JoinFromCheckpoint(ctx, []*Checkpoint{&ck}, blockMap([][]byte{blk}))
			if !errors.Is(err, ErrCheckpointState) || !strings.Contains(err.Error(), "not part of scope global") {
				t.Fatalf("got %v", err)
			}
			if len(j.core.heads) != 1 {
				t.Fatal("a refused checkpoint changed the joiner")
			}
		})
	}
}

func mustMeta(t *testing.T, e *Entry) []byte {
	t.Helper()
	b, err := encodeMeta(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
