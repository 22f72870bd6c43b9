package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/test"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	mh "github.com/multiformats/go-multihash"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/sharing/ledger"
	rules "github.com/medmesh/medmesh/sharing/replication"
)

// Unit tests of the manager with its seams faked: the ledger, the network
// and the records service in memory, a mocknet host. The flows across
// real daemons are node/daemon's replication tests.

func testCid(t testing.TB, s string) cid.Cid {
	t.Helper()
	h, err := mh.Sum([]byte(s), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, h)
}

type fakeLedger struct {
	mu       sync.Mutex
	members  []ledger.Member
	recs     map[cid.Cid]ledger.RecordInfo
	receipts map[cid.Cid][]ledger.Receipt
	lookups  int              // Record calls: the records a pass plans
	looked   map[cid.Cid]bool // the records Record was called with
}

func (l *fakeLedger) Subscribe() (<-chan *ledger.Entry, func()) { return nil, func() {} }

// Holders: the owner and the "held" receipts, as ledger.Holders.
func (l *fakeLedger) Holders(info ledger.RecordInfo) []peer.ID {
	out := []peer.ID{info.Owner}
	for _, rc := range l.Receipts(info.ID) {
		if rc.Status == rules.StatusHeld && rc.Holder != info.Owner {
			out = append(out, rc.Holder)
		}
	}
	slices.Sort(out)
	return out
}
func (l *fakeLedger) Members() []ledger.Member { return l.members }
func (l *fakeLedger) IsMember(p peer.ID) bool {
	return slices.ContainsFunc(l.members, func(m ledger.Member) bool { return m.Peer == p })
}
func (l *fakeLedger) Record(rec cid.Cid) (ledger.RecordInfo, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lookups++
	if l.looked != nil {
		l.looked[rec] = true
	}
	r, ok := l.recs[rec]
	return r, ok
}
func (l *fakeLedger) RecordIDs(context.Context) ([]cid.Cid, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []cid.Cid
	for id := range l.recs {
		out = append(out, id)
	}
	return out, nil
}
func (l *fakeLedger) HeldIDs(_ context.Context, p peer.ID) ([]cid.Cid, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []cid.Cid
	for rec, rcs := range l.receipts {
		for _, rc := range rcs {
			if rc.Holder == p && rc.Status == rules.StatusHeld {
				out = append(out, rec)
			}
		}
	}
	return out, nil
}
func (l *fakeLedger) OwnedIDs(_ context.Context, p peer.ID) ([]cid.Cid, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []cid.Cid
	for id, r := range l.recs {
		if r.Owner == p {
			out = append(out, id)
		}
	}
	return out, nil
}
func (l *fakeLedger) Receipts(rec cid.Cid) []ledger.Receipt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.receipts[rec]
}
func (l *fakeLedger) GrantHistory(cid.Cid) []ledger.Grant { return nil }
func (l *fakeLedger) HoldAuthority(info ledger.RecordInfo) rules.Authority {
	a := rules.Authority{Record: info.ID, Owner: info.Owner, Wanted: int(info.Replicas)}
	for _, m := range l.members {
		a.Members = append(a.Members, rules.Member{Peer: m.Peer, Org: m.Org})
	}
	for _, rc := range l.Receipts(info.ID) {
		a.Receipts = append(a.Receipts, rules.Receipt{Holder: rc.Holder, Status: rc.Status, Reason: rc.Reason})
	}
	return a
}
func (l *fakeLedger) Append(context.Context, string, any) (*ledger.Entry, error) {
	return nil, errors.New("fake ledger: no appends")
}

// fakeNet fetches nothing; it records what it was asked to provide.
type fakeNet struct {
	mu        sync.Mutex
	providers []peer.ID
	provided  [][]cid.Cid
	failBatch int // 1-based index of a Provide call that fails; 0: none
}

