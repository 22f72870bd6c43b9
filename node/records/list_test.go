package records_test

import (
	"context"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/records"
)

// listed returns what node nd's `ls` says of each record, by ID, and
// checks that every "held" it says is what the blockstore answers for the
// record's root block, one lookup each.
func listed(t *testing.T, nd *node) map[string]api.Record {
	t.Helper()
	ctx := context.Background()
	list, err := nd.svc.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]api.Record{}
	for _, r := range list {
		id, err := cid.Decode(r.ID)
		if err != nil {
			t.Fatal(err)
		}
		has, err := nd.store.Has(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Held != has {
			t.Fatalf("%s lists %s as held=%v; its blockstore has its root block: %v", nd.id.ShortString(), r.ID, r.Held, has)
		}
		out[r.ID] = r
	}
	return out
}

// `ls` says "held" exactly where this node stores the record's blocks
// (its root block, the manifest), on the badger blockstore a daemon uses
// (the blocks' marks, blockstore.Store.HasAll): not for a record whose
// blocks were deleted (as a sweep, an erasure or a dropped replica
// deletes them), not for a record granted to it that it reads but does
// not store, and again once a replica's blocks are stored.
func TestListHeld(t *testing.T) {
	ctx := context.Background()
	tn := newDiskNet(t, 2)
	a, b := tn.nodes[0], tn.nodes[1]
	r1 := a.add(t, "one", randomBytes(300_000)).ID
	r2 := a.add(t, "two", randomBytes(100)).ID
	r3 := a.add(t, "three", randomBytes(5000)).ID
	grant(t, a, r1, b, api.GrantRequest{})

	ls := listed(t, a)
	for _, id := range []cid.Cid{r1, r2, r3} {
		if r := ls[id.String()]; !r.Mine || !r.Held {
			t.Fatalf("the owner lists its new record %s as %+v", id, r)
		}
	}
	// r2's blocks go, as a sweep deletes them (through the blockstore).
	for _, c := range a.svc.BlocksOf(r2) {
		if err := a.store.DeleteBlock(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	ls = listed(t, a)
	if len(ls) != 3 || !ls[r1.String()].Held || ls[r2.String()].Held || !ls[r3.String()].Held {
		t.Fatalf("after r2's blocks are deleted the owner lists %+v", ls)
	}

	// b may read r1, and does, but stores nothing of it.
	if _, err := b.get(r1, 0); err != nil {
		t.Fatal(err)
	}
	ls = listed(t, b)
	if r, ok := ls[r1.String()]; len(ls) != 1 || !ok || r.Mine || !r.Readable || r.Held {
		t.Fatalf("the grantee lists %+v", ls)
	}
	// A replica: its blocks indexed, then stored (replication's order).
	blocks := a.svc.BlocksOf(r1)
	b.svc.AddBlocks(ctx, r1, blocks)
	for _, c := range blocks {
		blk, err := a.store.Get(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.store.Put(ctx, blk); err != nil {
			t.Fatal(err)
		}
	}
	if ls = listed(t, b); !ls[r1.String()].Held {
		t.Fatalf("the grantee with the blocks of r1 lists %+v", ls)
	}
	if err := b.store.DeleteBlock(ctx, r1); err != nil {
		t.Fatal(err)
	}
	if ls = listed(t, b); ls[r1.String()].Held {
		t.Fatalf("the grantee without r1's root block lists %+v", ls)
	}
}

// A hidden record (one the node keeps for itself, as the audit log's
// segments) is an ordinary owned record that `ls` leaves out; a record
// hidden after the fact (found again after a restore) goes from the list
// too. Both still read back.
func TestListHidden(t *testing.T) {
	ctx := context.Background()
	tn := newDiskNet(t, 1)
	a := tn.nodes[0]
	shown := a.add(t, "shown", randomBytes(100)).ID
	kept := a.add(t, "kept", randomBytes(100), func(r *records.AddRequest) { r.Hidden = true }).ID
	later := a.add(t, "later", randomBytes(100)).ID
	if ls := listed(t, a); len(ls) != 2 || ls[kept.String()].ID != "" || ls[shown.String()].ID == "" || ls[later.String()].ID == "" {
		t.Fatalf("ls with a hidden record: %+v", ls)
	}
	if err := a.svc.Hide(ctx, later); err != nil {
		t.Fatal(err)
	}
	if ls := listed(t, a); len(ls) != 1 || ls[shown.String()].ID == "" {
		t.Fatalf("ls after hiding one more: %+v", ls)
	}
	if h, err := a.svc.Hidden(ctx); err != nil || len(h) != 2 || !h[kept] || !h[later] {
		t.Fatalf("Hidden: %v %v", h, err)
	}
	for _, id := range []cid.Cid{kept, later} {
		if _, err := a.get(id, 0); err != nil {
			t.Fatalf("a hidden record does not read back: %v", err)
		}
	}
}
