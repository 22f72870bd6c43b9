package netkey_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/keywrap"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/sharing/netkey"
	"github.com/medmesh/medmesh/storage/blockstore"
)

func types() []ledger.TypeSpec { return append(ledger.Builtin(), netkey.Types()...) }

type member struct {
	id  peer.ID
	kem *keywrap.PrivateKey
	l   *ledger.Ledger
}

func open(t *testing.T, gen []byte, k crypto.PrivKey, now func() time.Time) *member {
	st, err := blockstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	l, err := ledger.Open(context.Background(), ledger.Options{DS: st.DS, Blocks: st.Blocks, Key: k, Genesis: gen, Now: now, Types: types()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	id, _ := peer.IDFromPrivateKey(k)
	kem, err := keywrap.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return &member{id: id, kem: kem, l: l}
}

func newKey(t *testing.T) crypto.PrivKey {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func must(t *testing.T) func(e *ledger.Entry, err error) *ledger.Entry {
	return func(e *ledger.Entry, err error) *ledger.Entry {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
}

func ingest(t *testing.T, to *member, es ...*ledger.Entry) {
	t.Helper()
	for _, e := range es {
		if err := to.l.Ingest(context.Background(), e.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
}

// rotation wraps psk to each member, sorted.
func rotation(t *testing.T, nid func() any, epoch uint64, psk []byte, to ...*member) *netkey.Payload {
	now := time.Now()
	p := &netkey.Payload{Epoch: epoch, Activate: now.Add(10 * time.Second).UnixMilli(), Retire: now.Add(10 * time.Minute).UnixMilli()}
	for _, m := range to {
		env, err := access.NetworkKeyRecipient(m.l.NetworkID(), epoch, m.id).Wrap(m.kem.Public(), psk)
		if err != nil {
			t.Fatal(err)
		}
		p.Envelopes = append(p.Envelopes, netkey.Envelope{Member: []byte(m.id), Envelope: env})
	}
	sort.Slice(p.Envelopes, func(i, j int) bool { return bytes.Compare(p.Envelopes[i].Member, p.Envelopes[j].Member) < 0 })
	return p
}

// TestAuthority: only an admin rotates the network key, to members' current
// keys, one epoch at a time; a member signing a rotation is refused by
// every node.
func TestAuthority(t *testing.T) {
	ctx := context.Background()
	now := func() time.Time { return time.Now() }
	ak := newKey(t)
	gen, _, err := ledger.NewGenesis(ak, "netkey-test", time.Now(), types())
	if err != nil {
		t.Fatal(err)
	}
	a := open(t, gen, ak, now)
	b := open(t, gen, newKey(t), now)
	c := open(t, gen, newKey(t), now) // never admitted
	add := must(t)(a.l.Append(ctx, ledger.TypeMemberAdd, ledger.MemberAddPayload{Peer: b.id}))
	ingest(t, b, add)
	ka := must(t)(a.l.Append(ctx, ledger.TypeKeyAnnounce, ledger.KeyAnnouncePayload{Public: a.kem.Public()}))
	kb := must(t)(b.l.Append(ctx, ledger.TypeKeyAnnounce, ledger.KeyAnnouncePayload{Public: b.kem.Public()}))
	ingest(t, a, kb)
	ingest(t, b, ka)
	psk := make([]byte, 32)
	rand.Read(psk)

	// A member (not an admin) cannot sign one, even a well-formed one.
	if _, err := b.l.Append(ctx, netkey.Type, rotation(t, nil, 1, psk, a, b)); !errors.Is(err, ledger.ErrUnauthorized) {
		t.Fatalf("rotation by a member: %v", err)
	}
	// Nor can the admin: skip an epoch, wrap to a non-member, to a key
	// that is not the member's current one, or name as removed a member.
	for name, p := range map[string]*netkey.Payload{
		"epoch 2 first":    rotation(t, nil, 2, psk, a, b),
		"to a non-member":  rotation(t, nil, 1, psk, a, b, c),
		"no envelope":      {Epoch: 1, Activate: time.Now().UnixMilli(), Retire: time.Now().UnixMilli()},
		"removed a member": func() *netkey.Payload { p := rotation(t, nil, 1, psk, a, b); p.Removed = []byte(b.id); return p }(),
		"retire first": func() *netkey.Payload {
			p := rotation(t, nil, 1, psk, a, b)
			p.Retire = p.Activate - 1
			return p
		}(),
		"stale key": func() *netkey.Payload {
			old := b.kem
			b.kem, _ = keywrap.Generate()
			defer func() { b.kem = old }()
			return rotation(t, nil, 1, psk, a, b)
		}(),
	} {
		if _, err := a.l.Append(ctx, netkey.Type, p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// The admin's rotation: accepted, and b opens its envelope.
	e := must(t)(a.l.Append(ctx, netkey.Type, rotation(t, nil, 1, psk, a, b)))
	ingest(t, b, e)
	rs, err := netkey.Rotations(b.l)
	if err != nil || len(rs) != 1 || rs[0].Entry != e.CID() {
		t.Fatalf("rotations on b: %v %v", rs, err)
	}
	env, ok := rs[0].Payload.EnvelopeFor(b.id)
	if !ok {
		t.Fatal("no envelope for b")
	}
	got, err := access.NetworkKeyRecipient(b.l.NetworkID(), 1, b.id).Unwrap(b.kem, env)
	if err != nil || !bytes.Equal(got, psk) {
		t.Fatalf("b opens %x, %v", got, err)
	}
	// Bound to its epoch and member: it opens as nothing else.
	if _, err := access.NetworkKeyRecipient(b.l.NetworkID(), 2, b.id).Unwrap(b.kem, env); err == nil {
		t.Fatal("the envelope opens for another epoch")
	}
	// The next one must be epoch 2.
	if _, err := a.l.Append(ctx, netkey.Type, rotation(t, nil, 1, psk, a, b)); err == nil {
		t.Fatal("epoch 1 twice")
	}
	must(t)(a.l.Append(ctx, netkey.Type, rotation(t, nil, 2, psk, a, b)))
}
