package gc

import (
	"context"
	"crypto/rand"
	"fmt"
	"github.com/medmesh/medmesh/internal/diskspace"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/replication"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/blockstore"
	"github.com/medmesh/medmesh/storage/record"
)

// These tests run gc over a real badger blockstore with the ledger and the
// records service's block index faked, and the replication manager's real
// Pinset.

const self = peer.ID("self")

type fakeLedger struct {
	mu      sync.Mutex
	recs    map[cid.Cid]ledger.RecordInfo
	grants  map[cid.Cid][]ledger.Grant
	entries []cid.Cid
}

func (l *fakeLedger) OwnedRecords(_ context.Context, p peer.ID) ([]ledger.RecordInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ledger.RecordInfo
	for _, r := range l.recs {
		if r.Owner == p {
			out = append(out, r)
		}
	}
	return out, nil
}

func (l *fakeLedger) Record(rec cid.Cid) (ledger.RecordInfo, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.recs[rec]
	return r, ok
}

func (l *fakeLedger) Grants(rec cid.Cid) []ledger.Grant {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.grants[rec]
}

func (l *fakeLedger) EachEntry(ctx context.Context, fn func(cid.Cid) error) error {
	l.mu.Lock()
	es := slices.Clone(l.entries)
	l.mu.Unlock()
	for _, c := range es {
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

type fakeRecords struct {
	mu        sync.Mutex
	idx       map[cid.Cid]cid.Cid
	forgotten []cid.Cid
}

func (r *fakeRecords) RecordOf(b cid.Cid) (cid.Cid, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.idx[b]
	return rec, ok
}

func (r *fakeRecords) IndexedBlocks() map[cid.Cid]cid.Cid {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[cid.Cid]cid.Cid{}
	for b, rec := range r.idx {
		out[b] = rec
	}
	return out
}

func (r *fakeRecords) Unindex(_ context.Context, b cid.Cid) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.idx, b)
	return nil
}

func (r *fakeRecords) Forget(_ context.Context, rec cid.Cid) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forgotten = append(r.forgotten, rec)
	for b, x := range r.idx {
		if x == rec {
			delete(r.idx, b)
		}
	}
	return nil
}

func (r *fakeRecords) index(rec cid.Cid, bs ...cid.Cid) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range bs {
		r.idx[b] = rec
	}
}

// node is one node's storage: what a daemon opens at start.
type node struct {
	dir     string
	store   *blockstore.Store
	local   datastore.Batching
	ledger  *fakeLedger
	records *fakeRecords
	pins    *replication.Pinset
	s       *Service
}

