package console

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	bstore "github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/keywrap"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// feedNode is one node's real ledger, for the feed's tests.
type feedNode struct {
	id  peer.ID
	kem *keywrap.PrivateKey
	led *ledger.Ledger
}

func newFeedNode(t *testing.T, key crypto.PrivKey, genesis []byte, now func() time.Time) *feedNode {
	id, _ := peer.IDFromPrivateKey(key)
	kem, err := keywrap.Generate()
	if err != nil {
		t.Fatal(err)
	}
	mem := func() datastore.Batching { return dssync.MutexWrap(datastore.NewMapDatastore()) }
	led, err := ledger.Open(context.Background(), ledger.Options{DS: mem(), Blocks: bstore.NewBlockstore(mem()), Key: key, Genesis: genesis,
		Logger: slog.New(slog.DiscardHandler), Now: now, Types: ledger.Builtin()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	return &feedNode{id: id, kem: kem, led: led}
}

// on appends an entry on n's ledger and hands it to the others'.
func on(t *testing.T, n *feedNode, others []*feedNode, typ string, payload any) *ledger.Entry {
	t.Helper()
	e, err := n.led.Append(context.Background(), typ, payload)
	if err != nil {
		t.Fatalf("%s: %v", typ, err)
	}
	for _, o := range others {
		if err := o.led.Ingest(context.Background(), e.Bytes()); err != nil {
			t.Fatalf("ingest %s: %v", typ, err)
		}
	}
	return e
}

type labels struct{ Records }

func (labels) Label(ctx context.Context, info ledger.RecordInfo) (access.Label, bool) {
	return access.Label{Name: "name of " + info.ID.String()[:12]}, true
}
func (labels) Add(context.Context, records.AddRequest) (*records.AddResult, error) { return nil, nil }
func (labels) Get(context.Context, cid.Cid, records.GetRequest, io.Writer) error   { return nil }

func blockID(s string) cid.Cid {
	h, _ := mh.Sum([]byte(s), mh.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, h)
}

// TestFeed: the grantee's feed says shared and revoked once per change
// (the newest version's entry stands for a record's versions), with the
// owner's organisation and the grant's purpose; reads reach the owner's
// feed only, as the reader's claim and as the server's attestation; a
// member the record was not shared with hears nothing.
func TestFeed(t *testing.T) {
	now := func() time.Time { return time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC) }
	var keys []crypto.PrivKey
	for range 3 {
		k, _, _ := crypto.GenerateEd25519Key(nil)
		keys = append(keys, k)
	}
	genesis, _, err := ledger.NewGenesis(keys[0], "feed", now(), ledger.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	owner, grantee, other := newFeedNode(t, keys[0], genesis, now), newFeedNode(t, keys[1], genesis, now), newFeedNode(t, keys[2], genesis, now)
	all := []*feedNode{owner, grantee, other}
	rest := func(n *feedNode) []*feedNode {
		var out []*feedNode
		for _, o := range all {
			if o != n {
				out = append(out, o)
			}
		}
		return out
	}
	on(t, owner, rest(owner), ledger.TypeMemberOrg, ledger.MemberOrgPayload{Peer: owner.id, Org: "St Mary"})
	on(t, owner, rest(owner), ledger.TypeMemberAdd, ledger.MemberAddPayload{Peer: grantee.id, Org: "Central Lab"})
	on(t, owner, rest(owner), ledger.TypeMemberAdd, ledger.MemberAddPayload{Peer: other.id, Org: "Elsewhere"})
	for _, n := range all {
		on(t, n, rest(n), ledger.TypeKeyAnnounce, ledger.KeyAnnouncePayload{Public: n.kem.Public()})
	}

	feeds := map[*feedNode]*Feed{}
	subs := map[*feedNode]<-chan api.Event{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, n := range all {
		f := newFeed(n.id, n.led, newNames(labels{}), slog.New(slog.DiscardHandler))
		feeds[n] = f
		_, ch, stop := f.Subscribe(-1)
		defer stop()
		subs[n] = ch
		go f.run(ctx)
	}
	time.Sleep(50 * time.Millisecond) // the feeds subscribe to their ledgers

	envelope := func(to *feedNode) []byte {
		env, err := keywrap.Wrap(to.kem.Public(), make([]byte, 32), keywrap.Info("test"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := env.MarshalBinary()
		return b
	}
	v1, v2 := blockID("v1"), blockID("v2")
	on(t, owner, rest(owner), ledger.TypeRecordAnnounce, ledger.RecordAnnouncePayload{Record: v1, Blocklist: blockID("bl1"), Size: 10, Replicas: 1,
		Class: "report", Version: 1, OwnerEnvelope: envelope(owner)})
	on(t, owner, rest(owner), ledger.TypeRecordAnnounce, ledger.RecordAnnouncePayload{Record: v2, Blocklist: blockID("bl2"), Size: 11, Replicas: 1,
		Class: "report", Version: 2, Prev: v1, OwnerEnvelope: envelope(owner)})
	exp := now().Add(72 * time.Hour)
	on(t, owner, rest(owner), ledger.TypeGrant, ledger.GrantPayload{Record: v1, Grantee: grantee.id, Envelope: envelope(grantee), Purpose: "treatment", Expires: exp})
	g2 := on(t, owner, rest(owner), ledger.TypeGrant, ledger.GrantPayload{Record: v2, Grantee: grantee.id, Envelope: envelope(grantee), Purpose: "treatment", Expires: exp})
	on(t, grantee, rest(grantee), ledger.TypeAccess, ledger.AccessPayload{Record: v2, Version: 2, Purpose: "treatment", Time: now(), Grant: g2.CID()})
	on(t, owner, rest(owner), ledger.TypeServed, ledger.ServedPayload{Record: v2, Reader: grantee.id, Grant: g2.CID(), Reads: 1, Blocks: 3, First: now(), Last: now()})
	on(t, owner, rest(owner), ledger.TypeServed, ledger.ServedPayload{Record: v2, Reader: grantee.id, Grant: g2.CID(), Blocks: 2, First: now(), Last: now()}) // blocks only: not a read
	on(t, owner, rest(owner), ledger.TypeRevoke, ledger.RevokePayload{Record: v1, Grantee: grantee.id})
	on(t, owner, rest(owner), ledger.TypeRevoke, ledger.RevokePayload{Record: v2, Grantee: grantee.id})

	next := func(n *feedNode) api.Event {
		t.Helper()
		select {
		case ev := <-subs[n]:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
		}
		return api.Event{}
	}
	shared := next(grantee)
	if shared.Type != api.EventShared || shared.ID != v2.String() || shared.Version != 2 || shared.Owner != owner.id.String() || shared.OwnerOrg != "St Mary" ||
		shared.Grantee != grantee.id.String() || shared.GranteeOrg != "Central Lab" || shared.Purpose != "treatment" || !shared.Expires.Equal(exp) ||
		shared.Name != "name of "+v2.String()[:12] || shared.Class != "report" || shared.Entry != g2.CID().String() {
		t.Errorf("shared: %+v", shared)
	}
	if rv := next(grantee); rv.Type != api.EventRevoked || rv.ID != v2.String() || rv.OwnerOrg != "St Mary" {
		t.Errorf("revoked: %+v", rv)
	}
	claim := next(owner)
	if claim.Type != api.EventRead || claim.ID != v2.String() || claim.Reader != grantee.id.String() || claim.ReaderOrg != "Central Lab" ||
		claim.Purpose != "treatment" || len(claim.AttestedBy) != 0 || claim.Count != 1 {
		t.Errorf("claim: %+v", claim)
	}
	served := next(owner)
	if served.Type != api.EventRead || served.Reader != grantee.id.String() || len(served.AttestedBy) != 1 || served.AttestedBy[0] != owner.id.String() || served.Count != 1 {
		t.Errorf("attestation: %+v", served)
	}
	for n, want := range map[*feedNode]int{owner: 2, grantee: 2, other: 0} {
		select {
		case ev := <-subs[n]:
			t.Errorf("an extra event: %+v", ev)
		case <-time.After(200 * time.Millisecond):
		}
		if got := len(feeds[n].Recent(0)); got != want {
			t.Errorf("%d events kept, want %d", got, want)
		}
	}
	// A page that reconnects after the first event gets the rest.
	if back, _, stop := feeds[grantee].Subscribe(int64(shared.Seq)); len(back) != 1 || back[0].Type != api.EventRevoked {
		t.Errorf("backlog after %d: %+v", shared.Seq, back)
	} else {
		stop()
	}
}
