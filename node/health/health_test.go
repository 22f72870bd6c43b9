package health

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/sharing/ledger"
	mh "github.com/multiformats/go-multihash"
)

// fakeLedger is a ledger whose state the test sets.
type fakeLedger struct {
	self, other peer.ID
	records     []ledger.RecordInfo
	receipts    map[cid.Cid][]ledger.Receipt
	heads       []cid.Cid
	known       map[cid.Cid]bool
	peerHeads   []cid.Cid
	peerErr     error
	// syncLearns: a sync with the peer makes its heads known here.
	syncLearns bool
	synced     int
	gossip     []peer.ID
	repairs    int64
	ahead      []peer.ID
}

func (f *fakeLedger) IsMember(p peer.ID) bool { return p == f.self || p == f.other }
func (f *fakeLedger) Members() []ledger.Member {
	return []ledger.Member{{Peer: f.self}, {Peer: f.other}}
}
func (f *fakeLedger) OwnedRecords(_ context.Context, p peer.ID) ([]ledger.RecordInfo, error) {
	var out []ledger.RecordInfo
	for _, r := range f.records {
		if r.Owner == p {
			out = append(out, r)
		}
	}
	return out, nil
}
func (f *fakeLedger) HeldIDs(_ context.Context, p peer.ID) ([]cid.Cid, error) {
	var out []cid.Cid
	for rec, rcs := range f.receipts {
		for _, rc := range rcs {
			if rc.Holder == p && rc.Status == "held" {
				out = append(out, rec)
			}
		}
	}
	return out, nil
}
func (f *fakeLedger) Receipts(r cid.Cid) []ledger.Receipt { return f.receipts[r] }
func (f *fakeLedger) Heads() []cid.Cid                    { return f.heads }
func (f *fakeLedger) PendingCount() int                   { return 0 }
func (f *fakeLedger) Knows(c cid.Cid) bool                { return f.known[c] }
func (f *fakeLedger) PeerHeads(context.Context, host.Host, peer.ID) ([]cid.Cid, error) {
	return f.peerHeads, f.peerErr
}
func (f *fakeLedger) GossipPeers() []peer.ID { return f.gossip }
func (f *fakeLedger) GossipRepairs() int64   { return f.repairs }
func (f *fakeLedger) ClockAhead() []peer.ID  { return f.ahead }
func (f *fakeLedger) SyncWith(context.Context, host.Host, peer.ID) error {
	f.synced++
	if f.syncLearns {
		for _, c := range f.peerHeads {
			f.known[c] = true
		}
	}
	return nil
}

func testCid(t *testing.T, s string) cid.Cid {
	h, err := mh.Sum([]byte(s), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, h)
}

