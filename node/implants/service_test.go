package implants

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/implant"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/blockstore"
)

type member struct {
	name string
	id   peer.ID
	l    *ledger.Ledger
	st   *blockstore.Store
	s    *Service
	dir  string
}

type net struct {
	t       *testing.T
	ctx     context.Context
	members []*member
	now     time.Time
}

func types() []ledger.TypeSpec { return append(ledger.Builtin(), implant.Types()...) }

// newNet founds a network whose admin is the first member.
func newNet(t *testing.T, names ...string) *net {
	n := &net{t: t, ctx: context.Background(), now: time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)}
	var gen []byte
	for i, name := range names {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if gen, _, err = ledger.NewGenesis(k, "implants-test", n.now, types()); err != nil {
				t.Fatal(err)
			}
		}
		st, err := blockstore.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		l, err := ledger.Open(n.ctx, ledger.Options{DS: st.DS, Blocks: st.Blocks, Key: k, Genesis: gen, Types: types(), Now: n.clock})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close(); st.Close() })
		id, _ := peer.IDFromPrivateKey(k)
		m := &member{name: name, id: id, l: l, st: st, dir: t.TempDir()}
		if m.s, err = New(Config{Ledger: l, Self: id, DS: st.DS, Dir: m.dir, Now: n.clock}); err != nil {
			t.Fatal(err)
		}
		n.members = append(n.members, m)
		if i > 0 {
			if _, err := n.members[0].l.Append(n.ctx, ledger.TypeMemberAdd, ledger.MemberAddPayload{Peer: id}); err != nil {
				t.Fatal(err)
			}
		}
	}
	n.sync()
	return n
}

func (n *net) clock() time.Time { return n.now }

func (n *net) sync() {
	for _, from := range n.members {
		es, err := from.l.Log(n.ctx, "", 0)
		if err != nil {
			n.t.Fatal(err)
		}
		for _, to := range n.members {
			for i := len(es) - 1; i >= 0 && to != from; i-- {
				if err := to.l.Ingest(n.ctx, es[i].Bytes()); err != nil {
					n.t.Fatal(err)
				}
			}
		}
	}
}

func wantKind(t *testing.T, err error, k fault.Kind, says string) {
	t.Helper()
	if err == nil || fault.KindOf(err) != k || !strings.Contains(err.Error(), says) {
		t.Fatalf("got %v (%v), want a %v error saying %q", err, fault.KindOf(err), k, says)
	}
}

