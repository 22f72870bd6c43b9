package research

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/dataset"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/blockstore"
)

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// newLedger opens a real one-member ledger (badger) administered by key.
func newLedger(t testing.TB, key crypto.PrivKey, now func() time.Time) *ledger.Ledger {
	t.Helper()
	types := append(ledger.Builtin(), dataset.Types()...)
	gen, _, err := ledger.NewGenesis(key, "research-test", now(), types)
	if err != nil {
		t.Fatal(err)
	}
	st, err := blockstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(context.Background(), ledger.Options{DS: st.DS, Blocks: st.Blocks, Key: key, Genesis: gen, Now: now, Types: types})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); st.Close() })
	return l
}

func newKey(t testing.TB) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return k, id
}

// TestConsents: a consent reaches the ledger under the clinic's keyed
// pseudonym only; listing filters by patient and purpose; a revoke
// cancels it; an expiry shows as expired past it; bad input is Invalid.
func TestConsents(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	key, self := newKey(t)
	l := newLedger(t, key, clk.now)
	w := newWorld(clk.now)
	rec := &fakeRecords{w: w, self: self}
	s, err := New(Config{Ledger: fakeLedger{l, w}, Records: rec, Imaging: newFakeImaging(rec), Self: self, Identity: key,
		Local: dssync.MutexWrap(datastore.NewMapDatastore()), Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	c1, err := s.AddConsent(ctx, api.ConsentRequest{Patient: "PID-0001", Modality: "mr"})
	if err != nil {
		t.Fatal(err)
	}
	if c1.Purpose != ledger.PurposeResearch || c1.Modality != "MR" || c1.Author != self.String() || c1.Revoked || c1.Expired {
		t.Fatalf("consent: %+v", c1)
	}
	if _, err := s.AddConsent(ctx, api.ConsentRequest{Patient: "PID-0002", Purpose: "treatment", Expires: "24h"}); err != nil {
		t.Fatal(err)
	}
	// The patient ID never reaches the ledger, and the pseudonym is the
	// clinic's keyed one.
	es, err := l.Log(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if bytes.Contains(e.Bytes(), []byte("PID-000")) {
			t.Fatalf("%s entry carries a patient ID", e.Type)
		}
	}
	ck, _ := consentKey(key)
	if want := hex.EncodeToString(dataset.ConsentPseudonym(ck, "PID-0001")); c1.Patient != want {
		t.Fatalf("pseudonym %s, want %s", c1.Patient, want)
	}

	list := func(patient, purpose string) []api.ConsentInfo {
		t.Helper()
		cs, err := s.Consents(ctx, patient, purpose)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	if n := len(list("", "")); n != 2 {
		t.Fatalf("%d consents", n)
	}
	if cs := list("PID-0001", ""); len(cs) != 1 || cs[0].Entry != c1.Entry {
		t.Fatalf("by patient: %+v", cs)
	}
	if cs := list("", "treatment"); len(cs) != 1 || cs[0].Purpose != "treatment" || cs[0].Expires.IsZero() {
		t.Fatalf("by purpose: %+v", cs)
	}
	if cs := list("PID-0003", ""); len(cs) != 0 {
		t.Fatalf("unknown patient: %+v", cs)
	}

	if _, err := s.RevokeConsent(ctx, api.ConsentRequest{Patient: "PID-0001"}); err != nil {
		t.Fatal(err)
	}
	if cs := list("PID-0001", ""); len(cs) != 1 || !cs[0].Revoked || cs[0].Expired {
		t.Fatalf("after revoke: %+v", cs)
	}
	clk.t = clk.t.Add(25*time.Hour + ledger.ClockSkew)
	if cs := list("", "treatment"); len(cs) != 1 || !cs[0].Expired {
		t.Fatalf("after expiry: %+v", cs)
	}

	for _, req := range []api.ConsentRequest{
		{Patient: ""},
		{Patient: string(make([]byte, 65))},
		{Patient: "P", Purpose: "marketing"},
		{Patient: "P", Expires: "soon"},
		{Patient: "P", Expires: "-1h"},
	} {
		if _, err := s.AddConsent(ctx, req); !fault.Is(err, fault.Invalid) {
			t.Errorf("AddConsent(%+v): %v, want invalid", req, err)
		}
	}
	if _, err := s.RevokeConsent(ctx, api.ConsentRequest{Patient: "P", Purpose: "marketing"}); !fault.Is(err, fault.Invalid) {
		t.Errorf("revoke with a bad purpose: %v", err)
	}
	if _, err := s.Consents(ctx, string(make([]byte, 65)), ""); !fault.Is(err, fault.Invalid) {
		t.Errorf("list with a bad patient ID: %v", err)
	}
}
