package ledger

import (
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/keywrap"
)

// ---- public state types ----

// Member is a current member of the network.
type Member struct {
	Peer  peer.ID
	Org   string
	Roles []string
	// Entry is the member.add (or genesis) that gives the current roles.
	Entry cid.Cid
}

// RecordInfo is an announced record.
type RecordInfo struct {
	ID            cid.Cid
	Owner         peer.ID
	Blocklist     cid.Cid
	Size          uint64
	Replicas      uint32
	Class         string
	Prev          cid.Cid
	Version       uint64
	OwnerEnvelope []byte
	Escrow        []EscrowEnvelope
	Entry         cid.Cid
	Announced     time.Time
}

// EscrowFor returns the record's escrow envelope for authority a.
func (r RecordInfo) EscrowFor(a peer.ID) ([]byte, bool) {
	for _, e := range r.Escrow {
		if e.Authority == a {
			return e.Envelope, true
		}
	}
	return nil, false
}

// Grant is a current (not revoked) grant. Callers check Expires themselves,
// with a clock-skew margin.
type Grant struct {
	Record   cid.Cid
	Grantee  peer.ID
	Grantor  peer.ID
	Envelope []byte
	KeyID    keywrap.KeyID
	Expires  time.Time // zero: none
	Purpose  string
	// Label is the grant's sealed label (GrantPayload.Label), if any.
	Label []byte
	Entry cid.Cid
	Time  time.Time
}

// AccessEvent is a reader's claim of its reads (an access entry): Reads
// reads (at least 1) from Time to Last.
type AccessEvent struct {
	Record  cid.Cid
	Reader  peer.ID
	Version uint64
	Purpose string
	Time    time.Time
	Grant   cid.Cid
	Entry   cid.Cid
	Reads   int
	Last    time.Time
}

// Served is a serving node's attestation of reads (an access.served entry).
type Served struct {
	Record cid.Cid
	Reader peer.ID
	Server peer.ID
	Grant  cid.Cid
	Reads  uint64
	Blocks uint64
	First  time.Time
	Last   time.Time
	Entry  cid.Cid
}

// Receipt is a replica holder's latest statement about a record.
type Receipt struct {
	Record cid.Cid
	Holder peer.ID
	Status string
	Reason string
	Entry  cid.Cid
	Time   time.Time
}

// KeyInfo is one announced key-wrapping key of a peer.
type KeyInfo struct {
	Peer   peer.ID
	Public []byte
	ID     keywrap.KeyID
	Entry  cid.Cid
	Time   time.Time
}

// ---- stored index/state values ----

type memberIdx struct {
	Add     bool     `cbor:"1,keyasint"`
	Org     string   `cbor:"2,keyasint"`
	Roles   []string `cbor:"3,keyasint"`
	Entry   []byte   `cbor:"4,keyasint"`
	Wall    uint64   `cbor:"5,keyasint"`
	Counter uint32   `cbor:"6,keyasint"`
	entry   cid.Cid
}

type keyIdx struct {
	Pub     []byte `cbor:"1,keyasint"`
	Entry   []byte `cbor:"2,keyasint"`
	Wall    uint64 `cbor:"3,keyasint"`
	Counter uint32 `cbor:"4,keyasint"`
	entry   cid.Cid
}

type recordIdx struct {
	Info    recordWire `cbor:"1,keyasint"`
	Wall    uint64     `cbor:"2,keyasint"`
	Counter uint32     `cbor:"3,keyasint"`
	entry   cid.Cid
}

// ownedRow is what `ls` shows of a record, kept as the value of its
// owner's /i/own key so that listing a member's records is one prefix scan
// instead of reading and decoding each record's announcement.
type ownedRow struct {
	Size     uint64 `cbor:"1,keyasint"`
	Replicas uint32 `cbor:"2,keyasint"`
	Class    string `cbor:"3,keyasint"`
	Version  uint64 `cbor:"4,keyasint"`
	Prev     []byte `cbor:"5,keyasint,omitempty"`
	Wall     uint64 `cbor:"6,keyasint"`
}

func ownedRowOf(r *recordWire) ownedRow {
	return ownedRow{Size: r.Size, Replicas: r.Replicas, Class: r.Class, Version: r.Version, Prev: r.Prev, Wall: r.Wall}
}

type grantStored struct {
	Grant   grantWire `cbor:"1,keyasint"`
	Grantor []byte    `cbor:"2,keyasint"`
	Entry   []byte    `cbor:"3,keyasint"`
	Wall    uint64    `cbor:"4,keyasint"`
	Counter uint32    `cbor:"5,keyasint"`
}

type accessStored struct {
	Access accessWire `cbor:"1,keyasint"`
	Reader []byte     `cbor:"2,keyasint"`
	Entry  []byte     `cbor:"3,keyasint"`
}

type servedStored struct {
	Served servedWire `cbor:"1,keyasint"`
	Server []byte     `cbor:"2,keyasint"`
	Entry  []byte     `cbor:"3,keyasint"`
}

type receiptStored struct {
	Receipt receiptWire `cbor:"1,keyasint"`
	Holder  []byte      `cbor:"2,keyasint"`
	Entry   []byte      `cbor:"3,keyasint"`
	Wall    uint64      `cbor:"4,keyasint"`
	Counter uint32      `cbor:"5,keyasint"`
}

func (r recordWire) public() (RecordInfo, error) {
	var info RecordInfo
	var err error
	if info.ID, err = cid.Cast(r.Record); err != nil {
		return info, err
	}
	if info.Blocklist, err = cid.Cast(r.Blocklist); err != nil {
		return info, err
	}
	if len(r.Prev) > 0 {
		if info.Prev, err = cid.Cast(r.Prev); err != nil {
			return info, err
		}
	}
	if info.Owner, err = peer.IDFromBytes(r.Owner); err != nil {
		return info, err
	}
	if info.Entry, err = cid.Cast(r.Entry); err != nil {
		return info, err
	}
	info.Size, info.Replicas, info.Class, info.Version = r.Size, r.Replicas, r.Class, r.Version
	info.OwnerEnvelope = r.OwnerEnvelope
	info.Announced = msTime(int64(r.Wall))
	for _, e := range r.Escrow {
		a, err := peer.IDFromBytes(e.Authority)
		if err != nil {
			return info, err
		}
		info.Escrow = append(info.Escrow, EscrowEnvelope{Authority: a, Envelope: e.Envelope})
	}
	return info, nil
}

func (g grantStored) public() (Grant, error) {
	var out Grant
	var err error
	if out.Record, err = cid.Cast(g.Grant.Record); err != nil {
		return out, err
	}
	if out.Grantee, err = peer.IDFromBytes(g.Grant.Grantee); err != nil {
		return out, err
	}
	if out.Grantor, err = peer.IDFromBytes(g.Grantor); err != nil {
		return out, err
	}
	if out.Entry, err = cid.Cast(g.Entry); err != nil {
		return out, err
	}
	var env keywrap.Envelope
	if err := env.UnmarshalBinary(g.Grant.Envelope); err != nil {
		return out, err
	}
	out.KeyID = env.KeyID
	out.Envelope = g.Grant.Envelope
	out.Expires = msTime(g.Grant.Expires)
	out.Purpose = g.Grant.Purpose
	out.Label = g.Grant.Label
	out.Time = msTime(int64(g.Wall))
	return out, nil
}
