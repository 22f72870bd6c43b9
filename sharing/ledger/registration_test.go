package ledger

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/ipfs/boxo/blockstore"
)

func openMem(t *testing.T, who *ident, genesis []byte, types []TypeSpec) (*Ledger, error) {
	t.Helper()
	ds := dssync.MutexWrap(datastore.NewMapDatastore())
	l, err := Open(context.Background(), Options{DS: ds, Blocks: blockstore.NewBlockstore(ds), Key: who.key, Genesis: genesis,
		Logger: quietLogger(), Types: types})
	if err == nil {
		t.Cleanup(func() { l.Close() })
	}
	return l, err
}

// Nothing registers itself: Open refuses a type set without every built-in
// type, with one listed twice, or with a built-in name bound to other rules.
func TestOpenChecksTypes(t *testing.T) {
	w := newWorld(t, 1)
	without := func(name string) []TypeSpec {
		var out []TypeSpec
		for _, s := range Builtin() {
			if s.Name != name {
				out = append(out, s)
			}
		}
		return out
	}
	imposter := append(without(TypeGrant), TypeSpec{Name: TypeGrant, New: payload[grantWire](),
		Validate: func(View, *Entry, any) error { return nil }, Apply: func(Txn, *Entry, any) error { return nil }})
	for _, c := range []struct {
		name  string
		types []TypeSpec
		want  string
	}{
		{"none", nil, "Options.Types is empty"},
		{"a built-in missing", without(TypeServed), "lacks the built-in entry types access.served"},
		{"listed twice", append(Builtin(), Builtin()[3]), "listed twice"},
		{"built-in rules replaced", imposter, "is built in"},
		{"bad name", append(Builtin(), TypeSpec{Name: "Bad Name", New: payload[escapePayload](), Validate: validateGenesis, Apply: func(Txn, *Entry, any) error { return nil }}), "bad entry type name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := openMem(t, w.admin, w.genesis, c.types)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// A network's genesis declares the types it runs: a node that lacks one
// refuses to open it; a node that has more does not run the others there,
// so it rejects their entries as every other node does.
func TestGenesisDeclaresTypes(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 1)
	gen, _, err := NewGenesis(w.admin.key, "builtin only", testEpoch, Builtin())
	if err != nil {
		t.Fatal(err)
	}
	if d := Describe(mustDecode(t, gen)); strings.Join(d["types"].([]string), ",") != strings.Join(Names(Builtin()), ",") {
		t.Fatalf("genesis declares %v", d["types"])
	}
	l, err := openMem(t, w.admin, gen, testTypes())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(l.TypeNames(), ","); got != strings.Join(Names(Builtin()), ",") {
		t.Fatalf("the ledger runs %s", got)
	}
	_, err = l.Append(ctx, "test.keys", &escapePayload{Key: "k"})
	if err == nil || !strings.Contains(err.Error(), "unknown entry type") {
		t.Fatalf("append of a type the network does not run: %v", err)
	}
	e := forgeRaw(t, l, w.admin, "test.keys", &escapePayload{Key: "k"})
	var re *RejectError
	if err := l.Ingest(ctx, e.raw); !errors.As(err, &re) || re.Reason != "unknown-type" {
		t.Fatalf("entry of a type the network does not run: %v", err)
	}
	if err := l.CheckTypeName("test.keys"); err == nil {
		t.Fatal("CheckTypeName accepts a type the network does not run")
	}

	// The test network (w.genesis) runs test.keys: a node without it
	// cannot open it.
	_, err = openMem(t, w.admin, w.genesis, Builtin())
	if err == nil || !strings.Contains(err.Error(), "test.keys") || !strings.Contains(err.Error(), "diverge") {
		t.Fatalf("Open without a declared type: %v", err)
	}
}

// A genesis from before types were declared: the node runs its own types.
func TestLegacyGenesisRunsNodeTypes(t *testing.T) {
	w := newWorld(t, 1)
	pl, err := encMode.Marshal(&genesisWire{Name: "old", Admin: []byte(w.admin.id), Created: testEpoch.UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	g, err := signEntry(w.admin.key, cid.Undef, TypeGenesis, pl, nil, HLC{Wall: uint64(testEpoch.UnixMilli())})
	if err != nil {
		t.Fatal(err)
	}
	l, err := openMem(t, w.admin, g.raw, testTypes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), "test.keys", &escapePayload{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	if _, err := openMem(t, w.admin, g.raw, Builtin()[1:]); err == nil {
		t.Fatal("Open without the genesis type")
	}
}

// authorID builds what peer.IDFromPublicKey computes.
func TestAuthorIDMatchesLibp2p(t *testing.T) {
	for i := 0; i < 5; i++ {
		id := newIdent(t)
		raw, err := id.key.GetPublic().Raw()
		if err != nil {
			t.Fatal(err)
		}
		want, err := peer.IDFromPublicKey(id.key.GetPublic())
		if err != nil {
			t.Fatal(err)
		}
		if got, err := authorID(raw); err != nil || got != want {
			t.Fatalf("authorID = %s (%v), want %s", got, err, want)
		}
	}
	if _, err := authorID(make([]byte, 31)); err == nil {
		t.Fatal("short key accepted")
	}
}

func mustDecode(t *testing.T, raw []byte) *Entry {
	t.Helper()
	e, err := DecodeEntry(raw)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// forgeRaw signs an entry of any type on l's heads (forge needs the type to
// be one l runs).
func forgeRaw(t *testing.T, l *Ledger, who *ident, typ string, payload any) *Entry {
	t.Helper()
	pl, err := encMode.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	e, err := signEntry(who.key, l.net, typ, pl, l.Heads(), HLC{Wall: uint64(testEpoch.UnixMilli()) + 1})
	if err != nil {
		t.Fatal(err)
	}
	return e
}
