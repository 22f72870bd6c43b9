package implant_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/implant"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/blockstore"
)

// node is one member's ledger.
type node struct {
	name string
	key  crypto.PrivKey
	id   peer.ID
	l    *ledger.Ledger
}

type world struct {
	t     *testing.T
	ctx   context.Context
	gen   []byte
	nodes map[string]*node
	now   time.Time
}

func newKey(t *testing.T) crypto.PrivKey {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newWorld founds a network (admin) and admits the other members.
func newWorld(t *testing.T, members ...string) *world {
	w := &world{t: t, ctx: context.Background(), nodes: map[string]*node{}, now: time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)}
	admin := newKey(t)
	gen, _, err := newGenesis(admin, w.now)
	if err != nil {
		t.Fatal(err)
	}
	w.gen = gen
	a := w.open("admin", admin)
	for _, m := range members {
		n := w.open(m, newKey(t))
		if _, err := a.l.Append(w.ctx, ledger.TypeMemberAdd, ledger.MemberAddPayload{Peer: n.id}); err != nil {
			t.Fatal(err)
		}
	}
	w.sync()
	return w
}

func (w *world) open(name string, k crypto.PrivKey) *node {
	st, err := blockstore.Open(w.t.TempDir())
	if err != nil {
		w.t.Fatal(err)
	}
	l, err := openLedger(w.ctx, st, k, w.gen, func() time.Time { return w.now })
	if err != nil {
		st.Close()
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { l.Close(); st.Close() })
	id, _ := peer.IDFromPrivateKey(k)
	n := &node{name: name, key: k, id: id, l: l}
	if w.nodes[name] == nil {
		w.nodes[name] = n
	}
	return n
}

// sync copies every node's entries to every other node, oldest first.
func (w *world) sync(extra ...*node) {
	all := extra
	for _, n := range w.nodes {
		all = append(all, n)
	}
	for _, from := range all {
		es, err := from.l.Log(w.ctx, "", 0)
		if err != nil {
			w.t.Fatal(err)
		}
		for _, to := range all {
			if to == from {
				continue
			}
			for i := len(es) - 1; i >= 0; i-- {
				if err := to.l.Ingest(w.ctx, es[i].Bytes()); err != nil {
					w.t.Fatalf("%s ingests %s from %s: %v", to.name, es[i].Type, from.name, err)
				}
			}
		}
	}
}

func (w *world) append(who, typ string, pl any) (*ledger.Entry, error) {
	w.now = w.now.Add(time.Minute)
	return w.nodes[who].l.Append(w.ctx, typ, pl)
}

func (w *world) must(who, typ string, pl any) *ledger.Entry {
	w.t.Helper()
	e, err := w.append(who, typ, pl)
	if err != nil {
		w.t.Fatalf("%s by %s: %v", typ, who, err)
	}
	w.sync()
	return e
}

// refused checks that who cannot append the entry, for the reason given.
func (w *world) refused(who, typ string, pl any, unauthorized bool, says string) {
	w.t.Helper()
	_, err := w.append(who, typ, pl)
	if err == nil {
		w.t.Fatalf("%s by %s accepted", typ, who)
	}
	if errors.Is(err, ledger.ErrUnauthorized) != unauthorized {
		w.t.Fatalf("%s by %s: %v (unauthorized: want %v)", typ, who, err, unauthorized)
	}
	if !strings.Contains(err.Error(), says) {
		w.t.Fatalf("%s by %s: %q does not say %q", typ, who, err, says)
	}
}

func (w *world) device(who string, id cid.Cid) *implant.Device {
	w.t.Helper()
	d, ok, err := implant.LoadDevice(implant.FromState(w.nodes[who].l), id)
	if err != nil || !ok {
		w.t.Fatalf("%s: device %s: %v, %v", who, id, ok, err)
	}
	return d
}