// dump returns every key and value of a datastore, for leak checks.
func dump(t *testing.T, ds datastore.Datastore) []byte {
	res, err := ds.Query(context.Background(), dsq.Query{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for e := range res.Next() {
		if e.Error != nil {
			t.Fatal(e.Error)
		}
		b.WriteString(e.Key)
		b.Write(e.Value)
	}
	return b.Bytes()
}

// TestTraceability is the flow on three services: a wrong check
// digit is refused; the distributor registers and transfers a device to the
// hospital; the other clinic cannot transfer it; the hospital implants it
// into P-4711 and cannot twice; the distributor's recall of the lot names
// P-4711 on the hospital only.
func TestTraceability(t *testing.T) {
	n := newNet(t, "distributor", "hospital", "clinic")
	D, H, C := n.members[0], n.members[1], n.members[2]
	ctx := n.ctx

	_, err := D.s.Register(ctx, api.ImplantRegisterRequest{UDI: "(01)09506000134353(17)301231(10)LOT42(21)SN0001"})
	wantKind(t, err, fault.Invalid, "check digit")
	if !errors.Is(err, implant.ErrCheckDigit) || fault.HintOf(err) == "" {
		t.Fatalf("check digit error: %v (hint %q)", err, fault.HintOf(err))
	}
	dev, err := D.s.Register(ctx, api.ImplantRegisterRequest{UDI: "(01)09506000134352(17)301231(10)LOT42(21)SN0001"})
	if err != nil {
		t.Fatal(err)
	}
	if dev.Custodian != D.id.String() || dev.Status != "available" || dev.Lot != "LOT42" || *dev.Expiry != "2030-12-31" {
		t.Fatalf("registered: %+v", dev)
	}
	id, _ := cid.Decode(dev.Device)
	_, err = D.s.Register(ctx, api.ImplantRegisterRequest{UDI: "0109506000134352" + "17301231" + "10LOT42\x1d21SN0001"})
	wantKind(t, err, fault.Conflict, "already registered")
	n.sync()

	_, err = C.s.Transfer(ctx, id, api.ImplantTransferRequest{Receiver: C.id.String()})
	wantKind(t, err, fault.Forbidden, "custodian")
	if _, err := D.s.Transfer(ctx, id, api.ImplantTransferRequest{Receiver: H.id.String()}); err != nil {
		t.Fatal(err)
	}
	n.sync()
	_, err = C.s.Transfer(ctx, id, api.ImplantTransferRequest{Receiver: C.id.String()})
	wantKind(t, err, fault.Forbidden, "custodian")
	_, err = C.s.Use(ctx, id, api.ImplantUseRequest{Patient: "P-9999", Procedure: "x"})
	wantKind(t, err, fault.Forbidden, "custodian")

	used, err := H.s.Use(ctx, id, api.ImplantUseRequest{Patient: "P-4711", Procedure: "L4-L5 posterior fusion, pedicle screw left L4"})
	if err != nil {
		t.Fatal(err)
	}
	if used.Status != "implanted" || used.Patient != "P-4711" || used.Implanted.IsZero() {
		t.Fatalf("used: %+v", used)
	}
	_, err = H.s.Use(ctx, id, api.ImplantUseRequest{Patient: "P-4711", Procedure: "again"})
	wantKind(t, err, fault.Conflict, "implanted once")
	n.sync()

	if _, err := D.s.Recall(ctx, api.ImplantRecallRequest{DI: "09506000134352", Lot: "LOT42", Reason: "FSCA-2026-017: screw fracture"}); err != nil {
		t.Fatal(err)
	}
	_, err = C.s.Recall(ctx, api.ImplantRecallRequest{DI: "09506000134352", Lot: "LOT42", Reason: "x"})
	wantKind(t, err, fault.Forbidden, "registered no device")
	n.sync()

	for _, m := range n.members {
		rs, err := m.s.Recalls(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		// --mine: the clinic neither registered, held nor implanted it.
		if mine, err := m.s.Recalls(ctx, true); err != nil || len(mine) != 1 || (m == C) != (mine[0].Count == 0) {
			t.Fatalf("%s's own recalled devices: %+v, %v", m.name, mine, err)
		}
		if len(rs) != 1 || rs[0].Count != 1 || rs[0].Devices[0].Device != dev.Device || !rs[0].Devices[0].Recalled {
			t.Fatalf("%s's recalls: %+v", m.name, rs)
		}
		got := rs[0].Devices[0]
		if m == H {
			if got.Patient != "P-4711" || !strings.Contains(got.Procedure, "fusion") {
				t.Fatalf("the hospital does not resolve its patient: %+v", got)
			}
		} else if got.Patient != "" || got.Procedure != "" {
			t.Fatalf("%s sees the patient: %+v", m.name, got)
		}
	}
	// Only the hospital's local store has the patient, sealed; no ledger
	// anywhere has it.
	for _, m := range n.members {
		if all := dump(t, m.st.DS); bytes.Contains(all, []byte("P-4711")) || bytes.Contains(all, []byte("fusion")) {
			t.Fatalf("%s's datastore has the patient or the procedure in clear", m.name)
		}
		es, err := m.l.Log(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if bytes.Contains(e.Bytes(), []byte("P-4711")) {
				t.Fatalf("%s's ledger has P-4711 in %s", m.name, e.Type)
			}
		}
	}
	ls, err := H.s.Implantations(ctx, "P-4711")
	if err != nil || len(ls) != 1 || ls[0].Device.Device != dev.Device {
		t.Fatalf("implantations of P-4711: %+v, %v", ls, err)
	}
	if ls, err := C.s.Implantations(ctx, ""); err != nil || len(ls) != 0 {
		t.Fatalf("the clinic's implantations: %+v, %v", ls, err)
	}

	// History, on any node.
	h, err := C.s.Device(ctx, id, true)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, ev := range h.History {
		kinds = append(kinds, ev.Type)
	}
	if strings.Join(kinds, ",") != "register,transfer,use" || h.History[1].Receiver != H.id.String() {
		t.Fatalf("history: %+v", h.History)
	}
	if _, err := H.s.Explant(ctx, id); err != nil {
		t.Fatal(err)
	}
	_, err = H.s.Explant(ctx, id)
	wantKind(t, err, fault.Conflict, "not implanted")
	_, err = H.s.Device(ctx, cid.MustParse("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"), false)
	wantKind(t, err, fault.NotFound, "no device")
}

// TestManufacturerRecall: a manufacturer recalls devices it did not
// register once an admin authorized it, and only then.
func TestManufacturerRecall(t *testing.T) {
	n := newNet(t, "admin", "distributor", "manufacturer")
	A, D, M := n.members[0], n.members[1], n.members[2]
	ctx := n.ctx
	if _, err := D.s.Register(ctx, api.ImplantRegisterRequest{UDI: "(01)09506000134352(10)LOT7(21)S1"}); err != nil {
		t.Fatal(err)
	}
	n.sync()
	req := api.ImplantRecallRequest{DI: "09506000134352", Lot: "LOT7", Reason: "field safety notice", As: "manufacturer"}
	_, err := M.s.Recall(ctx, req)
	wantKind(t, err, fault.Forbidden, "not authorized as the manufacturer")
	_, err = D.s.Authorize(ctx, api.ImplantAuthorizeRequest{Peer: M.id.String(), Prefix: "9506000"})
	wantKind(t, err, fault.Forbidden, "only an admin")
	_, err = A.s.Authorize(ctx, api.ImplantAuthorizeRequest{Peer: M.id.String(), Prefix: "95"})
	wantKind(t, err, fault.Invalid, "6 to 12 digits")
	if _, err := A.s.Authorize(ctx, api.ImplantAuthorizeRequest{Peer: M.id.String(), Prefix: "9506000"}); err != nil {
		t.Fatal(err)
	}
	n.sync()
	r, err := M.s.Recall(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if r.Count != 1 || r.As != "manufacturer" {
		t.Fatalf("recall: %+v", r)
	}
	// HIBCC: a device by labeler code, recalled by the manufacturer of
	// that labeler code.
	h, err := D.s.Register(ctx, api.ImplantRegisterRequest{UDI: "+A123BJC5D6E71/$$3301231LOTH/SS9/16D20250101R"})
	if err != nil {
		t.Fatal(err)
	}
	if h.Issuer != "hibcc" || h.DI != "A123BJC5D6E71" || h.Lot != "LOTH" || h.Serial != "S9" || *h.Expiry != "2030-12-31" {
		t.Fatalf("HIBCC device: %+v", h)
	}
	if _, err := A.s.Authorize(ctx, api.ImplantAuthorizeRequest{Peer: M.id.String(), Prefix: "A123"}); err != nil {
		t.Fatal(err)
	}
	n.sync()
	if r, err := M.s.Recall(ctx, api.ImplantRecallRequest{DI: "A123BJC5D6E71", Reason: "labeler recall", As: "manufacturer"}); err != nil || r.Count != 1 || r.Issuer != "hibcc" {
		t.Fatalf("HIBCC recall: %+v, %v", r, err)
	}
	n.sync()
	ms, err := D.s.Manufacturers(ctx)
	if err != nil || len(ms) != 2 || ms[0].Peer != M.id.String() {
		t.Fatalf("manufacturers: %+v, %v", ms, err)
	}
}

// failingLedger fails every append.
type failingLedger struct{ Ledger }

func (f failingLedger) Append(context.Context, string, any) (*ledger.Entry, error) {
	return nil, errors.New("disk full")
}

// TestFailedUseLeavesNoLocalRecord: the local record written before the
// append is removed when the append fails, and the error is not a 4xx.
func TestFailedUseLeavesNoLocalRecord(t *testing.T) {
	n := newNet(t, "hospital")
	H := n.members[0]
	dev, err := H.s.Register(n.ctx, api.ImplantRegisterRequest{UDI: "(01)09506000134352(10)L(21)S"})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := cid.Decode(dev.Device)
	H.s.led = failingLedger{H.l}
	_, err = H.s.Use(n.ctx, id, api.ImplantUseRequest{Patient: "P-1", Procedure: "x"})
	if err == nil || fault.KindOf(err) != fault.Internal {
		t.Fatalf("use with a failing ledger: %v (%v)", err, fault.KindOf(err))
	}
	if _, ok, err := H.s.local.get(n.ctx, id); ok || err != nil {
		t.Fatalf("local record left: %v, %v", ok, err)
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	k, err := loadKey(dir)
	if err != nil || len(k) != 32 {
		t.Fatal(k, err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v, %v", st.Mode(), err)
	}
	if k2, err := loadKey(dir); err != nil || !bytes.Equal(k, k2) {
		t.Fatal("the key changed between loads")
	}
	if err := os.Chmod(filepath.Join(dir, KeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadKey(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a key readable by others: %v", err)
	}
}

// TestLocalRowIsBound: a sealed local row does not open under another
// device's ID (a row moved between devices) or another key.
func TestLocalRowIsBound(t *testing.T) {
	ds := datastore.NewMapDatastore()
	key := bytes.Repeat([]byte{1}, 32)
	l, _ := newLocal(ds, key)
	a := cid.MustParse("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	b := cid.MustParse("bafkreidon73zkcrwdb5iafqtijxildoonbwnpv7dyd6ef3qdgads2jc4su")
	if err := l.put(context.Background(), a, &localRow{Patient: "P-1", Procedure: "x", Time: 1}); err != nil {
		t.Fatal(err)
	}
	v, _ := ds.Get(context.Background(), datastore.NewKey(localPrefix+a.String()))
	if _, err := l.open(b, v); err == nil {
		t.Fatal("a row opened under another device")
	}
	other, _ := newLocal(ds, bytes.Repeat([]byte{2}, 32))
	if _, _, err := other.get(context.Background(), a); err == nil {
		t.Fatal("a row opened under another key")
	}
	if r, ok, err := l.get(context.Background(), a); err != nil || !ok || r.Patient != "P-1" {
		t.Fatalf("get: %+v %v %v", r, ok, err)
	}
}
