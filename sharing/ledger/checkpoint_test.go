package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

// ckptWorld is a network of n members on admin's node a, with records,
// grants and claims, and a checkpoint made by the admin in the middle.
type ckptWorld struct {
	w      *world
	a      *Ledger
	ck     *Checkpoint
	before []*Entry // applied before the checkpoint
	after  []*Entry // applied after it (stragglers included)
	// stragglers were signed on the heads before the checkpoint and
	// ingested after it; straggle[i]'s verdict on the admin's node.
	stragglers []*Entry
	verdicts   []error
}

func newCkptWorld(t *testing.T) *ckptWorld {
	t.Helper()
	ctx := context.Background()
	w := newWorld(t, 4)
	a := openNode(t, w.admin, w.genesis)
	cw := &ckptWorld{w: w, a: a}
	cw.before = append(cw.before, w.setup(t, a)...)
	cw.before = append(cw.before, w.grantAll(t, a)...)
	for i := 0; i < 20; i++ {
		cw.before = append(cw.before, as(t, a, w.members[1+i%3], TypeAccess, w.claim(t, 0, 1+i%3, testEpoch.Add(time.Duration(i)*time.Second))))
	}
	preHeads := a.Heads()
	ck, _, err := a.MakeCheckpoint(ctx, ScopeGlobal, nil)
	if err != nil {
		t.Fatal(err)
	}
	cw.ck = ck
	// After: more claims, a revoke, a new member, and stragglers signed on
	// the heads before the checkpoint: a valid claim and an unauthorized
	// grant (member 2 granting member 0's record).
	cw.after = append(cw.after, as(t, a, w.members[2], TypeAccess, w.claim(t, 1, 2, testEpoch.Add(time.Hour))))
	cw.after = append(cw.after, as(t, a, w.members[1], TypeRevoke, RevokePayload{Record: recordPayload(t, w.members[1], "b").Record, Grantee: w.members[3].id}))
	cw.after = append(cw.after, as(t, a, w.admin, TypeMemberAdd, MemberAddPayload{Peer: newIdent(t).id, Org: "late"}))
	good := forge(t, a, w.members[3], TypeAccess, w.claim(t, 2, 3, testEpoch.Add(2*time.Hour)), preHeads)
	bad := forge(t, a, w.members[2], TypeGrant, GrantPayload{Record: recordPayload(t, w.admin, "a").Record, Grantee: w.members[3].id,
		Envelope: envelopeFor(t, w.members[3], "x"), Purpose: PurposeTreatment}, preHeads)
	for _, e := range []*Entry{good, bad} {
		err := a.Ingest(ctx, e.raw)
		cw.stragglers = append(cw.stragglers, e)
		cw.verdicts = append(cw.verdicts, err)
		if err == nil {
			cw.after = append(cw.after, e)
		}
	}
	if cw.verdicts[0] != nil || cw.verdicts[1] == nil {
		t.Fatalf("straggler verdicts on the full node: %v", cw.verdicts)
	}
	cw.after = append(cw.after, as(t, a, w.members[3], TypeAccess, w.claim(t, 2, 3, testEpoch.Add(3*time.Hour))))
	return cw
}