func mustUDI(t *testing.T, s string) implant.UDI {
	u, err := implant.Parse(s, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

var pseudonymKey = bytes.Repeat([]byte{7}, 32)

// TestCustodyAuthority signs each custody entry type as a member without
// the authority at its causal position, and as the one with it.
func TestCustodyAuthority(t *testing.T) {
	w := newWorld(t, "distributor", "hospital", "clinic", "manufacturer")
	D, H, C, M := w.nodes["distributor"], w.nodes["hospital"], w.nodes["clinic"], w.nodes["manufacturer"]
	u := mustUDI(t, "(01)09506000134352(17)301231(10)LOT42(21)SN0001")

	reg := w.must("distributor", implant.TypeRegister, implant.RegisterPayloadOf(u))
	dev := reg.CID()
	w.refused("clinic", implant.TypeRegister, implant.RegisterPayloadOf(u), false, "already registered")

	// Transfer: only the custodian.
	tr := &implant.TransferPayload{Device: dev.Bytes(), Prev: dev.Bytes(), To: []byte(H.id)}
	w.refused("clinic", implant.TypeTransfer, tr, true, "not the device's custodian")
	w.refused("hospital", implant.TypeTransfer, tr, true, "not the device's custodian")
	w.refused("distributor", implant.TypeTransfer, &implant.TransferPayload{Device: dev.Bytes(), Prev: dev.Bytes(), To: []byte(D.id)}, false, "custodian itself")
	t1 := w.must("distributor", implant.TypeTransfer, tr)
	if d := w.device("clinic", dev); d.Custodian != H.id || d.Tip != t1.CID() {
		t.Fatalf("after the transfer the clinic sees custodian %s, tip %s", d.Custodian, d.Tip)
	}
	// The former custodian, even naming the new tip, cannot move it again.
	w.refused("distributor", implant.TypeTransfer, &implant.TransferPayload{Device: dev.Bytes(), Prev: t1.CID().Bytes(), To: []byte(C.id)}, true, "not the device's custodian")

	// Use: only the custodian, once.
	pat := implant.Pseudonym(pseudonymKey, dev, "P-4711")
	use := &implant.UsePayload{Device: dev.Bytes(), Prev: t1.CID().Bytes(), Patient: pat}
	w.refused("clinic", implant.TypeUse, use, true, "not the device's custodian")
	w.refused("hospital", implant.TypeUse, &implant.UsePayload{Device: dev.Bytes(), Prev: dev.Bytes(), Patient: pat}, false, "stale")
	u1 := w.must("hospital", implant.TypeUse, use)
	w.refused("hospital", implant.TypeUse, &implant.UsePayload{Device: dev.Bytes(), Prev: u1.CID().Bytes(), Patient: pat}, false, "implanted once")
	w.refused("hospital", implant.TypeTransfer, &implant.TransferPayload{Device: dev.Bytes(), Prev: u1.CID().Bytes(), To: []byte(C.id)}, false, "explant it first")

	// Explant: only the custodian; then never implanted again.
	ex := &implant.ExplantPayload{Device: dev.Bytes(), Prev: u1.CID().Bytes()}
	w.refused("clinic", implant.TypeExplant, ex, true, "not the device's custodian")
	x1 := w.must("hospital", implant.TypeExplant, ex)
	w.refused("hospital", implant.TypeExplant, &implant.ExplantPayload{Device: dev.Bytes(), Prev: x1.CID().Bytes()}, false, "not implanted")
	w.refused("hospital", implant.TypeUse, &implant.UsePayload{Device: dev.Bytes(), Prev: x1.CID().Bytes(), Patient: pat}, false, "implanted once")

	// Recall as registrant: only of devices the author registered.
	rc := &implant.RecallPayload{Issuer: implant.IssuerGS1, DI: u.DI, Lot: u.Lot, Reason: "FSCA-2026-001: fracture risk", As: implant.AsRegistrant}
	w.refused("clinic", implant.TypeRecall, rc, true, "registered no device")
	w.refused("hospital", implant.TypeRecall, rc, true, "registered no device")
	w.refused("distributor", implant.TypeRecall, &implant.RecallPayload{Issuer: implant.IssuerGS1, DI: u.DI, Lot: "OTHER", Reason: "x", As: implant.AsRegistrant}, true, "registered no device")
	w.must("distributor", implant.TypeRecall, rc)

	// Recall as manufacturer: only under an admin's authorization.
	mr := &implant.RecallPayload{Issuer: implant.IssuerGS1, DI: u.DI, Reason: "FSCA-2026-002", As: implant.AsManufacturer}
	w.refused("manufacturer", implant.TypeRecall, mr, true, "not authorized as the manufacturer")
	auth := &implant.ManufacturerPayload{Peer: []byte(M.id), Issuer: implant.IssuerGS1, Prefix: "9506000"}
	w.refused("hospital", implant.TypeManufacturer, auth, true, "only an admin")
	w.refused("manufacturer", implant.TypeManufacturer, auth, true, "only an admin")
	w.refused("admin", implant.TypeManufacturer, &implant.ManufacturerPayload{Peer: []byte(M.id), Issuer: implant.IssuerGS1, Prefix: "95"}, false, "6 to 12 digits")
	w.must("admin", implant.TypeManufacturer, auth)
	w.refused("manufacturer", implant.TypeRecall, &implant.RecallPayload{Issuer: implant.IssuerGS1, DI: "00614141999996", Reason: "x", As: implant.AsManufacturer}, true, "not authorized as the manufacturer")
	w.must("manufacturer", implant.TypeRecall, mr)
	w.must("admin", implant.TypeManufacturer, &implant.ManufacturerPayload{Peer: []byte(M.id), Issuer: implant.IssuerGS1, Prefix: "9506000", Revoke: true})
	w.refused("manufacturer", implant.TypeRecall, mr, true, "not authorized as the manufacturer")

	// Every node sees the same device, custody and recalls.
	want := w.device("admin", dev)
	if want.Status != implant.StatusExplanted || want.Custodian != H.id || len(want.Recalls) != 2 || len(want.History) != 3 {
		t.Fatalf("device: %+v", want)
	}
	if !bytes.Equal(want.Use.Patient, pat) {
		t.Fatal("the use does not carry the pseudonym")
	}
	digest := w.nodes["admin"].l.Digest()
	for name, n := range w.nodes {
		got := w.device(name, dev)
		if got.Tip != want.Tip || got.Status != want.Status || len(got.Recalls) != len(want.Recalls) {
			t.Fatalf("%s sees %+v, admin %+v", name, got, want)
		}
		if !bytes.Equal(n.l.Digest(), digest) {
			t.Fatalf("%s's digest differs", name)
		}
		if err := n.l.Verify(w.ctx); err != nil {
			t.Fatalf("%s: verify: %v", name, err)
		}
	}
}

// TestUseRefusedWhenExpiredOrRecalled: the custodian cannot implant a
// device past its expiry or covered by a recall in its past.
func TestUseRefusedWhenExpiredOrRecalled(t *testing.T) {
	w := newWorld(t, "distributor", "hospital")
	H := w.nodes["hospital"]
	handOver := func(s string) (cid.Cid, cid.Cid) {
		reg := w.must("distributor", implant.TypeRegister, implant.RegisterPayloadOf(mustUDI(t, s)))
		tr := w.must("distributor", implant.TypeTransfer, &implant.TransferPayload{Device: reg.CID().Bytes(), Prev: reg.CID().Bytes(), To: []byte(H.id)})
		return reg.CID(), tr.CID()
	}
	// Expires 2026-06-30; the world's clock is in June 2026.
	dev, tip := handOver("(01)09506000134352(17)260630(10)L1(21)E1")
	w.now = time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	w.refused("hospital", implant.TypeUse, &implant.UsePayload{Device: dev.Bytes(), Prev: tip.Bytes(), Patient: make([]byte, 32)}, false, "expired on 2026-06-30")
	w.now = time.Date(2026, 6, 2, 0, 0, 0, 0, time.UTC)

	dev, tip = handOver("(01)09506000134352(17)301231(10)L2(21)R1")
	w.must("distributor", implant.TypeRecall, &implant.RecallPayload{Issuer: implant.IssuerGS1, DI: "09506000134352", Lot: "L2", Reason: "sterility breach", As: implant.AsRegistrant})
	w.refused("hospital", implant.TypeUse, &implant.UsePayload{Device: dev.Bytes(), Prev: tip.Bytes(), Patient: make([]byte, 32)}, false, "recalled")
	// A recalled device goes back to the distributor.
	w.must("hospital", implant.TypeTransfer, &implant.TransferPayload{Device: dev.Bytes(), Prev: tip.Bytes(), To: []byte(w.nodes["distributor"].id)})
	w.refused("hospital", implant.TypeUse, &implant.UsePayload{Device: dev.Bytes(), Prev: tip.Bytes(), Patient: make([]byte, 31)}, true, "custodian")
}

// TestConcurrentUseResolvesAlike: a modified hospital node implants one
// device twice concurrently (neither entry sees the other). Both are valid
// at their causal positions; every node keeps the first in (clock, CID)
// order on the custody chain and marks the other superseded.
func TestConcurrentUseResolvesAlike(t *testing.T) {
	w := newWorld(t, "distributor", "hospital", "clinic")
	H := w.nodes["hospital"]
	reg := w.must("distributor", implant.TypeRegister, implant.RegisterPayloadOf(mustUDI(t, "(01)09506000134352(10)L9(21)F1")))
	dev := reg.CID()
	tr := w.must("distributor", implant.TypeTransfer, &implant.TransferPayload{Device: dev.Bytes(), Prev: dev.Bytes(), To: []byte(H.id)})

	// A second node with the hospital's key and the same past.
	H2 := w.open("hospital-fork", H.key)
	w.sync(H2)
	a, err := H.l.Append(w.ctx, implant.TypeUse, &implant.UsePayload{Device: dev.Bytes(), Prev: tr.CID().Bytes(), Patient: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := H2.l.Append(w.ctx, implant.TypeUse, &implant.UsePayload{Device: dev.Bytes(), Prev: tr.CID().Bytes(), Patient: bytes.Repeat([]byte{2}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	w.sync(H2)
	first := a
	if b.Clock.Less(a.Clock) || b.Clock == a.Clock && b.CID().String() < a.CID().String() {
		first = b
	}
	for name := range w.nodes {
		d := w.device(name, dev)
		if d.Use == nil || d.Use.Entry != first.CID() || d.Tip != first.CID() {
			t.Fatalf("%s: the use on the chain is %v, want %s", name, d.Use, first.CID())
		}
		sup := 0
		for _, ev := range d.History {
			if ev.Superseded {
				sup++
			}
		}
		if sup != 1 {
			t.Fatalf("%s: %d superseded events, want 1", name, sup)
		}
	}
}
