package erasure_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/erasure"
	"github.com/medmesh/medmesh/sharing/keywrap"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/blockstore"
)

func types() []ledger.TypeSpec { return append(ledger.Builtin(), erasure.Types()...) }

type member struct {
	id  peer.ID
	kem *keywrap.PrivateKey
	l   *ledger.Ledger
}

func open(t *testing.T, gen []byte, k crypto.PrivKey) *member {
	st, err := blockstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	l, err := ledger.Open(context.Background(), ledger.Options{DS: st.DS, Blocks: st.Blocks, Key: k, Genesis: gen, Types: types()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	id, _ := peer.IDFromPrivateKey(k)
	kem, _ := keywrap.Generate()
	return &member{id: id, kem: kem, l: l}
}

func fakeCid(s string) cid.Cid {
	h := sha256.Sum256([]byte(s))
	m, _ := mh.Encode(h[:], mh.SHA2_256)
	return cid.NewCidV1(cid.Raw, m)
}

func sync(t *testing.T, to *member, es ...*ledger.Entry) {
	t.Helper()
	for _, e := range es {
		if err := to.l.Ingest(context.Background(), e.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
}

func ok(t *testing.T) func(*ledger.Entry, error) *ledger.Entry {
	return func(e *ledger.Entry, err error) *ledger.Entry {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
}

// TestAuthority: only a record's owner erases it, and only records
// announced in the entry's past; a member signing an erasure of another's
// record is refused.
func TestAuthority(t *testing.T) {
	ctx := context.Background()
	ak, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	bk, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	gen, _, err := ledger.NewGenesis(ak, "erase-test", time.Now(), types())
	if err != nil {
		t.Fatal(err)
	}
	a, b := open(t, gen, ak), open(t, gen, bk)
	add := ok(t)(a.l.Append(ctx, ledger.TypeMemberAdd, ledger.MemberAddPayload{Peer: b.id}))
	ka := ok(t)(a.l.Append(ctx, ledger.TypeKeyAnnounce, ledger.KeyAnnouncePayload{Public: a.kem.Public()}))
	sync(t, b, add, ka)
	rec := fakeCid("a's record")
	env, _ := access.OwnerRecipient(rec).Wrap(a.kem.Public(), make([]byte, keywrap.KeySize))
	ann := ok(t)(a.l.Append(ctx, ledger.TypeRecordAnnounce, ledger.RecordAnnouncePayload{
		Record: rec, Blocklist: fakeCid("bl"), Size: 10, Replicas: 1, Class: "document", Version: 1, OwnerEnvelope: env}))
	sync(t, b, ann)

	// A member that does not own it: refused.
	if _, err := b.l.Append(ctx, erasure.Type, erasure.NewPayload([]cid.Cid{rec})); !errors.Is(err, ledger.ErrUnauthorized) {
		t.Fatalf("erasure by a non-owner: %v", err)
	}
	// A record nobody announced, or an empty or unsorted list: refused.
	if _, err := a.l.Append(ctx, erasure.Type, erasure.NewPayload([]cid.Cid{fakeCid("nobody's")})); err == nil {
		t.Fatal("erasure of an unknown record accepted")
	}
	if _, err := a.l.Append(ctx, erasure.Type, &erasure.Payload{}); err == nil {
		t.Fatal("empty erasure accepted")
	}
	two := erasure.NewPayload([]cid.Cid{rec, fakeCid("x")})
	two.Records[0], two.Records[1] = two.Records[1], two.Records[0]
	if _, err := a.l.Append(ctx, erasure.Type, two); err == nil {
		t.Fatal("unsorted erasure accepted")
	}
	// The owner: accepted, on every node.
	e := ok(t)(a.l.Append(ctx, erasure.Type, erasure.NewPayload([]cid.Cid{rec})))
	sync(t, b, e)
	for _, m := range []*member{a, b} {
		ids, err := erasure.Erased(m.l)
		if err != nil || len(ids) != 1 || ids[0] != rec {
			t.Fatalf("erased on %s: %v %v", m.id, ids, err)
		}
	}
	if p, err := erasure.Decode(e); err != nil || len(p.Records) != 1 {
		t.Fatalf("decode: %+v %v", p, err)
	}
}
