package ledger

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/replication"
)

// logStored counts the entries in l's log and their bytes the slow way.
func logStored(t *testing.T, l *Ledger) Stored {
	t.Helper()
	var s Stored
	err := l.EachEntry(context.Background(), func(c cid.Cid) error {
		raw, err := l.store.GetEntry(context.Background(), c)
		s.Entries++
		s.Bytes += int64(len(raw))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkStoredByScope fails unless the core's per-scope counters are the
// log's, counted the slow way per scope.
func checkStoredByScope(t *testing.T, l *Ledger) map[string]Stored {
	t.Helper()
	ctx := context.Background()
	want := map[string]Stored{}
	all, err := logCIDs(ctx, l.store) // the log's rows: a pruned entry has none
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range all {
		raw, err := l.store.GetEntry(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		e, err := DecodeEntry(raw)
		if err != nil {
			t.Fatal(err)
		}
		st := want[scopeName(e.Scope)]
		st.Entries++
		st.Bytes += int64(len(raw))
		want[scopeName(e.Scope)] = st
	}
	l.mu.Lock()
	got := l.core.StoredByScope()
	l.mu.Unlock()
	if !maps.Equal(got, want) {
		t.Fatalf("stored by scope %v, the log holds %v", got, want)
	}
	return got
}

// TestStatCountsStoredEntries: Stat's entries and bytes are those of the
// log, after appends and ingests, across a restart, on a store written
// before the counters existed, and after a failed commit.
func TestStatCountsStoredEntries(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 3)
	dir := t.TempDir()
	l, st := openAt(t, dir, w.admin, w.genesis)
	if got := l.Stat(ctx).Stored; got.Entries != 1 || got.Bytes < 100 {
		t.Fatalf("a new ledger stores its genesis alone: %+v", got)
	}
	w.setup(t, l)
	w.grantAll(t, l)
	want := logStored(t, l)
	if got := l.Stat(ctx).Stored; got != want || want.Entries < 10 {
		t.Fatalf("stored %+v, the log holds %+v", got, want)
	}
	st1 := l.Stat(ctx)
	if !slices.Equal(st1.Scopes, []string{ScopeGlobal}) || st1.Synced {
		t.Fatalf("scopes %v, synced %v (not on the network: not synced)", st1.Scopes, st1.Synced)
	}
	l.Close()
	st.Close()

	l, st = openAt(t, dir, w.admin, w.genesis)
	if got := l.Stat(ctx).Stored; got != want {
		t.Fatalf("after a restart: %+v, want %+v", got, want)
	}
	checkStoredByScope(t, l)
	// A ledger written before the counters (or before they were kept
	// per scope): counted once, at open.
	for _, keys := range [][]string{{storedKey, storedScopeKey("")}, {storedScopeKey("")}} {
		b, err := l.store.Batch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			b.Delete(k)
		}
		if err := b.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		l.Close()
		st.Close()
		l, st = openAt(t, dir, w.admin, w.genesis)
		if got := l.Stat(ctx).Stored; got != want {
			t.Fatalf("counted at open without %v: %+v, want %+v", keys, got, want)
		}
		if got := checkStoredByScope(t, l); got[ScopeGlobal] != want {
			t.Fatalf("by scope, counted at open without %v: %+v, want %+v", keys, got, want)
		}
		// Counted once: kept at once, not counted again at the next start.
		for _, k := range []string{storedKey, storedScopeKey("")} {
			if v, ok, err := l.store.Get(ctx, k); err != nil || !ok || len(v) != 16 {
				t.Fatalf("%s not kept after counting at open: %v %v", k, ok, err)
			}
		}
	}
	defer func() { l.Close(); st.Close() }()
	as(t, l, w.members[1], TypeKeyAnnounce, KeyAnnouncePayload{Public: newIdent(t).kem.Public()})
	if got, want := l.Stat(ctx).Stored, logStored(t, l); got != want {
		t.Fatalf("after an ingest: %+v, want %+v", got, want)
	}
	checkStoredByScope(t, l)
	// Written with that batch: a restart reads them back, not the log.
	l.Close()
	st.Close()
	l, st = openAt(t, dir, w.admin, w.genesis)
	checkStoredByScope(t, l)
	if v, ok, err := l.store.Get(ctx, storedScopeKey("")); err != nil || !ok || len(v) != 16 {
		t.Fatalf("the global scope's counters are not stored: %v %v", ok, err)
	}
}

// TestStatAfterFailedCommit: an entry whose commit failed is not counted.
func TestStatAfterFailedCommit(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 3)
	fs := &flakyStore{Store: NewMemStore()}
	l, err := Open(ctx, Options{Store: fs, Key: w.admin.key, Genesis: w.genesis, Logger: quietLogger(), Types: testTypes()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	w.setup(t, l)
	before := l.Stat(ctx).Stored
	fs.set(nil, errors.New("disk failed"))
	e := forge(t, l, w.members[1], TypeKeyAnnounce, KeyAnnouncePayload{Public: newIdent(t).kem.Public()}, nil)
	if err := l.Ingest(ctx, e.Bytes()); err == nil {
		t.Fatal("ingest with failing commits succeeded")
	}
	if got := l.Stat(ctx).Stored; got != before {
		t.Fatalf("a failed commit counted: %+v, before %+v", got, before)
	}
	checkStoredByScope(t, l)
	fs.set(nil, nil)
	if err := l.Ingest(ctx, e.Bytes()); err != nil {
		t.Fatal(err)
	}
	if got := l.Stat(ctx).Stored; got.Entries != before.Entries+1 || got.Bytes != before.Bytes+int64(len(e.Bytes())) {
		t.Fatalf("after the retry: %+v, before %+v", got, before)
	}
	checkStoredByScope(t, l)
}

// TestSynced: nodes that caught up with every connected peer say synced;
// one holding an entry whose parents it lacks does not, until a sync
// fetches them; one cut off from every peer does not.
func TestSynced(t *testing.T) {
	w := newWorld(t, 3)
	mn, nodes := newMesh(t, w, 3)
	waitSynced := func(nd *meshNode, want bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for nd.l.Synced() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: synced %v, want %v (pending %d)", nd.h.ID(), !want, want, nd.l.core.PendingLen())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, nd := range nodes {
		waitSynced(nd, true)
	}

	// Node 0 writes two entries; node 2 gets the second alone (its parent
	// is missing there): not synced until the sync that entry starts
	// fetches the first.
	a, b := nodes[0], nodes[2]
	// Applied at node 0 without publishing, so only a sync carries them.
	e1 := as(t, a.l, w.members[0], TypeKeyAnnounce, KeyAnnouncePayload{Public: newIdent(t).kem.Public()})
	e2 := as(t, a.l, w.members[0], TypeKeyAnnounce, KeyAnnouncePayload{Public: newIdent(t).kem.Public()})
	if !slices.Equal(e2.Parents, []cid.Cid{e1.CID()}) {
		t.Fatalf("e2's parents: %v", e2.Parents)
	}
	if err := b.l.Ingest(context.Background(), e2.Bytes()); !errors.Is(err, ErrPending) {
		t.Fatalf("an entry without its parent: %v", err)
	}
	if b.l.Synced() {
		t.Fatal("synced with an entry waiting for its parent")
	}
	b.l.trigger(context.Background(), a.h.ID(), "")
	waitSynced(b, true)
	if ok, _ := b.l.core.Has(context.Background(), e2.CID()); !ok {
		t.Fatal("synced without the entry it waited for")
	}

	// Cut off from both peers, with members in the network: not synced.
	for _, nd := range nodes[:2] {
		if err := mn.UnlinkPeers(b.h.ID(), nd.h.ID()); err != nil {
			t.Fatal(err)
		}
		if err := mn.DisconnectPeers(b.h.ID(), nd.h.ID()); err != nil {
			t.Fatal(err)
		}
	}
	waitSynced(b, false)
}

// TestIndexUpgrade: a store written before the owner listing indexes
// (/i/own without rows, no /i/oh, no /c/index) gets them at open, and lists
// what a store that had them all along lists.
func TestIndexUpgrade(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 5)
	dir := t.TempDir()
	l, st := openAt(t, dir, w.admin, w.genesis)
	w.setup(t, l)
	held := 0
	for i, o := range w.members {
		rec := recordPayload(t, o, string(rune('a'+i))).Record
		for j, h := range w.members {
			if i == j {
				continue
			}
			e := forge(t, l, h, TypeReceipt, ReceiptPayload{Record: rec, Status: "held"}, nil)
			if l.Ingest(ctx, e.raw) == nil {
				held++
			}
		}
	}
	if held == 0 {
		t.Fatal("no receipt was accepted")
	}
	want := map[peer.ID][]Listing{}
	for _, m := range w.members {
		ls, err := l.OwnedListing(ctx, m.id)
		if err != nil || len(ls) != 1 {
			t.Fatalf("%s lists %v (%v)", m.id, ls, err)
		}
		want[m.id] = ls
	}
	// Back to the old layout.
	b, _ := l.store.Batch(ctx)
	for _, prefix := range []string{pIdx + "oh/", pIdx + "own/"} {
		err := l.store.Scan(ctx, prefix, true, func(k string, _ []byte) bool {
			if prefix == pIdx+"oh/" {
				b.Delete(k)
			} else {
				b.Put(k, nil)
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	b.Delete(indexKey)
	if err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	l.Close()
	st.Close()

	l, st = openAt(t, dir, w.admin, w.genesis)
	defer func() { l.Close(); st.Close() }()
	for _, m := range w.members {
		ls, err := l.OwnedListing(ctx, m.id)
		if err != nil || fmt.Sprint(ls) != fmt.Sprint(want[m.id]) {
			t.Fatalf("after the upgrade %s lists %v (%v), want %v", m.id, ls, err, want[m.id])
		}
	}
	if v, ok, err := l.store.Get(ctx, indexKey); err != nil || !ok || v[0] != indexVersion {
		t.Fatalf("index version %v %v %v", v, ok, err)
	}
	if err := l.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestBehindScopes: in a scoped network, Behind names each followed scope
// this node has not caught up with. Six nodes all reach synced, their
// scopes included. A member of an owner's replica group cut off from the
// owner and every other follower of the owner's scopes (still connected to
// a node that does not follow them) is caught up on the global scope and
// behind on the owner's two scopes, while the owner writes there (without
// publishing: only the owner has the entry); connected to the owner again,
// it is not synced before it has synced the scopes with the owner, and
// then has the entry.
func TestBehindScopes(t *testing.T) {
	if testing.Short() {
		t.Skip("networked")
	}
	w, mn, nodes := newScopedMesh(t, 6)
	waitBehind := func(nd *meshNode, want []string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for got := nd.l.Behind(); !slices.Equal(got, want); got = nd.l.Behind() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: behind on %v, want %v", nd.who.id, got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, nd := range nodes {
		waitBehind(nd, nil)
		if st := nd.l.Stat(context.Background()); !st.Synced || len(st.Behind) != 0 {
			t.Fatalf("stat: %+v", st)
		}
	}
	owner := nodes[1]
	var rms []replication.Member
	for _, m := range owner.l.Members() {
		rms = append(rms, replication.Member{Peer: m.Peer, Org: m.Org})
	}
	group := replication.Group(owner.who.id, rms)
	var follower, outsider *meshNode
	for _, nd := range nodes {
		switch {
		case nd == owner:
		case replication.Has(group, nd.who.id):
			if follower == nil {
				follower = nd
			}
		default:
			outsider = nd
		}
	}
	if follower == nil || outsider == nil {
		t.Fatalf("group %v", group)
	}
	ownerScope, auditScope := OwnerScope(owner.who.id), AuditScope(owner.who.id)
	for _, nd := range nodes {
		if nd == follower || nd == outsider {
			continue
		}
		if err := mn.UnlinkPeers(follower.h.ID(), nd.h.ID()); err != nil {
			t.Fatal(err)
		}
		if err := mn.DisconnectPeers(follower.h.ID(), nd.h.ID()); err != nil {
			t.Fatal(err)
		}
	}
	// Written at the owner without publishing: only a sync carries it.
	rec := as(t, owner.l, owner.who, TypeRecordAnnounce, recordPayload(t, owner.who, "behind"))
	// Behind on the owner's scopes (and on those of any other owner whose
	// followers it was cut off from too), not on the global scope.
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := follower.l.Behind()
		if slices.Contains(got, ownerScope) && slices.Contains(got, auditScope) && !slices.Contains(got, ScopeGlobal) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cut off from %s's followers: behind on %v", owner.who.id, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ok, _ := follower.l.core.Has(context.Background(), rec.CID()); ok {
		t.Fatal("the follower has the entry while cut off")
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := mn.ConnectPeers(follower.h.ID(), owner.h.ID()); err != nil {
		t.Fatal(err)
	}
	waitBehind(follower, nil)
	if ok, _ := follower.l.core.Has(context.Background(), rec.CID()); !ok {
		t.Fatal("synced without the owner's entry")
	}
	_ = w
}
