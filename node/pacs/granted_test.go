package pacs

import (
	"context"
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

	"github.com/medmesh/medmesh/sharing/keywrap"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// TestGrantsWorkFollowsThisNode: the granted-studies loop queues a record
// for a grant or revoke naming this node, and nothing for another node's
// grant, a revoke of it, or a record announced (issue #16: a node's work
// does not grow with records it has nothing to do with).
func TestGrantsWorkFollowsThisNode(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	ctx := context.Background()
	var keys []crypto.PrivKey
	var ids []peer.ID
	var kems []*keywrap.PrivateKey
	for range 3 {
		k, _, _ := crypto.GenerateEd25519Key(nil)
		id, _ := peer.IDFromPrivateKey(k)
		kem, err := keywrap.Generate()
		if err != nil {
			t.Fatal(err)
		}
		keys, ids, kems = append(keys, k), append(ids, id), append(kems, kem)
	}
	genesis, _, err := ledger.NewGenesis(keys[0], "pacs", now, ledger.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	mem := func() datastore.Batching { return dssync.MutexWrap(datastore.NewMapDatastore()) }
	var leds []*ledger.Ledger
	for _, k := range keys {
		led, err := ledger.Open(ctx, ledger.Options{DS: mem(), Blocks: bstore.NewBlockstore(mem()), Key: k, Genesis: genesis,
			Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }, Types: ledger.Builtin()})
		if err != nil {
			t.Fatal(err)
		}
		defer led.Close()
		leds = append(leds, led)
	}
	self, other := ids[1], ids[2]
	on := func(i int, typ string, payload any) *ledger.Entry { // written on i's ledger, given to the others
		t.Helper()
		e, err := leds[i].Append(ctx, typ, payload)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		for j, l := range leds {
			if j != i {
				if err := l.Ingest(ctx, e.Bytes()); err != nil {
					t.Fatalf("ingest %s: %v", typ, err)
				}
			}
		}
		return e
	}
	add := func(typ string, payload any) *ledger.Entry { t.Helper(); return on(0, typ, payload) }
	add(ledger.TypeMemberAdd, ledger.MemberAddPayload{Peer: self, Org: "hospital"})
	add(ledger.TypeMemberAdd, ledger.MemberAddPayload{Peer: other, Org: "elsewhere"})
	envelope := func(i int) []byte {
		env, err := keywrap.Wrap(kems[i].Public(), make([]byte, 32), keywrap.Info("test"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := env.MarshalBinary()
		return b
	}
	for i := range leds {
		on(i, ledger.TypeKeyAnnounce, ledger.KeyAnnouncePayload{Public: kems[i].Public()})
	}
	id := func(s string) cid.Cid {
		h, _ := mh.Sum([]byte(s), mh.SHA2_256, -1)
		return cid.NewCidV1(cid.Raw, h)
	}
	mine, theirs := id("granted to self"), id("granted to other")
	var es []*ledger.Entry
	for _, rec := range []cid.Cid{mine, theirs} {
		es = append(es, add(ledger.TypeRecordAnnounce, ledger.RecordAnnouncePayload{Record: rec, Blocklist: id("bl " + rec.String()),
			Size: 10, Replicas: 1, Class: ledger.ClassImaging, Version: 1, OwnerEnvelope: envelope(0)}))
	}
	exp := now.Add(72 * time.Hour)
	es = append(es,
		add(ledger.TypeGrant, ledger.GrantPayload{Record: mine, Grantee: self, Envelope: envelope(1), Purpose: "treatment", Expires: exp}),
		add(ledger.TypeGrant, ledger.GrantPayload{Record: theirs, Grantee: other, Envelope: envelope(2), Purpose: "treatment", Expires: exp}),
		add(ledger.TypeRevoke, ledger.RevokePayload{Record: theirs, Grantee: other}),
	)
	g := newGrants(&Service{cfg: Config{Self: self}})
	for _, e := range es {
		g.onEntry(e)
	}
	if _, ok := g.todo[mine]; !ok || len(g.todo) != 1 {
		t.Fatalf("queued %v after a grant to this node and entries about another's; want only %s", g.todo, mine)
	}
	delete(g.todo, mine)
	g.onEntry(add(ledger.TypeRevoke, ledger.RevokePayload{Record: mine, Grantee: self}))
	if _, ok := g.todo[mine]; !ok || len(g.todo) != 1 {
		t.Fatalf("queued %v after a revoke of this node's grant", g.todo)
	}
}