func chainOf(t *testing.T, l *Ledger) []*Checkpoint {
	t.Helper()
	ch, err := l.CheckpointChain(context.Background(), ScopeGlobal)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// TestCheckpointJoinReachesFullReplayDigest: a node that starts from the
// checkpoint and then receives the entries after it (stragglers concurrent
// with the checkpoint included) reaches the digest of the node that applied
// everything, and of a node that replays every entry from the genesis; it
// gives the stragglers the same verdicts; and its Verify passes.
func TestCheckpointJoinReachesFullReplayDigest(t *testing.T) {
	ctx := context.Background()
	cw := newCkptWorld(t)
	j := openNode(t, newIdent(t), cw.w.genesis)
	sub, cancel := j.Subscribe()
	defer cancel()
	if err := j.JoinFromCheckpoint(ctx, chainOf(t, cw.a), cw.a.StateBlock); err != nil {
		t.Fatal(err)
	}
	// The services hear that the state was loaded, not applied entry by
	// entry (TypeStateLoaded).
	waitStateLoaded(t, sub, "")
	if got := j.Heads(); !sameCids(got, cw.ck.Heads) {
		t.Fatalf("joiner heads %v, checkpoint heads %v", got, cw.ck.Heads)
	}
	if !bytes.Equal(j.Digest(), cw.ck.Digest) {
		t.Fatalf("joiner digest %x right after the load, checkpoint says %x", j.Digest(), cw.ck.Digest)
	}
	for _, e := range cw.after {
		if err := j.Ingest(ctx, e.raw); err != nil {
			t.Fatalf("joiner: entry %s (%s): %v", e.cid, e.Type, err)
		}
	}
	for i, e := range cw.stragglers {
		err := j.Ingest(ctx, e.raw)
		if (err == nil) != (cw.verdicts[i] == nil) {
			t.Fatalf("straggler %d: joiner says %v, full node said %v", i, err, cw.verdicts[i])
		}
	}
	full := openNode(t, cw.w.members[1], cw.w.genesis)
	ingestAll(t, full, append(append([]*Entry{}, cw.before...), cw.after...))
	da, dj, df := cw.a.Digest(), j.Digest(), full.Digest()
	if !bytes.Equal(da, dj) || !bytes.Equal(da, df) {
		t.Fatalf("digests differ: admin %x, joined from checkpoint %x, full replay %x", da, dj, df)
	}
	if !sameCids(j.Heads(), cw.a.Heads()) {
		t.Fatalf("heads differ: %v vs %v", j.Heads(), cw.a.Heads())
	}
	if err := j.Verify(ctx); err != nil {
		t.Fatalf("verify on the joiner: %v", err)
	}
	// It stores the genesis and what came after the checkpoint, no more.
	if got := j.Stat(ctx).Entries; got != int64(1+len(cw.after)) {
		t.Fatalf("the joiner stores %d entries, want %d", got, 1+len(cw.after))
	}
	// The joiner holds none of the entries before the checkpoint.
	if _, err := j.Entry(ctx, cw.before[3].cid); err == nil {
		t.Fatal("joiner holds an entry from before the checkpoint")
	}
	// It serves the checkpoint to the next joiner.
	j2 := openNode(t, newIdent(t), cw.w.genesis)
	if err := j2.JoinFromCheckpoint(ctx, chainOf(t, j), j.StateBlock); err != nil {
		t.Fatalf("second joiner from the first: %v", err)
	}
}

// TestCheckpointForgedRejected: every forged checkpoint is refused with an
// error saying what is wrong, and the joiner's state is untouched.
func TestCheckpointForgedRejected(t *testing.T) {
	ctx := context.Background()
	cw := newCkptWorld(t)
	good := chainOf(t, cw.a)[0]
	blocks := func() [][]byte {
		var out [][]byte
		for _, b := range good.Blocks {
			raw, err := cw.a.StateBlock(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, raw)
		}
		return out
	}
	resign := func(ck *Checkpoint, who *ident) *Checkpoint {
		ck.Sigs = nil
		if err := ck.seal(); err != nil {
			t.Fatal(err)
		}
		if err := ck.Sign(who.key); err != nil {
			t.Fatal(err)
		}
		return ck
	}
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
	rogue := cw.w.members[1]
	extra := map[cid.Cid][]byte{} // blocks the cases forge
	cases := []struct {
		name   string
		chain  func() []*Checkpoint
		blocks func(context.Context, cid.Cid) ([]byte, error)
		want   error
		says   string
	}{
		{"signed by a member that is not an admin", func() []*Checkpoint { return []*Checkpoint{resign(clone(), rogue)} },
			nil, ErrCheckpointUntrusted, "needs 1"},
		{"unsigned", func() []*Checkpoint { ck := clone(); ck.Sigs = nil; return []*Checkpoint{ck} },
			nil, ErrCheckpointUntrusted, "0 valid signature"},
		{"wrong digest", func() []*Checkpoint {
			ck := clone()
			ck.Digest = bytes.Repeat([]byte{7}, 32)
			return []*Checkpoint{resign(ck, cw.w.admin)}
		}, nil, ErrCheckpointState, "hashes to digest"},
		{"state block not matching its CID", func() []*Checkpoint { return []*Checkpoint{good} },
			func(ctx context.Context, c cid.Cid) ([]byte, error) {
				b, err := cw.a.StateBlock(ctx, c)
				b = append([]byte{}, b...)
				b[len(b)/2] ^= 1
				return b, err
			}, ErrCheckpointState, "does not hash to its CID"},
		{"state not matching the digest (blocks re-cut with a changed row)", func() []*Checkpoint {
			ck := clone()
			var rows []kv
			for _, b := range blocks() {
				_ = eachRow(b, func(k string, v []byte) error { rows = append(rows, kv{k, append([]byte{}, v...)}); return nil })
			}
			for i := range rows { // a record's row, in the view
				if bytes.HasPrefix([]byte(rows[i].Key), []byte(pState+"r/")) {
					rows[i].Value = append(rows[i].Value, 0)
					break
				}
			}
			var blk []byte
			for _, r := range rows {
				blk = appendRow(blk, r.Key, r.Value)
			}
			ck.Blocks, ck.Size = []cid.Cid{blockCID(blk)}, uint64(len(blk))
			extra[blockCID(blk)] = blk
			return []*Checkpoint{resign(ck, cw.w.admin)}
		}, nil, ErrCheckpointState, "hashes to digest"},
		{"signers are not the state's admins", func() []*Checkpoint {
			ck := clone()
			ck.Signers = append(ck.Signers, rogue.id)
			return []*Checkpoint{resign(ck, cw.w.admin)}
		}, nil, ErrCheckpointState, "not the admins"},
		{"does not extend the genesis", func() []*Checkpoint {
			ck := clone()
			ck.Prev = fakeCid("elsewhere")
			return []*Checkpoint{resign(ck, cw.w.admin)}
		}, nil, ErrCheckpointUntrusted, "does not extend"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := openNode(t, newIdent(t), cw.w.genesis)
			d0 := j.Digest()
			bl := tc.blocks
			if bl == nil {
				bl = func(ctx context.Context, c cid.Cid) ([]byte, error) {
					if b, ok := extra[c]; ok {
						return b, nil
					}
					return cw.a.StateBlock(ctx, c)
				}
			}
			err := j.JoinFromCheckpoint(ctx, tc.chain(), bl)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.says != "" && !bytes.Contains([]byte(err.Error()), []byte(tc.says)) {
				t.Fatalf("error %q does not say %q", err, tc.says)
			}
			if !bytes.Equal(j.Digest(), d0) || len(chainOf(t, j)) != 0 {
				t.Fatal("a refused checkpoint changed the joiner")
			}
		})
	}
	// A bad signature does not even decode.
	raw, _ := good.Encode()
	i := bytes.Index(raw, good.Sigs[0].Sig)
	raw[i] ^= 1
	if _, err := DecodeCheckpoint(raw); !errors.Is(err, ErrCheckpointSignature) {
		t.Fatalf("bad signature: got %v", err)
	}
	// A member that is not an admin cannot make one.
	m := openNode(t, rogue, cw.w.genesis)
	ingestAll(t, m, cw.before)
	if _, _, err := m.MakeCheckpoint(ctx, ScopeGlobal, nil); !errors.Is(err, ErrCheckpointUntrusted) {
		t.Fatalf("checkpoint by a non-admin: got %v", err)
	}
}

