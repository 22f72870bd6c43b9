package auditlog

import (
	"context"
	"crypto/rand"
	"errors"
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
