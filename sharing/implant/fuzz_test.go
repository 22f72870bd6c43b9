package implant

import (
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/medmesh/medmesh/internal/strictcbor"
)

// memPast is a Past in memory: rows by type, and members.
type memPast struct {
	rows    map[string][]Row
	members map[peer.ID]bool
}

func (m memPast) IsMember(p peer.ID) bool          { return m.members[p] }
func (m memPast) HasRole(p peer.ID, _ string) bool { return m.members[p] }
func (m memPast) Rows(typ, prefix string) ([]Row, error) {
	var out []Row
	for _, r := range m.rows[typ] {
		if len(r.Key) >= len(prefix) && r.Key[:len(prefix)] == prefix {
			out = append(out, r)
		}
	}
	return out, nil
}

func fakeCid(s string) cid.Cid {
	h, _ := mh.Sum([]byte(s), mh.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, h)
}

// FuzzPayloads: payloads as they come off the network (canonical CBOR of
// any shape) never panic the rules, whatever the state they meet.
func FuzzPayloads(f *testing.F) {
	author, _ := peer.Decode("12D3KooWEHBSs2cAojaGGdjwReUFbrz2BmDkCG3bnMeVBn8td4M9")
	dev := fakeCid("device")
	u, _ := Parse("(01)09506000134352(17)301231(10)LOT42(21)SN0001", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	// A state with the device registered by author and a recall of its lot.
	reg := deviceRow{Author: []byte(author), Issuer: u.Issuer, DI: u.DI, Lot: u.Lot, Serial: u.Serial, Expiry: u.Expiry.Int(), Wall: 1}
	regB, _ := strictcbor.Enc.Marshal(&reg)
	rc := recallRow{Author: []byte(author), Issuer: "gs1", Lot: "LOT42", Reason: "x", As: AsRegistrant, Wall: 2}
	rcB, _ := strictcbor.Enc.Marshal(&rc)
	st := memPast{members: map[peer.ID]bool{author: true}, rows: map[string][]Row{
		TypeRegister: {{Key: "d/" + dev.String() + "/" + dev.String(), Entry: dev, Value: regB}, {Key: "g/" + u.DI + "/" + dev.String(), Entry: dev, Value: regB}},
		TypeRecall:   {{Key: "g/" + u.DI + "/" + fakeCid("r").String(), Entry: fakeCid("r"), Value: rcB}},
	}}
	for _, pl := range []any{
		RegisterPayloadOf(u),
		&TransferPayload{Device: dev.Bytes(), Prev: dev.Bytes(), To: []byte(author)},
		&UsePayload{Device: dev.Bytes(), Prev: dev.Bytes(), Patient: make([]byte, 32)},
		&ExplantPayload{Device: dev.Bytes(), Prev: dev.Bytes()},
		&RecallPayload{Issuer: "gs1", DI: u.DI, Lot: "LOT42", Reason: "FSCA", As: AsManufacturer},
		&ManufacturerPayload{Peer: []byte(author), Issuer: "gs1", Prefix: "9506000"},
	} {
		b, err := strictcbor.Enc.Marshal(pl)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		at := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
		for _, p := range []memPast{st, {}} {
			var r RegisterPayload
			if decMode.Unmarshal(b, &r) == nil {
				_ = CheckRegister(p, author, &r)
			}
			var tr TransferPayload
			if decMode.Unmarshal(b, &tr) == nil {
				_, _ = CheckTransfer(p, author, &tr)
			}
			var us UsePayload
			if decMode.Unmarshal(b, &us) == nil {
				_, _ = CheckUse(p, author, at, &us)
			}
			var ex ExplantPayload
			if decMode.Unmarshal(b, &ex) == nil {
				_, _ = CheckExplant(p, author, &ex)
			}
			var rc RecallPayload
			if decMode.Unmarshal(b, &rc) == nil {
				_ = CheckRecall(p, author, &rc)
			}
			var mf ManufacturerPayload
			if decMode.Unmarshal(b, &mf) == nil {
				_ = CheckManufacturer(p, author, &mf)
			}
		}
	})
}
