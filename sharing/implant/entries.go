package implant

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/strictcbor"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// Entry types.
const (
	TypeRegister     = "implant.register"
	TypeTransfer     = "implant.transfer"
	TypeUse          = "implant.use"
	TypeExplant      = "implant.explant"
	TypeRecall       = "implant.recall"
	TypeManufacturer = "implant.manufacturer"
)

// Recall authorities: the capacity a recall's author acts in.
const (
	AsRegistrant   = "registrant"
	AsManufacturer = "manufacturer"
)

// Limits.
const (
	// PseudonymSize is the size of a patient pseudonym (HMAC-SHA256).
	PseudonymSize = 32
	// MaxReason bounds a recall's reason, in bytes.
	MaxReason = 280
)

// RegisterPayload is an implant.register entry: a device enters the
// network with its UDI, and its registrant is its first custodian. The
// device's ID is the entry's CID.
type RegisterPayload struct {
	Issuer   string `cbor:"1,keyasint"`
	DI       string `cbor:"2,keyasint"`
	Lot      string `cbor:"3,keyasint,omitempty"`
	Serial   string `cbor:"4,keyasint,omitempty"`
	Expiry   uint32 `cbor:"5,keyasint,omitempty"` // YYYYMMDD (DD 00: the month)
	Produced uint32 `cbor:"6,keyasint,omitempty"`
}

// TransferPayload is an implant.transfer entry: the custodian hands the
// device to another member. Prev is the device's custody entry the transfer
// follows (its register entry or its latest transfer, use or explant).
type TransferPayload struct {
	Device []byte `cbor:"1,keyasint"`
	Prev   []byte `cbor:"2,keyasint"`
	To     []byte `cbor:"3,keyasint"`
}

// UsePayload is an implant.use entry: the custodian implants the device
// into a patient, named only by a keyed pseudonym that only the custodian's
// node can compute (Pseudonym).
type UsePayload struct {
	Device  []byte `cbor:"1,keyasint"`
	Prev    []byte `cbor:"2,keyasint"`
	Patient []byte `cbor:"3,keyasint"`
}

// ExplantPayload is an implant.explant entry: the custodian removes an
// implanted device.
type ExplantPayload struct {
	Device []byte `cbor:"1,keyasint"`
	Prev   []byte `cbor:"2,keyasint"`
}

// RecallPayload is an implant.recall entry: devices of a DI, narrowed by
// lot and serial, are recalled. As says in which capacity the author acts:
// AsRegistrant (it covers the author's registered devices) or
// AsManufacturer (every matching device, under an implant.manufacturer
// authorization). Reason is the recall notice every member reads.
type RecallPayload struct {
	Issuer string `cbor:"1,keyasint"`
	DI     string `cbor:"2,keyasint"`
	Lot    string `cbor:"3,keyasint,omitempty"`
	Serial string `cbor:"4,keyasint,omitempty"`
	Reason string `cbor:"5,keyasint"`
	As     string `cbor:"6,keyasint"`
}

// ManufacturerPayload is an implant.manufacturer entry: an admin authorizes
// a member to recall every device whose DI starts with Prefix (a GS1
// company prefix, 6 to 12 digits, matched after the GTIN's indicator
// digit; or a HIBCC labeler code), or withdraws that (Revoke).
type ManufacturerPayload struct {
	Peer   []byte `cbor:"1,keyasint"`
	Issuer string `cbor:"2,keyasint"`
	Prefix string `cbor:"3,keyasint"`
	Revoke bool   `cbor:"4,keyasint,omitempty"`
}

var decMode = strictcbor.Dec(strictcbor.Limits{Nesting: 4, Array: 16, Map: 16})

// Types returns the implant entry types, for a node's ledger.Options.Types.
// Nothing registers them by import: the node runs them because it lists
// them, and the genesis of a network founded by such a node declares them.
func Types() []ledger.TypeSpec {
	return []ledger.TypeSpec{
		{Name: TypeRegister, New: func() any { return new(RegisterPayload) }, Validate: validateRegister, Apply: applyRegister},
		{Name: TypeTransfer, New: func() any { return new(TransferPayload) }, Validate: validateTransfer, Apply: applyTransfer},
		{Name: TypeUse, New: func() any { return new(UsePayload) }, Validate: validateUse, Apply: applyUse},
		{Name: TypeExplant, New: func() any { return new(ExplantPayload) }, Validate: validateExplant, Apply: applyExplant},
		{Name: TypeRecall, New: func() any { return new(RecallPayload) }, Validate: validateRecall, Apply: applyRecall},
		{Name: TypeManufacturer, New: func() any { return new(ManufacturerPayload) }, Validate: validateManufacturer, Apply: applyManufacturer},
	}
}