// TestCheckpointDoesNotCoverNode: a node holding entries the checkpoint
// does not include refuses it (it would lose them) and syncs instead.
func TestCheckpointDoesNotCoverNode(t *testing.T) {
	ctx := context.Background()
	cw := newCkptWorld(t)
	n := openNode(t, cw.w.members[2], cw.w.genesis)
	ingestAll(t, n, cw.before)
	ingestAll(t, n, cw.after[:1])
	if err := n.JoinFromCheckpoint(ctx, chainOf(t, cw.a), cw.a.StateBlock); !errors.Is(err, ErrCheckpointCoverage) {
		t.Fatalf("got %v, want ErrCheckpointCoverage", err)
	}
}

// TestCheckpointChain: the second checkpoint is trusted through the first
// (its signers); a chain missing a link is not.
func TestCheckpointChain(t *testing.T) {
	ctx := context.Background()
	cw := newCkptWorld(t)
	if _, _, err := cw.a.MakeCheckpoint(ctx, ScopeGlobal, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cw.a.MakeCheckpoint(ctx, ScopeGlobal, nil); !errors.Is(err, ErrCheckpointExists) {
		t.Fatalf("second checkpoint at the same heads: %v", err)
	}
	ch := chainOf(t, cw.a)
	if len(ch) != 2 || ch[1].Prev != ch[0].cid {
		t.Fatalf("chain %v", ch)
	}
	if _, err := VerifyCheckpointChain(cw.w.genesis, ScopeGlobal, ch[1:]); !errors.Is(err, ErrCheckpointUntrusted) {
		t.Fatalf("chain without its first link: %v", err)
	}
	j := openNode(t, newIdent(t), cw.w.genesis)
	if err := j.JoinFromCheckpoint(ctx, ch, cw.a.StateBlock); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(j.Digest(), cw.a.Digest()) {
		t.Fatal("joined from the second checkpoint, digest differs")
	}
}

// TestPruneKeepsOwnerHistory: pruning drops the bodies of covered entries
// about others' records, keeps the owner's audit history, the reads of the
// owners whose replica group the node is in, and every membership entry,
// leaves the digest alone, and Verify still passes.
func TestPruneKeepsOwnerHistory(t *testing.T) {
	ctx := context.Background()
	// Eight members: the admin (the pruning node) is in the replica group
	// of some owners (grouped) and not of others (outside).
	var w *world
	var a *Ledger
	grouped, outside := -1, -1
	for try := 0; try < 50 && (grouped < 0 || outside < 0); try++ {
		w = newWorld(t, 8)
		a = openNode(t, w.admin, w.genesis)
		w.setup(t, a)
		// Of the same organisation as the others: an admin without one
		// would rank first in every group (a distinct organisation).
		as(t, a, w.admin, TypeMemberOrg, MemberOrgPayload{Peer: w.admin.id, Org: "clinic"})
		grouped, outside = -1, -1
		for i := 1; i < len(w.members); i++ {
			if slices.Contains(a.groupOf(w.members[i].id), w.admin.id) {
				grouped = i
			} else {
				outside = i
			}
		}
	}
	if grouped < 0 || outside < 0 {
		t.Fatal("no world with an owner in and one outside the admin's groups")
	}
	reader := func(owner int) int { return 1 + owner%(len(w.members)-1) } // neither the owner nor the admin
	w.grantAll(t, a)
	var own, others, group []*Entry
	for i := 0; i < 10; i++ {
		at := testEpoch.Add(time.Duration(i) * time.Second)
		own = append(own, as(t, a, w.members[1], TypeAccess, w.claim(t, 0, 1, at)))
		others = append(others, as(t, a, w.members[reader(outside)], TypeAccess, w.claim(t, outside, reader(outside), at)))
		group = append(group, as(t, a, w.members[reader(grouped)], TypeAccess, w.claim(t, grouped, reader(grouped), at)))
	}
	if _, err := a.Prune(ctx); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("prune without a checkpoint: %v", err)
	}
	if _, _, err := a.MakeCheckpoint(ctx, ScopeGlobal, nil); err != nil {
		t.Fatal(err)
	}
	after := as(t, a, w.members[reader(outside)], TypeAccess, w.claim(t, outside, reader(outside), testEpoch.Add(time.Hour)))
	d0 := a.Digest()
	stat0 := a.Stat(ctx)
	st, err := a.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pruned == 0 || st.Kept == 0 {
		t.Fatalf("prune stats %+v", st)
	}
	// ledger stat counts what is stored: the pruned entries are not.
	if got := a.Stat(ctx).Stored; got.Entries != stat0.Entries-int64(st.Pruned) || got.Bytes != stat0.Bytes-st.Size {
		t.Fatalf("stored after prune %+v, before %+v, pruned %+v", got, stat0.Stored, st)
	}
	checkStoredByScope(t, a)
	for _, e := range others {
		if _, err := a.Entry(ctx, e.cid); err == nil {
			t.Fatalf("claim on another owner's record %s kept", e.cid)
		}
	}
	for _, e := range append(append(own, group...), after) {
		if _, err := a.Entry(ctx, e.cid); err != nil {
			t.Fatalf("entry %s lost: %v", e.cid, err)
		}
	}
	ms, err := a.State().Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if _, err := a.Entry(ctx, m.Entry); err != nil {
			t.Fatalf("membership entry %s pruned: %v", m.Entry, err)
		}
	}
	logged, err := a.Log(ctx, TypeAccess, 0)
	if err != nil {
		t.Fatalf("log after prune: %v", err)
	}
	if len(logged) != len(own)+len(group)+1 {
		t.Fatalf("access log after prune has %d entries, want %d", len(logged), len(own)+len(group)+1)
	}
	// The view (the owner's audit counts included) is untouched.
	if !bytes.Equal(a.Digest(), d0) {
		t.Fatal("pruning changed the digest")
	}
	acc, _ := a.State().Access(ctx, recordPayload(t, w.admin, "a").Record)
	if len(acc) != len(own) {
		t.Fatalf("owner's audit has %d claims, want %d", len(acc), len(own))
	}
	if err := a.Verify(ctx); err != nil {
		t.Fatalf("verify after prune: %v", err)
	}
	again, err := a.Prune(ctx)
	if err != nil || again.Pruned != 0 {
		t.Fatalf("second prune: %+v %v", again, err)
	}
}