func (n *fakeNet) Connect(context.Context, peer.AddrInfo) error { return errors.New("fake network") }
func (n *fakeNet) Get(context.Context, cid.Cid) (blocks.Block, error) {
	return nil, errors.New("fake network: nothing to fetch")
}
func (n *fakeNet) GetMany(context.Context, []cid.Cid, func(blocks.Block) error) error {
	return errors.New("fake network: nothing to fetch")
}
func (n *fakeNet) Provide(_ context.Context, cids []cid.Cid) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.provided = append(n.provided, slices.Clone(cids))
	if len(n.provided) == n.failBatch {
		return errors.New("fake network: provide failed")
	}
	return nil
}
func (n *fakeNet) FindProviders(context.Context, cid.Cid, int) []peer.ID { return n.providers }

type fakeBlocks struct{}

func (fakeBlocks) Get(context.Context, cid.Cid) (blocks.Block, error) { return nil, errors.New("none") }
func (fakeBlocks) Has(context.Context, cid.Cid) (bool, error)         { return false, nil }
func (fakeBlocks) DeleteBlock(context.Context, cid.Cid) error         { return nil }

type fakeSync struct{}

func (fakeSync) Sync(context.Context, datastore.Key) error { return nil }

type fakeRecords struct {
	idx   map[cid.Cid]cid.Cid
	owned map[cid.Cid]bool
}

func (r *fakeRecords) AddBlocks(context.Context, cid.Cid, []cid.Cid) {}
func (r *fakeRecords) RecordOf(b cid.Cid) (cid.Cid, bool)            { rec, ok := r.idx[b]; return rec, ok }
func (r *fakeRecords) BlocksOf(rec cid.Cid) []cid.Cid {
	var out []cid.Cid
	for b, x := range r.idx {
		if x == rec {
			out = append(out, b)
		}
	}
	return out
}
func (r *fakeRecords) IndexedBlocks() map[cid.Cid]cid.Cid       { return r.idx }
func (r *fakeRecords) Owns(_ context.Context, rec cid.Cid) bool { return r.owned[rec] }
func (r *fakeRecords) Owned(context.Context) ([]cid.Cid, error) { return nil, nil }

type fixture struct {
	m       *Manager
	ledger  *fakeLedger
	net     *fakeNet
	records *fakeRecords
	pins    *Pinset
}

func newFixture(t *testing.T, self peer.ID, members int, o Options) *fixture {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	h, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		ledger:  &fakeLedger{recs: map[cid.Cid]ledger.RecordInfo{}, receipts: map[cid.Cid][]ledger.Receipt{}},
		net:     &fakeNet{},
		records: &fakeRecords{idx: map[cid.Cid]cid.Cid{}, owned: map[cid.Cid]bool{}},
	}
	f.ledger.members = append(f.ledger.members, ledger.Member{Peer: self})
	for i := range members - 1 {
		f.ledger.members = append(f.ledger.members, ledger.Member{Peer: peer.ID(fmt.Sprintf("member-%02d", i))})
	}
	if f.pins, err = OpenPinset(context.Background(), dssync.MutexWrap(datastore.NewMapDatastore())); err != nil {
		t.Fatal(err)
	}
	f.m, err = New(Config{
		Self: self, Options: o, Replicas: 2, Ledger: f.ledger, Net: f.net, Host: h, Blocks: fakeBlocks{},
		Durable: fakeSync{}, Pins: f.pins, Records: f.records, Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.m.Close)
	return f
}