// IsType reports whether t is one of this package's entry types.
func IsType(t string) bool {
	switch t {
	case TypeRegister, TypeTransfer, TypeUse, TypeExplant, TypeRecall, TypeManufacturer:
		return true
	}
	return false
}

// Pseudonym names a patient on the ledger for one device: HMAC-SHA256 under
// the hospital's local key of the device ID and the local patient ID. Only
// the node holding the key can compute it, and the same patient gets a
// different pseudonym per device, so the ledger does not link a patient's
// implants to each other.
func Pseudonym(key []byte, device cid.Cid, patientID string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("medmesh implant patient v1\x00"))
	m.Write(device.Bytes())
	m.Write([]byte{0})
	m.Write([]byte(patientID))
	return m.Sum(nil)
}

// UDI returns the registered UDI.
func (p *RegisterPayload) UDI() (UDI, error) {
	exp, err := DateFromInt(p.Expiry)
	if err != nil {
		return UDI{}, fmt.Errorf("implant.register: expiry: %w", err)
	}
	prod, err := DateFromInt(p.Produced)
	if err != nil {
		return UDI{}, fmt.Errorf("implant.register: production date: %w", err)
	}
	u := UDI{Issuer: p.Issuer, DI: p.DI, Lot: p.Lot, Serial: p.Serial, Expiry: exp, Produced: prod}
	return u, u.Check()
}

// RegisterPayloadOf is the payload that registers u.
func RegisterPayloadOf(u UDI) *RegisterPayload {
	return &RegisterPayload{Issuer: u.Issuer, DI: u.DI, Lot: u.Lot, Serial: u.Serial, Expiry: u.Expiry.Int(), Produced: u.Produced.Int()}
}

// Check validates a recall on its own.
func (p *RecallPayload) Check() error {
	probe := UDI{Issuer: p.Issuer, DI: p.DI, Lot: p.Lot, Serial: p.Serial}
	if err := probe.Check(); err != nil {
		return fmt.Errorf("implant.recall: %w", err)
	}
	if p.As != AsRegistrant && p.As != AsManufacturer {
		return fmt.Errorf("implant.recall: acting as %q: %s or %s", p.As, AsRegistrant, AsManufacturer)
	}
	return CheckReason(p.Reason)
}

// CheckReason checks a recall reason: 1 to MaxReason bytes of printable
// UTF-8 on one line. It is the one free text of these entries, and it is
// public by design: the recall notice every member reads.
func CheckReason(r string) error {
	if r == "" || len(r) > MaxReason {
		return fmt.Errorf("implant.recall: a reason is 1 to %d bytes, got %d", MaxReason, len(r))
	}
	if !utf8.ValidString(r) {
		return errors.New("implant.recall: the reason is not UTF-8")
	}
	for _, c := range r {
		if !unicode.IsPrint(c) {
			return fmt.Errorf("implant.recall: the reason has the control character %U", c)
		}
	}
	return nil
}

// Check validates a manufacturer authorization on its own.
func (p *ManufacturerPayload) Check() error {
	if _, err := peer.IDFromBytes(p.Peer); err != nil {
		return fmt.Errorf("implant.manufacturer: peer: %w", err)
	}
	return CheckPrefix(p.Issuer, p.Prefix)
}

// CheckPrefix checks a manufacturer prefix: a GS1 company prefix (6 to 12
// digits, as in a GTIN-13) or a HIBCC labeler code (a letter and three
// letters or digits).
func CheckPrefix(issuer, prefix string) error {
	switch issuer {
	case IssuerGS1:
		if len(prefix) < 6 || len(prefix) > 12 || !allDigits(prefix) {
			return fmt.Errorf("implant: a GS1 company prefix is 6 to 12 digits, got %q", clip(prefix))
		}
	case IssuerHIBCC:
		if len(prefix) != 4 || checkHIBCCField("labeler code", prefix, 4) != nil || prefix[0] < 'A' || prefix[0] > 'Z' {
			return fmt.Errorf("implant: a HIBCC labeler code is a letter and three letters or digits, got %q", clip(prefix))
		}
	default:
		return fmt.Errorf("implant: unknown issuer %q (gs1 or hibcc)", issuer)
	}
	return nil
}

// prefixesOf lists the manufacturer prefixes that cover a DI.
func prefixesOf(issuer, di string) []string {
	switch issuer {
	case IssuerGS1:
		if len(di) != 14 {
			return nil
		}
		var out []string
		for n := 6; n <= 12; n++ {
			out = append(out, di[1:1+n])
		}
		return out
	case IssuerHIBCC:
		if len(di) < 4 {
			return nil
		}
		return []string{di[:4]}
	}
	return nil
}

func parseCid(b []byte, what string) (cid.Cid, error) {
	c, err := cid.Cast(b)
	if err != nil {
		return cid.Undef, fmt.Errorf("%s: %w", what, err)
	}
	return c, nil
}
