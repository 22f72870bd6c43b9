package auditlog

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/sharing/auditlog"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// fakeLedger is the ledger as the service reads it: records with owners,
// the audit entries already applied, and a subscription.
type fakeLedger struct {
	mu      sync.Mutex
	owner   map[cid.Cid]peer.ID
	entries map[cid.Cid]*ledger.Entry
	served  map[cid.Cid][]ledger.Served
	ch      chan *ledger.Entry
	owned   int // OwnedRecords calls: a catch-up each
}

func (f *fakeLedger) Subscribe() (<-chan *ledger.Entry, func()) { return f.ch, func() {} }
func (f *fakeLedger) Record(id cid.Cid) (ledger.RecordInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.owner[id]
	return ledger.RecordInfo{ID: id, Owner: o, Version: 1}, ok
}
func (f *fakeLedger) Versions(id cid.Cid) []ledger.RecordInfo { return nil }
func (f *fakeLedger) OwnedRecords(_ context.Context, p peer.ID) ([]ledger.RecordInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.owned++
	var out []ledger.RecordInfo
	for id, o := range f.owner {
		if o == p {
			out = append(out, ledger.RecordInfo{ID: id, Owner: o})
		}
	}
	return out, nil
}
func (f *fakeLedger) Served(id cid.Cid) []ledger.Served {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.served[id]
}
func (f *fakeLedger) Access(cid.Cid) []ledger.AccessEvent { return nil }
func (f *fakeLedger) Entry(_ context.Context, c cid.Cid) (*ledger.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, ok := f.entries[c]; ok {
		return e, nil
	}
	return nil, errors.New("no such entry")
}

func recID(s string) cid.Cid {
	mh, _ := multihash.Sum([]byte(s), multihash.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, mh)
}