func TestPinset(t *testing.T) {
	ctx := context.Background()
	ds := dssync.MutexWrap(datastore.NewMapDatastore())
	s, err := OpenPinset(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	a, b, bl := testCid(t, "a"), testCid(t, "b"), testCid(t, "a's block list")
	if err := s.Pin(ctx, a, bl); err != nil {
		t.Fatal(err)
	}
	if err := s.Pin(ctx, b, bl); err != nil {
		t.Fatal(err)
	}
	if err := s.Unpin(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := ds.Put(ctx, pinPrefix.ChildString("not-a-cid"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	s, err = OpenPinset(ctx, ds) // as a restart does
	if err != nil {
		t.Fatal(err)
	}
	if !s.Pinned(a) || s.Pinned(b) || s.Len() != 1 {
		t.Fatalf("after reopening: a pinned %v, b pinned %v, %d pins", s.Pinned(a), s.Pinned(b), s.Len())
	}

	r1 := s.Hold(b)
	r2 := s.Hold(b)
	r1()
	r1() // idempotent
	pins, inflight := s.Holdings()
	if pins[a] != bl || len(pins) != 1 || !slices.Equal(inflight, []cid.Cid{b}) {
		t.Fatalf("holdings with one of two holds released: %v %v", pins, inflight)
	}
	s.Exclusive(func(held func(cid.Cid) bool, in []cid.Cid) {
		if !held(a) || !held(b) || held(bl) || len(in) != 1 {
			t.Errorf("exclusive view: held a %v, b %v, bl %v; in flight %v", held(a), held(b), held(bl), in)
		}
	})
	r2()
	if _, inflight := s.Holdings(); len(inflight) != 0 {
		t.Fatalf("in flight after both holds ended: %v", inflight)
	}
}

func TestCannotTake(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    capacity
		size uint64
		want string // a substring; "" when the record fits
	}{
		{"no quota, free unknown", capacity{}, 1 << 40, ""},
		{"within quota", capacity{quota: 100, used: 60}, 40, ""},
		{"over quota", capacity{quota: 100, used: 60}, 41, "storage quota exceeded"},
		{"room beside the reserve", capacity{free: 1000, freeOK: true, reserve: 500}, 500, ""},
		{"into the reserve", capacity{free: 1000, freeOK: true, reserve: 500}, 501, "disk full"},
	} {
		got := tc.c.cannotTake(ledger.RecordInfo{Size: tc.size})
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestWorkFollowsInvolvement: after the first pass over every record, a
// periodic re-plan looks only at the records this node is involved in, and
// an entry about a record plans that record alone: idle work follows the
// node's own records, not the network's (issue #16).
func TestWorkFollowsInvolvement(t *testing.T) {
	const self = peer.ID("self")
	f := newFixture(t, self, 30, Options{Disabled: true})
	const n = 600
	var mine cid.Cid
	for i := range n {
		rec := testCid(t, fmt.Sprint("record ", i))
		owner := f.ledger.members[1+i%29].Peer
		if i == 0 {
			owner, mine = self, rec
		}
		f.ledger.recs[rec] = ledger.RecordInfo{ID: rec, Owner: owner, Replicas: 2}
	}
	f.m.pass() // at start: every record
	involved := len(f.m.involved)
	if !f.m.involved[mine] || involved < 2 || involved > n/4 {
		t.Fatalf("%d of %d records involve this node (its own included: %v); placement's window of 3 of 30 members should involve about a tenth", involved, n, f.m.involved[mine])
	}
	t.Logf("%d of %d records involve this node", involved, n)
	var other cid.Cid
	for rec := range f.ledger.recs {
		if !f.m.involved[rec] {
			other = rec
			break
		}
	}

	f.ledger.lookups = 0
	f.m.markInvolved() // the slow sweep, or a liveness change
	f.m.pass()
	if f.ledger.lookups != involved {
		t.Fatalf("a re-plan of the involved records looked up %d records, want %d", f.ledger.lookups, involved)
	}

	f.ledger.lookups = 0
	f.m.dirty[other] = true // an entry about a record this node has nothing to do with
	f.m.pass()
	if f.ledger.lookups != 1 || f.m.involved[other] {
		t.Fatalf("an entry about one uninvolved record: %d lookups, involved %v", f.ledger.lookups, f.m.involved[other])
	}

	// A member that holds three records this node is not involved in
	// leaves (or goes away): those three and the involved ones are
	// planned, not every record.
	gone := f.ledger.members[7].Peer
	var held []cid.Cid
	for rec := range f.ledger.recs {
		if !f.m.involved[rec] && len(held) < 3 && f.ledger.recs[rec].Owner != gone {
			held = append(held, rec)
			f.ledger.receipts[rec] = []ledger.Receipt{{Holder: gone, Status: rules.StatusHeld}}
		}
	}
	f.ledger.lookups = 0
	inv := len(f.m.involved)
	f.m.changed[gone] = true
	f.m.pass()
	if f.ledger.lookups != inv+len(held) {
		t.Fatalf("a change of one member planned %d records, want its %d holdings and the %d involved", f.ledger.lookups, len(held), inv)
	}

	// The ledger loaded a scope's state from a checkpoint (this node
	// started following it): an owner scope's load plans that owner's
	// records, an audit scope's nothing, the global scope's (joining)
	// every record. It planned every record for any of them before.
	owner := test.RandPeerIDFatal(t)
	for i := range 5 {
		rec := testCid(t, fmt.Sprint("loaded ", i))
		f.ledger.recs[rec] = ledger.RecordInfo{ID: rec, Owner: owner, Replicas: 2}
	}
	for _, c := range []struct {
		name  string
		scope string
		want  int
	}{
		{"an owner scope", ledger.OwnerScope(owner), 5},
		{"an audit scope", ledger.AuditScope(owner), 0},
		{"the global scope", "", len(f.ledger.recs)},
	} {
		f.ledger.lookups = 0
		marked := f.m.onEntry(&ledger.Entry{Type: ledger.TypeStateLoaded, Scope: c.scope})
		if marked != (c.want > 0) {
			t.Fatalf("%s loaded: onEntry says %v", c.name, marked)
		}
		f.m.pass()
		if f.ledger.lookups != c.want {
			t.Fatalf("%s loaded: planned %d records, want %d", c.name, f.ledger.lookups, c.want)
		}
	}
}

func TestStatus(t *testing.T) {
	const self = peer.ID("self")
	f := newFixture(t, self, 3, Options{Disabled: true})
	rec := testCid(t, "rec")
	f.ledger.recs[rec] = ledger.RecordInfo{ID: rec, Owner: self}
	f.ledger.receipts[rec] = []ledger.Receipt{{Holder: "member-01", Status: rules.StatusHeld}}
	p1, p2 := peer.ID("provider one"), peer.ID("provider two")
	f.net.providers = []peer.ID{p2, p1, p2}
	st, err := f.m.Status(context.Background(), rec)
	if err != nil {
		t.Fatal(err)
	}
	wantProviders := []peer.ID{p1, p2}
	if p1.String() > p2.String() {
		wantProviders = []peer.ID{p2, p1}
	}
	if st.Replicas != 2 || !slices.Equal(st.Holders, f.ledger.Holders(f.ledger.recs[rec])) || len(st.Holders) != 2 ||
		!slices.Equal(st.Reachable, []peer.ID{self}) || !slices.Equal(st.Providers, wantProviders) || !st.LastVerified.IsZero() {
		t.Fatalf("status %+v", st)
	}
	if _, err := f.m.Status(context.Background(), testCid(t, "unknown")); !fault.Is(err, fault.NotFound) {
		t.Fatalf("status of an unknown record: %v", err)
	}
}

// TestReprovide: the blocks of records this node owns or pins are
// announced, in batches; a failed batch is counted, and the run goes on.
func TestReprovide(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "self", 3, Options{Disabled: true, ReprovideBatch: 3})
	owned, pinned, other := testCid(t, "owned"), testCid(t, "pinned"), testCid(t, "other")
	f.records.owned[owned] = true
	if err := f.pins.Pin(ctx, pinned, testCid(t, "block list")); err != nil {
		t.Fatal(err)
	}
	var want []cid.Cid
	for i := range 8 {
		b, rec := testCid(t, fmt.Sprint("block ", i)), owned
		switch {
		case i%2 == 1:
			rec = pinned
		case i == 4:
			rec = other
		}
		f.records.idx[b] = rec
		if rec != other {
			want = append(want, b)
		}
	}
	f.net.failBatch = 2
	res, err := f.m.Reprovide(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []cid.Cid
	for _, b := range f.net.provided {
		if len(b) > 3 {
			t.Fatalf("a batch of %d, want at most 3", len(b))
		}
		got = append(got, b...)
	}
	if len(got) != len(want) || res.Blocks+res.Failed != len(want) || res.Failed != len(f.net.provided[1]) {
		t.Fatalf("provided %d blocks (%d ok, %d failed), want %d", len(got), res.Blocks, res.Failed, len(want))
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Fatalf("block %s of an owned or pinned record was not provided", w)
		}
	}
}

// TestSweepBatches: a sweep takes the involved records SweepBatch an
// Interval, every record once, and a sweep due while one is running does
// not restart it.
func TestSweepBatches(t *testing.T) {
	const self = peer.ID("self")
	f := newFixture(t, self, 10, Options{Disabled: true, SweepBatch: 16})
	const n = 40 // this node's own records, one replica each (never short)
	for i := range n {
		rec := testCid(t, fmt.Sprint("own record ", i))
		f.ledger.recs[rec] = ledger.RecordInfo{ID: rec, Owner: self, Replicas: 1}
	}
	f.m.pass()
	if len(f.m.involved) != n || len(f.m.short) != 0 {
		t.Fatalf("after the first pass: %d involved, %d short", len(f.m.involved), len(f.m.short))
	}
	f.ledger.looked = map[cid.Cid]bool{}
	planned := map[cid.Cid]int{}
	tick := func(want int) {
		t.Helper()
		f.ledger.lookups = 0
		clear(f.ledger.looked)
		f.m.tick()
		if f.ledger.lookups != want {
			t.Fatalf("a tick planned %d records, want %d", f.ledger.lookups, want)
		}
		for rec := range f.ledger.looked {
			planned[rec]++
		}
	}
	tick(0) // no sweep running: a quiet tick plans nothing
	f.m.startSweep()
	tick(16)
	f.m.startSweep() // due again while running: goes on, not over
	tick(16)
	tick(8)
	tick(0)
	if len(planned) != n {
		t.Fatalf("the sweep planned %d of %d records", len(planned), n)
	}
	for rec, k := range planned {
		if k != 1 {
			t.Fatalf("record %s planned %d times in one sweep", rec, k)
		}
	}
	f.m.startSweep() // the next one
	tick(16)
}

// TestProofsSample: a round of proofs of storage challenges a random
// sample of ChallengeRecords of the records this node holds, plus every
// record with a holder failing its proofs; after a failed challenge, the
// next round challenges every record, and the one after samples again.
func TestProofsSample(t *testing.T) {
	const self = peer.ID("self")
	f := newFixture(t, self, 10, Options{Disabled: true, ChallengeRecords: 16})
	ctx := context.Background()
	const n = 100
	var recs []cid.Cid
	for i := range n {
		rec := testCid(t, fmt.Sprint("held record ", i))
		owner := f.ledger.members[1+i%9].Peer
		f.ledger.recs[rec] = ledger.RecordInfo{ID: rec, Owner: owner, Replicas: 3}
		if err := f.pins.Pin(ctx, rec, testCid(t, fmt.Sprint("block list ", i))); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	round := func() map[cid.Cid]bool {
		t.Helper()
		f.ledger.looked = map[cid.Cid]bool{}
		f.m.verifyAll()
		return f.ledger.looked
	}
	if got := round(); len(got) != 16 {
		t.Fatalf("a round challenged %d of %d held records, want a sample of 16", len(got), n)
	}
	// Samples differ between rounds: over enough rounds every record is
	// challenged (a lost record is found, not just the same 16 checked).
	seen := map[cid.Cid]bool{}
	for i := 0; i < 60 && len(seen) < n; i++ {
		for rec := range round() {
			seen[rec] = true
		}
	}
	if len(seen) != n {
		t.Fatalf("60 rounds challenged %d of %d records", len(seen), n)
	}
	// Records with a failing holder are challenged every round.
	f.m.mu.Lock()
	for _, rec := range recs[:5] {
		f.m.failing[rec] = true
	}
	f.m.mu.Unlock()
	for range 5 {
		got := round()
		if len(got) < 16 || len(got) > 21 {
			t.Fatalf("a round with 5 failing records challenged %d", len(got))
		}
		for _, rec := range recs[:5] {
			if !got[rec] {
				t.Fatalf("a failing record %s was not challenged", rec)
			}
		}
	}
	// After a failed challenge: every record, once; then samples again.
	f.m.mu.Lock()
	f.m.fullProof = true
	f.m.mu.Unlock()
	if got := round(); len(got) != n {
		t.Fatalf("the round after a failed challenge challenged %d of %d", len(got), n)
	}
	if got := round(); len(got) > 21 {
		t.Fatalf("the round after the full one challenged %d", len(got))
	}
}