// FuzzCheckpointDecode: the decoder never panics, and whatever it accepts
// re-encodes to the same bytes. Seeded with a real checkpoint.
func FuzzCheckpointDecode(f *testing.F) {
	ctx := context.Background()
	w := newWorld(f, 2)
	a := openNode(f, w.admin, w.genesis)
	w.setup(f, a)
	ck, _, err := a.MakeCheckpoint(ctx, ScopeGlobal, nil)
	if err != nil {
		f.Fatal(err)
	}
	raw, err := ck.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add(raw[:len(raw)/2])
	blk, err := a.StateBlock(ctx, ck.Blocks[0])
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blk[:min(len(blk), 512)])
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = eachRow(b, func(string, []byte) error { return nil })
		ck, err := DecodeCheckpoint(b)
		if err != nil {
			return
		}
		re, err := ck.Encode()
		if err != nil || !bytes.Equal(re, b) {
			t.Fatalf("accepted a non-canonical encoding: %v", err)
		}
		_ = fmt.Sprint(ck.CID())
	})
}

// TestCheckpointCosignedByMajority: with two admins, one admin's signature
// is a proposal, not a trusted checkpoint; the other admin co-signs it
// only if its own state at its heads gives the same checkpoint; then a
// joiner trusts it, and one signature alone is refused.
func TestCheckpointCosignedByMajority(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 3)
	a := openNode(t, w.admin, w.genesis)
	es := w.setup(t, a)
	es = append(es, as(t, a, w.admin, TypeMemberAdd, MemberAddPayload{Peer: w.members[1].id, Org: "clinic", Roles: []string{RoleAdmin}}))
	// The first is vouched for by the genesis admin alone; it lists both
	// admins, so the second needs both.
	first, trusted, err := a.MakeCheckpoint(ctx, ScopeGlobal, nil)
	if err != nil || !trusted || len(first.Signers) != 2 {
		t.Fatalf("first checkpoint: trusted=%v signers=%v err=%v", trusted, first.Signers, err)
	}
	es = append(es, as(t, a, w.members[2], TypeRecordAnnounce, recordPayload(t, w.members[2], "late")))
	b := openNode(t, w.members[1], w.genesis)
	ingestAll(t, b, es)
	if err := b.AdoptCheckpoint(ctx, chainOf(t, a), a.StateBlock); err != nil {
		t.Fatal(err)
	}
	prop, trusted, err := a.MakeCheckpoint(ctx, ScopeGlobal, nil)
	if err != nil || trusted || len(prop.Sigs) != 1 {
		t.Fatalf("one admin of two: trusted=%v sigs=%d err=%v", trusted, len(prop.Sigs), err)
	}
	if len(chainOf(t, a)) != 1 {
		t.Fatal("a proposal was stored as trusted")
	}
	if _, err := VerifyCheckpointChain(w.genesis, ScopeGlobal, append(chainOf(t, a), prop)); !errors.Is(err, ErrCheckpointUntrusted) {
		t.Fatalf("a chain ending in one admin's signature of two: %v", err)
	}
	// A node whose state differs (it has an entry the proposer has not
	// seen) refuses to co-sign.
	behind := openNode(t, w.members[1], w.genesis)
	ingestAll(t, behind, es)
	as(t, behind, w.members[2], TypeRecordAnnounce, recordPayload(t, w.members[2], "other"))
	if err := behind.AdoptCheckpoint(ctx, chainOf(t, a), a.StateBlock); err != nil {
		t.Fatal(err)
	}
	if _, _, err := behind.MakeCheckpoint(ctx, ScopeGlobal, prop); !errors.Is(err, ErrCheckpointMismatch) {
		t.Fatalf("co-sign on another state: %v", err)
	}
	// A member that is not an admin cannot co-sign.
	c := openNode(t, w.members[2], w.genesis)
	ingestAll(t, c, es)
	if err := c.AdoptCheckpoint(ctx, chainOf(t, a), a.StateBlock); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.MakeCheckpoint(ctx, ScopeGlobal, prop); !errors.Is(err, ErrCheckpointUntrusted) {
		t.Fatalf("co-sign by a member that is not an admin: %v", err)
	}
	// The second admin co-signs: trusted.
	ck, trusted, err := b.MakeCheckpoint(ctx, ScopeGlobal, prop)
	if err != nil || !trusted || len(ck.Sigs) != 2 || ck.CID() != prop.CID() {
		t.Fatalf("co-signed: trusted=%v sigs=%d err=%v", trusted, len(ck.Sigs), err)
	}
	j := openNode(t, newIdent(t), w.genesis)
	if err := j.JoinFromCheckpoint(ctx, chainOf(t, b), b.StateBlock); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(j.Digest(), a.Digest()) {
		t.Fatal("joined from the co-signed checkpoint: digest differs")
	}
}

