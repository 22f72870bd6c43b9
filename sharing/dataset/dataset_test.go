package dataset_test

import (
	"bytes"
	"context"
	"crypto/rand"

	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/dataset"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/blockstore"
)

type node struct {
	l  *ledger.Ledger
	id peer.ID
}

func newKey(t *testing.T) (crypto.PrivKey, peer.ID) {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return k, id
}

// nodeTypes are the entry types a medmesh node runs.
func nodeTypes() []ledger.TypeSpec { return append(ledger.Builtin(), dataset.Types()...) }

func open(t *testing.T, k crypto.PrivKey, gen []byte) *node {
	st, err := blockstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(context.Background(), ledger.Options{DS: st.DS, Blocks: st.Blocks, Key: k, Genesis: gen, Types: nodeTypes()})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); st.Close() })
	id, _ := peer.IDFromPrivateKey(k)
	return &node{l: l, id: id}
}

// sync copies every entry of from into to, oldest first.
func sync(t *testing.T, ctx context.Context, from, to *node) {
	es, err := from.l.Log(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(es) - 1; i >= 0; i-- {
		if err := to.l.Ingest(ctx, es[i].Bytes()); err != nil {
			t.Fatalf("ingest %s: %v", es[i].Type, err)
		}
	}
}

// current returns, per consent entry, whether it is revoked, as seen by n.
func evaluate(t *testing.T, ctx context.Context, n *node) map[cid.Cid]bool {
	ces, err := n.l.Log(ctx, dataset.TypeConsent, 0)
	if err != nil {
		t.Fatal(err)
	}
	res, err := n.l.Log(ctx, dataset.TypeConsentRevoke, 0)
	if err != nil {
		t.Fatal(err)
	}
	var cs []*dataset.Consent
	var rs []*dataset.Revocation
	for _, e := range ces {
		c, err := dataset.DecodeConsent(e)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	for _, e := range res {
		r, err := dataset.DecodeRevocation(e)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	if err := dataset.Evaluate(ctx, &dataset.LedgerAncestry{L: n.l}, cs, rs); err != nil {
		t.Fatal(err)
	}
	out := map[cid.Cid]bool{}
	for _, c := range cs {
		out[c.Entry] = c.Revoked
	}
	return out
}

// TestDatasetConsentRules: a revoke cancels the consents it saw and those
// concurrent with it, a consent written after seeing it stands, a revoke by
// another member touches nothing, and all nodes agree (same digest).
func TestDatasetConsentRules(t *testing.T) {
	ctx := context.Background()
	ka, _ := newKey(t)
	kb, idb := newKey(t)
	gen, _, err := ledger.NewGenesis(ka, "t", time.Now(), nodeTypes())
	if err != nil {
		t.Fatal(err)
	}
	a1, a2, b := open(t, ka, gen), open(t, ka, gen), open(t, kb, gen)
	if _, err := a1.l.Append(ctx, ledger.TypeMemberAdd, ledger.MemberAddPayload{Peer: idb, Org: "b"}); err != nil {
		t.Fatal(err)
	}
	pat := dataset.ConsentPseudonym([]byte("clinic key 0123456789"), "PID-1")
	other := dataset.ConsentPseudonym([]byte("clinic key 0123456789"), "PID-2")
	c1, err := a1.l.Append(ctx, dataset.TypeConsent, &dataset.ConsentPayload{Patient: pat, Purpose: "research", Modality: "MR"})
	if err != nil {
		t.Fatal(err)
	}
	cOther, err := a1.l.Append(ctx, dataset.TypeConsent, &dataset.ConsentPayload{Patient: other, Purpose: "research"})
	if err != nil {
		t.Fatal(err)
	}
	sync(t, ctx, a1, a2)
	sync(t, ctx, a1, b)
	// Concurrently: a2 revokes (having seen c1), a1 writes c2 (not seeing
	// the revoke), b "revokes" a's consent for the other patient.
	if _, err := a2.l.Append(ctx, dataset.TypeConsentRevoke, &dataset.RevokePayload{Patient: pat, Purpose: "research"}); err != nil {
		t.Fatal(err)
	}
	c2, err := a1.l.Append(ctx, dataset.TypeConsent, &dataset.ConsentPayload{Patient: pat, Purpose: "research", BodyPart: "LSPINE"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.l.Append(ctx, dataset.TypeConsentRevoke, &dataset.RevokePayload{Patient: other, Purpose: "research"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]*node{{a1, a2}, {a2, a1}, {b, a1}, {a1, b}, {a1, a2}} {
		sync(t, ctx, p[0], p[1])
	}
	c3, err := a1.l.Append(ctx, dataset.TypeConsent, &dataset.ConsentPayload{Patient: pat, Purpose: "research", Expires: time.Now().Add(time.Hour).UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	sync(t, ctx, a1, a2)
	sync(t, ctx, a1, b)
	want := map[cid.Cid]bool{c1.CID(): true, c2.CID(): true, c3.CID(): false, cOther.CID(): false}
	for name, n := range map[string]*node{"a1": a1, "a2": a2, "b": b} {
		got := evaluate(t, ctx, n)
		for c, rev := range want {
			if got[c] != rev {
				t.Errorf("%s: consent %s revoked=%v, want %v", name, c, got[c], rev)
			}
		}
	}
	if !bytes.Equal(a1.l.Digest(), a2.l.Digest()) || !bytes.Equal(a1.l.Digest(), b.l.Digest()) {
		t.Fatal("nodes disagree on the ledger digest")
	}
}

func TestDatasetConsentValidate(t *testing.T) {
	ctx := context.Background()
	ka, _ := newKey(t)
	gen, _, _ := ledger.NewGenesis(ka, "t", time.Now(), nodeTypes())
	a := open(t, ka, gen)
	pat := dataset.ConsentPseudonym([]byte("k"), "x")
	bad := []any{
		&dataset.ConsentPayload{Patient: pat[:16], Purpose: "research"},
		&dataset.ConsentPayload{Patient: pat, Purpose: "marketing"},
		&dataset.ConsentPayload{Patient: pat, Purpose: "research", Modality: "mr"},
		&dataset.ConsentPayload{Patient: pat, Purpose: "research", BodyPart: "A VERY LONG BODY PART NAME"},
		&dataset.ConsentPayload{Patient: pat, Purpose: "research", Expires: -5},
	}
	for i, p := range bad {
		if _, err := a.l.Append(ctx, dataset.TypeConsent, p); err == nil {
			t.Errorf("bad consent %d accepted", i)
		}
	}
	if _, err := a.l.Append(ctx, dataset.TypeConsentRevoke, &dataset.RevokePayload{Patient: nil, Purpose: "research"}); err == nil {
		t.Error("revoke without patient accepted")
	}
}

func sampleManifest() *dataset.Manifest {
	id, _ := cid.Decode("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	return &dataset.Manifest{Format: dataset.FormatVersion, Name: "spine", Version: 2, Profile: dataset.Profile,
		Options: dataset.Options{ShiftDates: true},
		Studies: []dataset.Study{{Record: id.Bytes(), Patient: "ANON-0123456789ABCDEF0123", StudyUID: "2.25.1",
			Series: []dataset.Series{{UID: "2.25.2", Modality: "MR", BodyPart: "LSPINE", Instances: 3, Size: 99}}, Instances: 3, Size: 99}}}
}

func TestDatasetManifestEncoding(t *testing.T) {
	m := sampleManifest()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := dataset.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := got.Encode()
	if !bytes.Equal(b, b2) {
		t.Fatal("round trip changed the encoding")
	}
	// A trailing byte, a non-canonical length and a truncation are refused.
	for i, bad := range [][]byte{append(append([]byte{}, b...), 0), append([]byte{0xb8, 0x06}, b[1:]...), b[:len(b)-1]} {
		if _, err := dataset.Decode(bad); err == nil {
			t.Errorf("bad encoding %d accepted", i)
		}
	}
	// Values that must be rejected by Check.
	mut := []func(m *dataset.Manifest){
		func(m *dataset.Manifest) { m.Studies[0].Patient = "DEMO0001" },
		func(m *dataset.Manifest) { m.Studies[0].StudyUID = "../../etc" },
		func(m *dataset.Manifest) { m.Studies[0].Series[0].UID = "1.2/3" },
		func(m *dataset.Manifest) { m.Studies[0].Instances = 4 },
		func(m *dataset.Manifest) { m.Name = "a/b" },
		func(m *dataset.Manifest) { m.Studies[0].Record = []byte{1, 2, 3} },
		func(m *dataset.Manifest) { m.Studies = append(m.Studies, m.Studies[0]) },
	}
	for i, f := range mut {
		m := sampleManifest()
		f(m)
		if _, err := m.Encode(); err == nil {
			t.Errorf("mutation %d accepted", i)
		}
	}
}

func TestDatasetQuery(t *testing.T) {
	q, err := dataset.ParseQuery("modality=mr bodypart=LSPINE")
	if err != nil || q.Modality != "MR" || q.BodyPart != "LSPINE" {
		t.Fatalf("%+v %v", q, err)
	}
	if !q.Matches("MR", "LSPINE") || q.Matches("CT", "LSPINE") || q.Matches("MR", "CHEST") {
		t.Fatal("match")
	}
	for _, s := range []string{"", "modality", "colour=red", "modality=M/R"} {
		if _, err := dataset.ParseQuery(s); err == nil {
			t.Errorf("query %q accepted", s)
		}
	}
	live := func(c *dataset.Consent) bool { return c.Live(time.Now(), 0) }
	mr := &dataset.Consent{Purpose: "research", Modality: "MR"}
	if r := dataset.SeriesVerdict(nil, "MR", "X", live); r != dataset.ReasonNoConsent {
		t.Fatal(r)
	}
	if r := dataset.SeriesVerdict([]*dataset.Consent{mr}, "CT", "X", live); r != dataset.ReasonOutOfScope {
		t.Fatal(r)
	}
	if r := dataset.SeriesVerdict([]*dataset.Consent{mr}, "MR", "X", live); r != "" {
		t.Fatal(r)
	}
	rev := &dataset.Consent{Purpose: "research", Revoked: true}
	exp := &dataset.Consent{Purpose: "research", Expires: time.Now().Add(-time.Hour)}
	if r := dataset.SeriesVerdict([]*dataset.Consent{exp, rev}, "MR", "X", live); r != dataset.ReasonRevoked {
		t.Fatal(r)
	}
	if r := dataset.SeriesVerdict([]*dataset.Consent{exp}, "MR", "X", live); r != dataset.ReasonExpired {
		t.Fatal(r)
	}
}

func FuzzDatasetManifestDecode(f *testing.F) {
	b, _ := sampleManifest().Encode()
	f.Add(b)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := dataset.Decode(in)
		if err != nil {
			return
		}
		out, err := m.Encode()
		if err != nil || !bytes.Equal(out, in) {
			t.Fatalf("accepted input does not re-encode to itself: %v", err)
		}
	})
}

func FuzzDatasetConsentDecode(f *testing.F) {
	b, _ := dataset.Marshal(&dataset.ConsentPayload{Patient: make([]byte, 32), Purpose: "research", Modality: "MR"})
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) {
		var p dataset.ConsentPayload
		if err := dataset.Unmarshal(in, &p); err != nil {
			return
		}
		_ = p.Check()
		out, err := dataset.Marshal(&p)
		if err != nil || !bytes.Equal(out, in) {
			t.Fatal("accepted input does not re-encode to itself")
		}
	})
}