// open opens (or reopens, keeping the faked ledger and index) the node in
// dir, as a daemon's start does.
func open(t *testing.T, dir string, l *fakeLedger, r *fakeRecords) *node {
	t.Helper()
	store, err := blockstore.Open(filepath.Join(dir, "datastore"))
	if err != nil {
		t.Fatal(err)
	}
	n := &node{dir: dir, store: store, ledger: l, records: r,
		local: namespace.Wrap(store.DS, datastore.NewKey("/medmesh/local"))}
	if n.pins, err = replication.OpenPinset(context.Background(), n.local); err != nil {
		t.Fatal(err)
	}
	n.s, err = New(Config{Self: self, Store: store, Local: n.local, DiskDir: filepath.Join(dir, "datastore"),
		Ledger: l, Records: r, Replicas: n.pins, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func newNode(t *testing.T) *node {
	t.Helper()
	n := open(t, t.TempDir(), &fakeLedger{recs: map[cid.Cid]ledger.RecordInfo{}, grants: map[cid.Cid][]ledger.Grant{}},
		&fakeRecords{idx: map[cid.Cid]cid.Cid{}})
	t.Cleanup(func() { n.close() })
	return n
}

func (n *node) close() {
	n.s.Close()
	n.store.Close()
}

// restart closes the node, as a kill would (no add ends), and opens it again.
func (n *node) restart(t *testing.T) *node {
	t.Helper()
	n.close()
	m := open(t, n.dir, n.ledger, n.records)
	t.Cleanup(func() { m.close() })
	return m
}

func randomBlock(t *testing.T, size int) blocks.Block {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	c, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum(data)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := blocks.NewBlockWithCid(data, c)
	return b
}

func (n *node) put(t *testing.T, bs ...blocks.Block) {
	t.Helper()
	for _, b := range bs {
		if err := n.store.Blocks.Put(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
}

func (n *node) has(t *testing.T, c cid.Cid) bool {
	t.Helper()
	ok, err := n.store.Blocks.Has(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// stored is a record's blocks as a node stores them.
type stored struct {
	info   ledger.RecordInfo
	blocks []cid.Cid // chunks, manifest (the record's ID) and block list
}

// storeRecord stores a record of chunks blocks: chunks, a manifest and a
// block list naming both. It is not announced.
func (n *node) storeRecord(t *testing.T, owner peer.ID, chunks int) stored {
	t.Helper()
	var ids []cid.Cid
	for range chunks {
		b := randomBlock(t, 4096)
		n.put(t, b)
		ids = append(ids, b.Cid())
	}
	man := randomBlock(t, 300)
	n.put(t, man)
	ids = append(ids, man.Cid())
	raw, err := record.EncodeBlockList(ids)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum(raw)
	bl, _ := blocks.NewBlockWithCid(raw, c)
	n.put(t, bl)
	return stored{info: ledger.RecordInfo{ID: man.Cid(), Owner: owner, Blocklist: bl.Cid()}, blocks: append(ids, bl.Cid())}
}

func (n *node) announce(r stored) {
	n.ledger.mu.Lock()
	n.ledger.recs[r.info.ID] = r.info
	n.ledger.mu.Unlock()
}

func (n *node) mustHaveAll(t *testing.T, what string, cs []cid.Cid) {
	t.Helper()
	for _, c := range cs {
		if !n.has(t, c) {
			t.Fatalf("%s: block %s was removed", what, c)
		}
	}
}

func (n *node) mustHaveNone(t *testing.T, what string, cs []cid.Cid) {
	t.Helper()
	for _, c := range cs {
		if n.has(t, c) {
			t.Fatalf("%s: block %s survived", what, c)
		}
	}
}

// TestGCKeepsWhatIsLive: with every kind of live block (owned record,
// pinned replica, record in flight, readable record, ledger entry, add
// running), Stat counts exactly the orphans and GC removes exactly those.
func TestGCKeepsWhatIsLive(t *testing.T) {
	ctx := context.Background()
	n := newNode(t)
	other := peer.ID("other")

	owned := n.storeRecord(t, self, 3)
	n.announce(owned)
	n.records.index(owned.info.ID, owned.blocks...)

	pinned := n.storeRecord(t, other, 2)
	n.announce(pinned)
	if err := n.pins.Pin(ctx, pinned.info.ID, pinned.info.Blocklist); err != nil {
		t.Fatal(err)
	}

	inflight := n.storeRecord(t, other, 2)
	n.announce(inflight)
	release := n.pins.Hold(inflight.info.ID)
	defer release()

	readable := n.storeRecord(t, other, 1)
	n.announce(readable)
	n.records.index(readable.info.ID, readable.blocks...)
	n.ledger.grants[readable.info.ID] = []ledger.Grant{{Record: readable.info.ID, Grantee: self}}

	expired := n.storeRecord(t, other, 1) // readable once: its blocks are garbage now
	n.announce(expired)
	n.records.index(expired.info.ID, expired.blocks...)
	n.ledger.grants[expired.info.ID] = []ledger.Grant{{Record: expired.info.ID, Grantee: self, Expires: time.Now().Add(-time.Hour)}}

	entry := randomBlock(t, 200)
	n.put(t, entry)
	n.ledger.entries = append(n.ledger.entries, entry.Cid())

	add, err := n.s.BeginAdd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	running := randomBlock(t, 1000)
	if err := add.Put(ctx, running); err != nil {
		t.Fatal(err)
	}

	var orphans []cid.Cid
	var orphanSize int64
	for range 5 {
		b := randomBlock(t, 2000)
		n.put(t, b)
		orphans = append(orphans, b.Cid())
		orphanSize += 2000
	}
	orphans = append(orphans, expired.blocks...)
	for _, c := range expired.blocks {
		b, _ := n.store.Blocks.Get(ctx, c)
		orphanSize += int64(len(b.RawData()))
	}

	st, err := n.s.Stat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.OrphanBlockCount != len(orphans) || st.OrphanSize != orphanSize || st.OwnedRecordCount != 1 ||
		st.HeldRecordCount != 1 || st.RecordCount != 2 || st.RunningAddCount != 1 || st.LedgerEntryCount != 1 {
		t.Fatalf("stat: %+v (want %d orphans of %d bytes)", st, len(orphans), orphanSize)
	}
	res, err := n.s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.RemovedBlockCount != len(orphans) || res.RemovedSize != orphanSize || res.InterruptedAddCount != 0 ||
		res.KeptBlockCount != st.BlockCount-len(orphans) {
		t.Fatalf("gc: %+v", res)
	}
	n.mustHaveNone(t, "orphans", orphans)
	for _, r := range []stored{owned, pinned, inflight, readable} {
		n.mustHaveAll(t, r.info.ID.String(), r.blocks)
	}
	n.mustHaveAll(t, "ledger entry and running add", []cid.Cid{entry.Cid(), running.Cid()})
	if _, ok := n.records.RecordOf(expired.blocks[0]); ok {
		t.Fatal("a removed block is still indexed")
	}
	add.End(true)
	if st, err := n.s.Stat(ctx); err != nil || st.OrphanBlockCount != 1 || st.RunningAddCount != 0 {
		t.Fatalf("stat after the add ended without announcing its block: %+v %v", st, err)
	}
}

// TestInterruptedAdds: an add killed at each point of its protocol (before
// it knew its record; after it stored the record's key and index entries;
// after the record reached the ledger) is cleaned up by the next start,
// and only then: a start without a marker sweeps nothing.
func TestInterruptedAdds(t *testing.T) {
	ctx := context.Background()
	n := newNode(t)

	a, err := n.s.BeginAdd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var blocksA []cid.Cid
	for range 3 {
		b := randomBlock(t, 1<<20)
		if err := a.Put(ctx, b); err != nil {
			t.Fatal(err)
		}
		blocksA = append(blocksA, b.Cid())
	}

	b, err := n.s.BeginAdd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	manifest, chunk := randomBlock(t, 300), randomBlock(t, 4096)
	for _, blk := range []blocks.Block{chunk, manifest} {
		if err := b.Put(ctx, blk); err != nil {
			t.Fatal(err)
		}
	}
	recB := manifest.Cid()
	if err := b.Named(ctx, recB); err != nil {
		t.Fatal(err)
	}
	n.records.index(recB, chunk.Cid(), manifest.Cid())

	kept := n.storeRecord(t, self, 2) // (c): on the ledger, its marker left
	c, err := n.s.BeginAdd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Named(ctx, kept.info.ID); err != nil {
		t.Fatal(err)
	}
	n.announce(kept)
	n.records.index(kept.info.ID, kept.blocks...)

	if st, err := n.s.Stat(ctx); err != nil || st.OrphanBlockCount != 0 || st.RunningAddCount != 3 {
		t.Fatalf("stat with three adds running: %+v %v", st, err)
	}

	n = n.restart(t)
	if m, _ := n.s.Markers(ctx); m != 3 {
		t.Fatalf("%d markers after the kill, want 3", m)
	}
	n.s.RecoverInterruptedAdds(ctx)
	n.mustHaveNone(t, "interrupted adds", append(blocksA, recB, chunk.Cid()))
	n.mustHaveAll(t, "the announced record", kept.blocks)
	if !slices.Equal(n.records.forgotten, []cid.Cid{recB}) {
		t.Fatalf("forgotten %v, want only %s (an add that never named its record has nothing to forget; one on the ledger is kept)", n.records.forgotten, recB)
	}
	if _, ok := n.records.RecordOf(chunk.Cid()); ok {
		t.Fatal("the interrupted add's index entries survived")
	}
	if m, _ := n.s.Markers(ctx); m != 0 {
		t.Fatalf("%d markers survived the recovery", m)
	}

	orphan := randomBlock(t, 1000)
	n.put(t, orphan)
	n = n.restart(t)
	n.s.RecoverInterruptedAdds(ctx)
	if !n.has(t, orphan.Cid()) {
		t.Fatal("a start without an interrupted add swept the store")
	}
	if res, err := n.s.GC(ctx); err != nil || res.RemovedBlockCount != 1 || n.has(t, orphan.Cid()) {
		t.Fatalf("gc: %+v %v", res, err)
	}
}

// TestAddEnd: a failed add takes back its blocks and what it stored about
// its record, and its marker; a finished one keeps its blocks.
func TestAddEnd(t *testing.T) {
	ctx := context.Background()
	n := newNode(t)

	failed, err := n.s.BeginAdd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	x, y := randomBlock(t, 5000), randomBlock(t, 300)
	if err := failed.PutMany(ctx, []blocks.Block{x, y}); err != nil {
		t.Fatal(err)
	}
	if err := failed.Named(ctx, y.Cid()); err != nil {
		t.Fatal(err)
	}
	failed.End(false)
	n.mustHaveNone(t, "failed add", []cid.Cid{x.Cid(), y.Cid()})
	if !slices.Equal(n.records.forgotten, []cid.Cid{y.Cid()}) {
		t.Fatalf("forgotten %v", n.records.forgotten)
	}

	done, err := n.s.BeginAdd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	z := randomBlock(t, 5000)
	if err := done.Put(ctx, z); err != nil {
		t.Fatal(err)
	}
	done.End(true)
	n.mustHaveAll(t, "finished add", []cid.Cid{z.Cid()})
	if m, _ := n.s.Markers(ctx); m != 0 {
		t.Fatalf("%d markers after both adds ended", m)
	}
}

// TestAddEndWaitsForWrites: a failed add whose blocks are still being
// written by other goroutines when it ends (a truncated upload: the
// reader fails while chunks are being stored) leaves none of them: End
// waits for the writes in flight, and a write after it stores nothing.
func TestAddEndWaitsForWrites(t *testing.T) {
	ctx := context.Background()
	n := newNode(t)
	for round := 0; round < 20; round++ {
		a, err := n.s.BeginAdd(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var written []cid.Cid
		start := make(chan struct{})
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; i < 20; i++ {
					b := randomBlock(t, 2000)
					mu.Lock()
					written = append(written, b.Cid())
					mu.Unlock()
					if a.Put(ctx, b) != nil {
						return // ended
					}
				}
			}()
		}
		close(start)
		a.End(false)
		wg.Wait()
		mu.Lock()
		n.mustHaveNone(t, fmt.Sprintf("round %d: an add ended while its blocks were being written", round), written)
		mu.Unlock()
	}
}

// TestGCRefusesToGuess: an owned record whose block list is gone and none
// of whose blocks are indexed cannot be told from garbage: gc removes
// nothing and says so (a conflict, with a hint).
func TestGCRefusesToGuess(t *testing.T) {
	ctx := context.Background()
	n := newNode(t)
	r := n.storeRecord(t, self, 2)
	n.announce(r)
	if err := n.store.Blocks.DeleteBlock(ctx, r.info.Blocklist); err != nil {
		t.Fatal(err)
	}
	_, err := n.s.GC(ctx)
	if !fault.Is(err, fault.Conflict) || fault.HintOf(err) == "" {
		t.Fatalf("gc of a node missing an owned record's block list: %v", err)
	}
	n.mustHaveAll(t, "after the refusal", r.blocks[:len(r.blocks)-1])
}

// claimingReplicas reports nothing held in its Holdings (the mark) but
// claims rec under Exclusive: a fetch of rec started between gc's mark and
// its removals.
type claimingReplicas struct {
	rec cid.Cid
}

func (c claimingReplicas) Holdings() (map[cid.Cid]cid.Cid, []cid.Cid) { return nil, nil }

func (c claimingReplicas) Exclusive(fn func(func(cid.Cid) bool, []cid.Cid)) {
	fn(func(r cid.Cid) bool { return r == c.rec }, []cid.Cid{c.rec})
}

// TestGCSkipsBlocksClaimedMeanwhile: a block the mark found unreferenced
// but that a record gone in flight since claims is kept (skipped).
func TestGCSkipsBlocksClaimedMeanwhile(t *testing.T) {
	ctx := context.Background()
	n := newNode(t)
	r := n.storeRecord(t, peer.ID("other"), 2)
	n.announce(r) // on the ledger, neither pinned nor indexed: garbage, but for the fetch
	n.s.replicas = claimingReplicas{rec: r.info.ID}
	res, err := n.s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.RemovedBlockCount != 0 || res.SkippedBlockCount != len(r.blocks) {
		t.Fatalf("gc: %+v, want %d blocks skipped", res, len(r.blocks))
	}
	n.mustHaveAll(t, "claimed record", r.blocks)
}

// TestInterruptedAddSpaceReclaimed: the disk space of an interrupted add's
// blocks is given back after the restart that removes them.
func TestInterruptedAddSpaceReclaimed(t *testing.T) {
	ctx := context.Background()
	n := newNode(t)
	dir := filepath.Join(n.dir, "datastore")
	before := diskspace.Used(dir)
	add, err := n.s.BeginAdd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 64 {
		if err := add.Put(ctx, randomBlock(t, 1<<20)); err != nil {
			t.Fatal(err)
		}
	}
	n.close() // the add never ends, as if killed
	grown := diskspace.Used(dir)

	n = open(t, n.dir, n.ledger, n.records)
	defer n.close()
	n.s.RecoverInterruptedAdds(ctx)
	deadline := time.Now().Add(30 * time.Second)
	after := diskspace.Used(dir)
	for after > before+8<<20 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // reclaiming runs in the background
		after = diskspace.Used(dir)
	}
	t.Logf("datastore on disk: %d before, %d with a 64 MiB interrupted add, %d after the restart", before, grown, after)
	if grown < before+60<<20 || after > before+8<<20 {
		t.Fatalf("datastore on disk: %d before, %d with the interrupted add, %d after the restart", before, grown, after)
	}
}