// waitStateLoaded waits for a TypeStateLoaded notification of wire scope
// scope on a subscription.
func waitStateLoaded(t *testing.T, sub <-chan *Entry, scope string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-sub:
			if e.Type == TypeStateLoaded && e.Scope == scope {
				return
			}
		case <-timeout:
			t.Fatalf("no notification that the state of scope %q was loaded", scope)
		}
	}
}

// TestJoinReleasesEntriesWaitingForTheCheckpoint: an entry gossiped to a
// joining node before it loaded the checkpoint waits for parents the
// checkpoint covers; loading the checkpoint applies it (a parent loaded
// from a checkpoint is never applied, so nothing else releases it, and
// the node reported itself behind on the global scope for ever).
func TestJoinReleasesEntriesWaitingForTheCheckpoint(t *testing.T) {
	ctx := context.Background()
	cw := newCkptWorld(t)
	j := openNode(t, cw.w.members[1], cw.w.genesis)
	early := cw.after[0] // signed on heads the checkpoint covers
	if err := j.Ingest(ctx, early.raw); err == nil || j.PendingCount() != 1 {
		t.Fatalf("before the join: %v, %d entries pending, want 1", err, j.PendingCount())
	}
	if err := j.JoinFromCheckpoint(ctx, chainOf(t, cw.a), cw.a.StateBlock); err != nil {
		t.Fatal(err)
	}
	if !j.known(early.cid) || j.PendingCount() != 0 {
		t.Fatalf("after the join: the early entry applied %v, %d pending", j.known(early.cid), j.PendingCount())
	}
}