func newHost(t *testing.T) host.Host {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestCheck(t *testing.T) {
	a, b := newHost(t), newHost(t)
	rec1, rec2, rec3 := testCid(t, "r1"), testCid(t, "r2"), testCid(t, "r3")
	h1, h2 := testCid(t, "h1"), testCid(t, "h2")
	f := &fakeLedger{
		self: a.ID(), other: b.ID(),
		records: []ledger.RecordInfo{
			{ID: rec1, Owner: a.ID(), Replicas: 2}, // held by b: fine once b is connected
			{ID: rec2, Owner: a.ID()},              // wants Factor (3): short
			{ID: rec3, Owner: b.ID(), Replicas: 2}, // a holds it for b
		},
		receipts: map[cid.Cid][]ledger.Receipt{
			rec1: {{Holder: b.ID(), Status: "held"}},
			rec3: {{Holder: a.ID(), Status: "held"}},
		},
		heads: []cid.Cid{h1}, known: map[cid.Cid]bool{h1: true}, peerHeads: []cid.Cid{h1},
	}
	k := New(Config{Ledger: f, Host: a, Factor: 3, DataDir: t.TempDir()})
	ctx := context.Background()

	// b not connected: no other member reachable, both owned records short.
	h := k.Check(ctx)
	if h.Healthy || h.ConnectedCount != 0 || h.MemberCount != 1 || len(h.Disconnected) != 1 || h.OwnedCount != 2 || h.UnderReplicatedCount != 2 || h.HeldCount != 1 || len(h.Problems) != 2 {
		t.Fatalf("disconnected: %+v", h)
	}

	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
	h = k.Check(ctx)
	if h.ConnectedCount != 1 || h.UnderReplicatedCount != 1 || h.UnderReplicatedIDs[0] != rec2.String() || !h.Ledger.InSync || h.Ledger.AgreeCount != 1 || h.Ledger.ComparedCount != 1 {
		t.Fatalf("connected: %+v", h)
	}
	f.records = f.records[:1] // drop the short record
	if h = k.Check(ctx); !h.Healthy || len(h.Warnings) != 0 {
		t.Fatalf("healthy: %+v", h)
	}
	// Restored from a backup, its audit log waiting for its segments: a
	// warning, not a problem.
	restoring := true
	k.c.AuditRestoring = func() bool { return restoring }
	if h = k.Check(ctx); !h.Healthy || len(h.Warnings) != 1 || !strings.Contains(h.Warnings[0], "audit log waits for the segments") {
		t.Fatalf("audit log restoring: %+v", h)
	}
	restoring = false
	if h = k.Check(ctx); !h.Healthy || len(h.Warnings) != 0 {
		t.Fatalf("audit log restored: %+v", h)
	}

	// The peer has an entry we lack; a sync brings it: in sync, healthy.
	f.peerHeads, f.syncLearns = []cid.Cid{h2}, true
	if h = k.Check(ctx); !h.Healthy || !h.Ledger.InSync || h.Ledger.AgreeCount != 0 || f.synced != 1 {
		t.Fatalf("behind, sync works: %+v (synced %d)", h, f.synced)
	}
	// The sync does not bring it: the peer is ahead, a problem.
	f.peerHeads, f.syncLearns = []cid.Cid{testCid(t, "h3")}, false
	if h = k.Check(ctx); h.Healthy || h.Ledger.InSync || len(h.Ledger.Ahead) != 1 || h.Ledger.Ahead[0] != b.ID().String() {
		t.Fatalf("behind, sync fails: %+v", h)
	}
	// A peer that does not answer is not compared.
	f.peerErr = errors.New("refused")
	if h = k.Check(ctx); !h.Healthy || h.Ledger.ComparedCount != 0 {
		t.Fatalf("peer does not answer: %+v", h)
	}
}

// TestCheckNoGossip: a member connected for longer than GossipGrace that
// GossipSub does not list on the ledger's topic is named in no_gossip with
// a warning (not a problem: its entries still come by sync); listed, it is
// not; one connected only just now is not expected to be listed yet.
func TestCheckNoGossip(t *testing.T) {
	a, b := newHost(t), newHost(t)
	h1 := testCid(t, "h1")
	f := &fakeLedger{self: a.ID(), other: b.ID(), heads: []cid.Cid{h1}, known: map[cid.Cid]bool{h1: true}, peerHeads: []cid.Cid{h1}}
	ctx := context.Background()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
	if h := New(Config{Ledger: f, Host: a, DataDir: t.TempDir()}).Check(ctx); len(h.Ledger.NoGossip) != 0 || len(h.Warnings) != 0 {
		t.Fatalf("a member connected just now: %+v", h)
	}
	k := New(Config{Ledger: f, Host: a, DataDir: t.TempDir(), GossipGrace: time.Nanosecond})
	h := k.Check(ctx)
	if !h.Healthy || len(h.Ledger.NoGossip) != 1 || h.Ledger.NoGossip[0] != b.ID().String() || len(h.Warnings) != 1 || !strings.Contains(h.Warnings[0], "exchange no gossip") {
		t.Fatalf("a connected member GossipSub does not list: %+v", h)
	}
	f.gossip = []peer.ID{b.ID()}
	f.repairs = 2
	if h = k.Check(ctx); !h.Healthy || len(h.Ledger.NoGossip) != 0 || len(h.Warnings) != 0 || h.Ledger.GossipRepairs != 2 || h.Ledger.ClockAhead == nil {
		t.Fatalf("listed, after two repairs: %+v", h)
	}
}

// TestCheckClockAhead: a member whose entries the ledger held back for a
// clock too far ahead is named in clock_ahead, and that is a problem (its
// entries are not applied) whose message says what to check.
func TestCheckClockAhead(t *testing.T) {
	a, b := newHost(t), newHost(t)
	h1 := testCid(t, "h1")
	f := &fakeLedger{self: a.ID(), other: b.ID(), heads: []cid.Cid{h1}, known: map[cid.Cid]bool{h1: true}, peerHeads: []cid.Cid{h1}, ahead: []peer.ID{b.ID()}}
	h := New(Config{Ledger: f, Host: a, DataDir: t.TempDir()}).Check(context.Background())
	if h.Healthy || len(h.Ledger.ClockAhead) != 1 || h.Ledger.ClockAhead[0] != b.ID().String() ||
		!slices.ContainsFunc(h.Problems, func(p string) bool {
			return strings.Contains(p, "clocks are more than 10m0s ahead") && strings.Contains(p, "NTP")
		}) {
		t.Fatalf("a member whose entries were held back: %+v", h)
	}
}