// served signs an access.served entry about rec (a real, signed entry).
func served(t *testing.T, core *ledger.Core, key crypto.PrivKey, rec cid.Cid, reads uint64) *ledger.Entry {
	t.Helper()
	_, reader := newKey(t)
	now := time.Now()
	e, err := core.Sign(context.Background(), key, ledger.TypeServed, ledger.ServedPayload{Record: rec, Reader: reader, Grant: rec, Reads: reads, First: now, Last: now}, now)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func newKey(t *testing.T) (crypto.PrivKey, peer.ID) {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return k, id
}

// TestServiceLogsOwnAuditEntries: entries already on the ledger at start
// are caught up, later ones appended as they are applied; entries about
// others' records and other types are not logged; heads are signed by the
// owner and the log survives a restart; proofs verify offline.
func TestServiceLogsOwnAuditEntries(t *testing.T) {
	ctx := context.Background()
	key, self := newKey(t)
	_, other := newKey(t)
	g, _, _ := ledger.NewGenesis(key, "svc", time.Now(), ledger.Builtin())
	core, err := ledger.NewCore(ctx, ledger.CoreConfig{Store: ledger.NewMemStore(), Genesis: g, Types: ledger.Builtin()})
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := recID("mine"), recID("theirs")
	fl := &fakeLedger{owner: map[cid.Cid]peer.ID{mine: self, theirs: other}, entries: map[cid.Cid]*ledger.Entry{},
		served: map[cid.Cid][]ledger.Served{}, ch: make(chan *ledger.Entry, 16)}
	before := served(t, core, key, mine, 3)
	fl.entries[before.CID()] = before
	fl.served[mine] = []ledger.Served{{Record: mine, Entry: before.CID()}}

	ds := dssync.MutexWrap(datastore.NewMapDatastore())
	start := func() *Service {
		s, err := New(ctx, Config{Self: self, Key: key, Ledger: fl, DS: ds})
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		return s
	}
	s := start()
	live := served(t, core, key, mine, 2)
	fl.ch <- served(t, core, key, theirs, 1) // another owner's record
	fl.ch <- live
	fl.ch <- live // delivered twice: one leaf
	deadline := time.Now().Add(10 * time.Second)
	for s.log.Size() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("log size %d, want 2", s.log.Size())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if s.log.Size() != 2 {
		t.Fatalf("log size %d: another owner's entry or a duplicate was logged", s.log.Size())
	}
	h, note, err := s.Head(ctx)
	if err != nil || h.Size != 2 || h.Owner != self {
		t.Fatalf("head %+v %v", h, err)
	}
	f, err := s.Prove(ctx, mine, cid.Undef)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := auditlog.Verify(f, self)
	if err != nil || len(rep.Entries) != 2 || rep.Entries[0].Entry != before.CID() || rep.Entries[1].Entry != live.CID() {
		t.Fatalf("proof: %+v %v", rep, err)
	}
	if _, err := s.Prove(ctx, theirs, cid.Undef); !fault.Is(err, fault.Forbidden) {
		t.Fatalf("proof of another's record: %v", err)
	}
	if _, err := s.Prove(ctx, mine, recID("nope")); !fault.Is(err, fault.NotFound) {
		t.Fatalf("proof of an entry not in the log: %v", err)
	}
	s.Close()

	// Restarted: the same log and head; it grows and proves it only grew.
	fl.ch = make(chan *ledger.Entry, 16)
	s = start()
	defer s.Close()
	if _, n2, _ := s.Head(ctx); string(n2) != string(note) {
		t.Fatal("the head of the same size changed across a restart")
	}
	fl.ch <- served(t, core, key, mine, 7)
	for s.log.Size() < 3 {
		time.Sleep(10 * time.Millisecond)
	}
	c, err := s.Consistency(ctx, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := auditlog.Verify(c, self); err != nil || rep.Old.Size != 2 || rep.New.Size != 3 {
		t.Fatalf("consistency: %+v %v", rep, err)
	}
	if _, err := s.Consistency(ctx, 3, 9); !fault.Is(err, fault.Invalid) {
		t.Fatalf("consistency past the end: %v", err)
	}
}

// memSegments keeps segments in memory; down makes them unreachable (their
// holders away).
type memSegments struct {
	mu   sync.Mutex
	segs map[cid.Cid][]byte
	refs []SegmentRef
	down bool
}

func (m *memSegments) Put(_ context.Context, from, to int64, write func(io.Writer) error) (cid.Cid, error) {
	var buf bytes.Buffer
	if err := write(&buf); err != nil {
		return cid.Undef, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	id := recID(fmt.Sprintf("segment %d %d", from, to))
	m.segs[id] = buf.Bytes()
	m.refs = append(m.refs, SegmentRef{ID: id, From: from, To: to})
	return id, nil
}

func (m *memSegments) List(context.Context) ([]SegmentRef, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return nil, errors.New("holders away")
	}
	return slices.Clone(m.refs), nil
}

func (m *memSegments) Read(_ context.Context, id cid.Cid, w io.Writer) error {
	m.mu.Lock()
	b := m.segs[id]
	m.mu.Unlock()
	_, err := w.Write(b)
	return err
}

// A node restored from a backup taken at 2 leaves, whose owner had signed
// a head at 5 since: the leaves after the backup come back from the
// segments in the order the owner signed, not in the order a catch-up
// would append them, and the head of 5 is the same signed note. Until
// then no append and no new head; without the segments the log the
// catch-up rebuilds is not consistent with that head (what the segments
// are for).
func TestRestoreFromSegments(t *testing.T) {
	ctx := context.Background()
	key, self := newKey(t)
	g, _, _ := ledger.NewGenesis(key, "svc", time.Now(), ledger.Builtin())
	core, err := ledger.NewCore(ctx, ledger.CoreConfig{Store: ledger.NewMemStore(), Genesis: g, Types: ledger.Builtin()})
	if err != nil {
		t.Fatal(err)
	}
	mine := recID("mine")
	fl := &fakeLedger{owner: map[cid.Cid]peer.ID{mine: self}, entries: map[cid.Cid]*ledger.Entry{},
		served: map[cid.Cid][]ledger.Served{}, ch: make(chan *ledger.Entry, 16)}
	var es []*ledger.Entry
	for i := range 6 {
		e := served(t, core, key, mine, uint64(i+1))
		fl.entries[e.CID()] = e
		fl.served[mine] = append(fl.served[mine], ledger.Served{Record: mine, Entry: e.CID()})
		es = append(es, e)
	}
	// Live, the owner accepted them in the reverse of the catch-up's
	// (clock, CID) order.
	slices.SortFunc(es, func(a, b *ledger.Entry) int {
		if a.Clock != b.Clock {
			if a.Clock.Less(b.Clock) {
				return 1
			}
			return -1
		}
		return -compareBytes(a.CID().Bytes(), b.CID().Bytes())
	})
	segs := &memSegments{segs: map[cid.Cid][]byte{}}
	open := func(ds datastore.Batching, restoring bool, sg Segments) *Service {
		s, err := New(ctx, Config{Self: self, Key: key, Ledger: fl, DS: ds, Segments: sg, Restoring: restoring})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	waitSize := func(s *Service, n int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for s.log.Size() < n {
			if time.Now().After(deadline) {
				t.Fatalf("log size %d, want %d", s.log.Size(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// The owner: nothing on the ledger at its start (empty served lists
	// while it starts), then the entries arrive live.
	fl.served[mine], fl.ch = nil, make(chan *ledger.Entry, 16)
	ds := dssync.MutexWrap(datastore.NewMapDatastore())
	a := open(ds, false, segs)
	a.Start()
	<-a.caught
	for _, e := range es[:2] {
		fl.ch <- e
	}
	waitSize(a, 2)
	if _, _, err := a.Head(ctx); err != nil {
		t.Fatal(err)
	}
	var backup bytes.Buffer
	if _, err := a.log.Export(ctx, 2, &backup); err != nil {
		t.Fatal(err)
	}
	root2, _ := a.log.Root(ctx, 2)
	for _, e := range es[2:5] {
		fl.ch <- e
	}
	waitSize(a, 5)
	h5, note5, err := a.Head(ctx)
	if err != nil || h5.Size != 5 {
		t.Fatalf("head: %+v %v", h5, err)
	}
	if id, ok := a.Segment(ctx, 5); !ok || len(segs.refs) != 2 || segs.refs[1] != (SegmentRef{ID: id, From: 2, To: 5}) {
		t.Fatalf("segments %+v, the head's %s", segs.refs, id)
	}
	a.Close()
	for _, e := range es {
		fl.served[mine] = append(fl.served[mine], ledger.Served{Record: mine, Entry: e.CID()})
	}

	restored := func(sg Segments) *Service {
		ds := dssync.MutexWrap(datastore.NewMapDatastore())
		if err := auditlog.Import(ctx, ds, bytes.NewReader(backup.Bytes()), 2, root2); err != nil {
			t.Fatal(err)
		}
		fl.ch = make(chan *ledger.Entry, 16)
		s := open(ds, true, sg)
		s.Start()
		return s
	}

	// Without segments the catch-up appends in its own order.
	b := restored(nil)
	if _, err := b.RestoreSegments(ctx); err != nil {
		t.Fatal(err)
	}
	waitSize(b, 6)
	if r, _ := b.log.Root(ctx, 5); r == h5.Root {
		t.Fatal("the catch-up rebuilt the owner's order by itself: this test proves nothing")
	}
	b.Close()

	segs.down = true
	c := restored(segs)
	defer c.Close()
	fl.ch <- es[5] // applied while it restores: held, not appended
	time.Sleep(50 * time.Millisecond)
	if c.log.Size() != 2 {
		t.Fatalf("appended while restoring: %d leaves", c.log.Size())
	}
	hctx, cancel := context.WithTimeout(ctx, time.Second)
	if _, _, err := c.Head(hctx); !fault.Is(err, fault.Unavailable) {
		t.Fatalf("a new head while restoring: %v", err)
	}
	cancel()
	if _, err := c.RestoreSegments(ctx); err == nil || !c.holding() {
		t.Fatalf("segments unreachable: %v, holding %v", err, c.holding())
	}
	// A node that gives up on its segments (the daemon, after ten
	// minutes) appends what it synced, in the catch-up's order, and signs
	// heads again: the head of 5 is then not the owner's, which the log
	// says (ReleaseHold's error).
	d := restored(&memSegments{segs: map[cid.Cid][]byte{}, down: true}) // (its own store: one node at a time)
	fl.ch <- es[5]
	d.ReleaseHold(errors.New("holders away"))
	waitSize(d, 6)
	if h, _, err := d.Head(ctx); err != nil || h.Size != 6 {
		t.Fatalf("a head after giving up on the segments: %+v %v", h, err)
	}
	if r, _ := d.log.Root(ctx, 5); r == h5.Root {
		t.Fatal("the log that gave up on its segments has the owner's order")
	}
	if n, err := d.RestoreSegments(ctx); err != nil || n != 0 {
		t.Fatalf("segments after giving up: %d, %v", n, err)
	}
	d.Close()

	segs.down = false
	if n, err := c.RestoreSegments(ctx); err != nil || n != 3 {
		t.Fatalf("restore from segments: %d leaves, %v", n, err)
	}
	if _, n, err := c.headAt(ctx, 5); err != nil || string(n) != string(note5) {
		t.Fatalf("the head of 5 after the restore: %v, same note %v", err, string(n) == string(note5))
	}
	waitSize(c, 6) // the catch-up, after the segments
	if f, err := c.Consistency(ctx, 5, 6); err != nil {
		t.Fatal(err)
	} else if _, err := auditlog.Verify(f, self); err != nil {
		t.Fatal(err)
	}
	// The next segment follows on from the restored ones.
	if _, _, err := c.Head(ctx); err != nil {
		t.Fatal(err)
	}
	if last := segs.refs[len(segs.refs)-1]; len(segs.refs) != 3 || last.From != 5 || last.To != 6 {
		t.Fatalf("segments after the restore: %+v", segs.refs)
	}
}

// TestCatchUpOnOwnLoadsOnly: the ledger loading another owner's scope from
// a checkpoint (this node starting to follow it) does not make the log
// read every claim and attestation of this node's records again; loading
// its own audit scope, or the global scope, does.
func TestCatchUpOnOwnLoadsOnly(t *testing.T) {
	ctx := context.Background()
	key, self := newKey(t)
	_, other := newKey(t)
	fl := &fakeLedger{owner: map[cid.Cid]peer.ID{}, entries: map[cid.Cid]*ledger.Entry{},
		served: map[cid.Cid][]ledger.Served{}, ch: make(chan *ledger.Entry, 16)}
	s, err := New(ctx, Config{Self: self, Key: key, Ledger: fl, DS: dssync.MutexWrap(datastore.NewMapDatastore())})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Close()
	<-s.caught
	catchUps := func() int {
		fl.mu.Lock()
		defer fl.mu.Unlock()
		return fl.owned
	}
	base := catchUps()
	loaded := func(scope string) *ledger.Entry { return &ledger.Entry{Type: ledger.TypeStateLoaded, Scope: scope} }
	fl.ch <- loaded(ledger.OwnerScope(other))
	fl.ch <- loaded(ledger.AuditScope(other))
	fl.ch <- loaded(ledger.OwnerScope(self))
	time.Sleep(200 * time.Millisecond)
	if n := catchUps() - base; n != 0 {
		t.Fatalf("loading other scopes caught up %d times", n)
	}
	for i, scope := range []string{ledger.AuditScope(self), ""} {
		fl.ch <- loaded(scope)
		deadline := time.Now().Add(5 * time.Second)
		for catchUps()-base != i+1 {
			if time.Now().After(deadline) {
				t.Fatalf("loading scope %q: %d catch-ups, want %d", scope, catchUps()-base, i+1)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
