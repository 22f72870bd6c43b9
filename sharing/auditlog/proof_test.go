package auditlog

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/ledger"
)

func newKey(t testing.TB) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return k, id
}

func TestTreeHeadSignedByOwner(t *testing.T) {
	key, owner := newKey(t)
	_, other := newKey(t)
	h := TreeHead{Owner: owner, Size: 8, Root: [32]byte{1, 2, 3}, Time: time.Date(2026, 12, 6, 15, 0, 0, 0, time.UTC)}
	msg, err := Sign(h, key)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(msg), "medmesh-audit/"+owner.String()+"\n8\n") {
		t.Fatalf("head:\n%s", msg)
	}
	got, err := OpenHead(msg, "")
	if err != nil || got != h {
		t.Fatalf("open: %+v %v", got, err)
	}
	if _, err := OpenHead(msg, owner); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenHead(msg, other); !errors.Is(err, ErrVerify) {
		t.Fatalf("another owner pinned: %v", err)
	}
	// Another size under the same signature; another key's signature.
	if _, err := OpenHead(bytes.Replace(msg, []byte("\n8\n"), []byte("\n9\n"), 1), ""); !errors.Is(err, ErrVerify) {
		t.Fatalf("changed size: %v", err)
	}
	okey, _ := newKey(t)
	if _, err := Sign(h, okey); err == nil {
		t.Fatal("signed a head for another owner")
	}
	for _, bad := range []string{"", "hello\n", "medmesh-audit/xyz\n1\n\n", strings.Repeat("x", 5000)} {
		if _, err := OpenHead([]byte(bad), ""); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// signedEntries makes n real signed access.served entries about rec
// (signed, canonical: DecodeEntry accepts them; the ledger's rules are
// not what the log checks).
func signedEntries(t testing.TB, n int, rec cid.Cid) []*ledger.Entry {
	t.Helper()
	ctx := context.Background()
	key, _ := newKey(t)
	_, reader := newKey(t)
	g, _, err := ledger.NewGenesis(key, "proofs", time.Now(), ledger.Builtin())
	if err != nil {
		t.Fatal(err)
	}
	core, err := ledger.NewCore(ctx, ledger.CoreConfig{Store: ledger.NewMemStore(), Genesis: g, Types: ledger.Builtin()})
	if err != nil {
		t.Fatal(err)
	}
	var out []*ledger.Entry
	for i := range n {
		now := time.Now().Add(time.Duration(i) * time.Second)
		e, err := core.Sign(ctx, key, ledger.TypeServed, ledger.ServedPayload{Record: rec, Reader: reader, Grant: rec, Reads: uint64(i + 1), First: now, Last: now}, now)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// proofFixture is an owner's log of real entries with an inclusion proof
// file of all of them and a consistency proof file.
func proofFixture(t testing.TB) (owner peer.ID, inc, cons []byte) {
	t.Helper()
	ctx := context.Background()
	key, owner := newKey(t)
	rec := fakeCID([]byte("the record"))
	es := signedEntries(t, 5, rec)
	l, err := Open(ctx, dssyncMap())
	if err != nil {
		t.Fatal(err)
	}
	var leaves []Leaf
	for _, e := range es {
		leaves = append(leaves, Leaf{Data: e.Bytes(), Entry: e.CID(), Record: rec})
	}
	l.Append(ctx, leaves[:3])
	oldRoot, _ := l.Root(ctx, 3)
	oldHead, err := Sign(TreeHead{Owner: owner, Size: 3, Root: oldRoot, Time: time.Now()}, key)
	if err != nil {
		t.Fatal(err)
	}
	l.Append(ctx, leaves[3:])
	root, _ := l.Root(ctx, 5)
	newHead, _ := Sign(TreeHead{Owner: owner, Size: 5, Root: root, Time: time.Now()}, key)
	f := ProofFile{Kind: KindInclusion, Owner: owner.String(), ID: rec.String(), TreeHead: string(newHead), TreeSize: 5, Root: EncodeHash(root)}
	for i, e := range es {
		p, err := l.ProveInclusion(ctx, int64(i), 5)
		if err != nil {
			t.Fatal(err)
		}
		f.Proofs = append(f.Proofs, Inclusion{ID: rec.String(), Entry: e.CID().String(), Type: e.Type, EntryData: base64.StdEncoding.EncodeToString(e.Bytes()), Index: int64(i), Path: EncodeHashes(p)})
	}
	inc, _ = json.Marshal(f)
	cp, _ := l.ProveConsistency(ctx, 3, 5)
	c := ProofFile{Kind: KindConsistency, Owner: owner.String(), OldTreeHead: string(oldHead), OldSize: 3, OldRoot: EncodeHash(oldRoot),
		NewTreeHead: string(newHead), NewSize: 5, NewRoot: EncodeHash(root), Path: EncodeHashes(cp)}
	cons, _ = json.Marshal(c)
	return owner, inc, cons
}

func verifyBytes(b []byte, owner peer.ID) (*Report, error) {
	f, err := ReadProofFile(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return Verify(f, owner)
}

func TestVerifyProofFiles(t *testing.T) {
	owner, inc, cons := proofFixture(t)
	rep, err := verifyBytes(inc, owner)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Entries) != 5 || rep.Head.Size != 5 || rep.Entries[4].Index != 4 || rep.Entries[0].Type != ledger.TypeServed {
		t.Fatalf("report: %+v", rep)
	}
	if rep, err := verifyBytes(cons, owner); err != nil || rep.Old.Size != 3 || rep.New.Size != 5 {
		t.Fatalf("consistency: %+v %v", rep, err)
	}
	_, other := newKey(t)
	if _, err := verifyBytes(inc, other); !errors.Is(err, ErrVerify) {
		t.Fatalf("pinned to another owner: %v", err)
	}

	// Tampering: each change fails verification (ErrVerify), or is not a
	// proof file at all (ErrMalformed); none verifies.
	mutate := func(b []byte, f func(*ProofFile)) []byte {
		var p ProofFile
		json.Unmarshal(b, &p)
		f(&p)
		out, _ := json.Marshal(p)
		return out
	}
	other5 := signedEntries(t, 1, fakeCID([]byte("the record")))[0]
	cases := map[string][]byte{
		"a changed entry": mutate(inc, func(p *ProofFile) {
			p.Proofs[1].EntryData = base64.StdEncoding.EncodeToString(other5.Bytes())
			p.Proofs[1].Entry = other5.CID().String()
		}),
		"an entry with a broken signature": mutate(inc, func(p *ProofFile) {
			b, _ := base64.StdEncoding.DecodeString(p.Proofs[1].EntryData)
			b[len(b)-1] ^= 1
			p.Proofs[1].EntryData = base64.StdEncoding.EncodeToString(b)
		}),
		"another index": mutate(inc, func(p *ProofFile) { p.Proofs[2].Index = 3 }),
		"a path hash changed": mutate(inc, func(p *ProofFile) {
			p.Proofs[0].Path[0] = EncodeHash(LeafHash([]byte("x")))
		}),
		"another record":            mutate(inc, func(p *ProofFile) { p.Proofs[0].ID = fakeCID([]byte("other")).String() }),
		"a root beside the head":    mutate(inc, func(p *ProofFile) { p.Root = EncodeHash(LeafHash(nil)) }),
		"a bigger tree than signed": mutate(inc, func(p *ProofFile) { p.TreeSize = 6 }),
		"a rewritten old root": mutate(cons, func(p *ProofFile) {
			p.OldRoot = EncodeHash(LeafHash(nil))
		}),
		"a consistency path cut": mutate(cons, func(p *ProofFile) { p.Path = p.Path[:len(p.Path)-1] }),
		"heads swapped": mutate(cons, func(p *ProofFile) {
			p.OldTreeHead, p.NewTreeHead = p.NewTreeHead, p.OldTreeHead
			p.OldSize, p.NewSize = p.NewSize, p.OldSize
			p.OldRoot, p.NewRoot = p.NewRoot, p.OldRoot
		}),
	}
	for name, b := range cases {
		if _, err := verifyBytes(b, ""); !errors.Is(err, ErrVerify) && !errors.Is(err, ErrMalformed) || err == nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, b := range map[string]string{
		"empty": "", "not json": "proof", "unknown kind": `{"kind":"x","owner":"` + owner.String() + `"}`,
		"unknown field": `{"kind":"inclusion","extra":1}`, "two values": string(inc) + string(inc),
	} {
		if _, err := verifyBytes([]byte(b), ""); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzVerify: no proof file, however broken, panics the verifier; what
// verifies has a report. (The fixture's keys are fresh in every fuzzing
// process, so whether a mutant verifies is TestVerifyProofFiles's to check.)
func FuzzVerify(f *testing.F) {
	_, inc, cons := proofFixture(f)
	f.Add(inc)
	f.Add(cons)
	f.Add([]byte(`{"kind":"inclusion"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := verifyBytes(b, "")
		if err == nil && rep == nil {
			t.Fatal("no report and no error")
		}
		if err != nil && !errors.Is(err, ErrVerify) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("an error that is neither malformed nor failed verification: %v", err)
		}
	})
}
