package implant

import (
	"errors"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/strictcbor"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// The rules of the implant entry types, each judged at the entry's causal
// position (see doc.go for the authority table). The Check* functions are
// the rules themselves over a Past; the validate* functions run them for
// the ledger on a View, and a node runs them on its current state before it
// appends, to refuse early with the same reason.

// Reasons a custody entry is refused, wrapped by the rules' errors so that
// a node can classify them (the ledger sees only the message).
var (
	// ErrNotCustodian: only the device's current custodian may do this.
	ErrNotCustodian = fmt.Errorf("%w: not the device's custodian", ledger.ErrUnauthorized)
	// ErrUnknownDevice: no such device in the entry's past.
	ErrUnknownDevice = errors.New("unknown device")
	// ErrState: the device's state does not allow it (implanted twice,
	// expired, recalled, not implanted, stale).
	ErrState = errors.New("device state")
	// ErrDuplicate: the serialized UDI is already registered.
	ErrDuplicate = errors.New("already registered")
)

// CheckRegister: any member registers a device and becomes its custodian;
// a serialized UDI (DI and serial) is registered once.
func CheckRegister(p Past, author peer.ID, pl *RegisterPayload) error {
	u, err := pl.UDI()
	if err != nil {
		return err
	}
	if u.Serial == "" {
		return nil
	}
	rows, err := p.Rows(TypeRegister, serialKey(u.DI, u.Serial))
	if err != nil {
		return err
	}
	if len(rows) > 0 {
		return fmt.Errorf("implant.register: %w: UDI %s is device %s", ErrDuplicate, u.HRF(), rows[0].Entry)
	}
	return nil
}

// custody loads the device a custody entry acts on and checks that its
// author is the custodian and that it follows the chain's tip.
func custody(p Past, typ string, author peer.ID, device, prev []byte) (*Device, error) {
	id, err := parseCid(device, typ+": device")
	if err != nil {
		return nil, err
	}
	pc, err := parseCid(prev, typ+": prev")
	if err != nil {
		return nil, err
	}
	d, ok, err := LoadDevice(p, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%s: %w %s", typ, ErrUnknownDevice, id)
	}
	if d.Custodian != author {
		return nil, fmt.Errorf("%s: %w: %s is, not %s", typ, ErrNotCustodian, d.Custodian, author)
	}
	if pc != d.Tip {
		return nil, fmt.Errorf("%s: %w: stale: it follows %s, the device's custody is at %s", typ, ErrState, pc, d.Tip)
	}
	return d, nil
}

// CheckTransfer: only the custodian transfers, to another member, a device
// that is not in a patient.
func CheckTransfer(p Past, author peer.ID, pl *TransferPayload) (*Device, error) {
	d, err := custody(p, TypeTransfer, author, pl.Device, pl.Prev)
	if err != nil {
		return nil, err
	}
	to, err := peer.IDFromBytes(pl.To)
	if err != nil {
		return nil, fmt.Errorf("implant.transfer: receiver: %w", err)
	}
	switch {
	case to == author:
		return nil, errors.New("implant.transfer: the receiver is the custodian itself")
	case !p.IsMember(to):
		return nil, fmt.Errorf("implant.transfer: the receiver %s is not a member", to)
	case d.Status == StatusImplanted:
		return nil, fmt.Errorf("implant.transfer: %w: device %s is implanted in a patient; explant it first", ErrState, d.ID)
	}
	return d, nil
}

// CheckUse: only the custodian implants, once, a device that has not
// expired by the entry's time and that no recall in its past covers.
func CheckUse(p Past, author peer.ID, at time.Time, pl *UsePayload) (*Device, error) {
	d, err := custody(p, TypeUse, author, pl.Device, pl.Prev)
	if err != nil {
		return nil, err
	}
	if len(pl.Patient) != PseudonymSize {
		return nil, fmt.Errorf("implant.use: the patient pseudonym is %d bytes, not %d", len(pl.Patient), PseudonymSize)
	}
	switch {
	case d.Status == StatusImplanted:
		return nil, fmt.Errorf("implant.use: %w: device %s is already implanted (%s): a device is implanted once", ErrState, d.ID, d.Use.Time().Format(time.RFC3339))
	case d.Status == StatusExplanted:
		return nil, fmt.Errorf("implant.use: %w: device %s was implanted and explanted: a device is implanted once", ErrState, d.ID)
	case !d.UDI.Expiry.IsZero() && d.UDI.Expiry.After(at):
		return nil, fmt.Errorf("implant.use: %w: device %s expired on %s", ErrState, d.ID, d.UDI.Expiry.Last())
	case len(d.Recalls) > 0:
		r := d.Recalls[0]
		return nil, fmt.Errorf("implant.use: %w: device %s is recalled (%s, %s): %s", ErrState, d.ID, r.Entry, r.Time().Format(time.RFC3339), r.Reason)
	}
	return d, nil
}

// CheckExplant: only the custodian explants, an implanted device.
func CheckExplant(p Past, author peer.ID, pl *ExplantPayload) (*Device, error) {
	d, err := custody(p, TypeExplant, author, pl.Device, pl.Prev)
	if err != nil {
		return nil, err
	}
	if d.Status != StatusImplanted {
		return nil, fmt.Errorf("implant.explant: %w: device %s is %s, not implanted", ErrState, d.ID, d.Status)
	}
	return d, nil
}

// CheckRecall: acting as registrant, the author must have registered a
// device the recall covers; acting as manufacturer, it must hold a current
// implant.manufacturer authorization for a prefix of the DI.
func CheckRecall(p Past, author peer.ID, pl *RecallPayload) error {
	if err := pl.Check(); err != nil {
		return err
	}
	if pl.As == AsManufacturer {
		ok, err := IsManufacturer(p, author, pl.Issuer, pl.DI)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("implant.recall: %w: %s is not authorized as the manufacturer of %s (an admin authorizes one with implant.manufacturer)", ledger.ErrUnauthorized, author, pl.DI)
		}
		return nil
	}
	ds, err := DevicesByDI(p, pl.DI)
	if err != nil {
		return err
	}
	r := Recall{Issuer: pl.Issuer, DI: pl.DI, Lot: pl.Lot, Serial: pl.Serial, As: pl.As, Author: author}
	for _, d := range ds {
		if r.Covers(d) {
			return nil
		}
	}
	return fmt.Errorf("implant.recall: %w: %s registered no device this recall covers; only a device's registrant or an authorized manufacturer recalls", ledger.ErrUnauthorized, author)
}

// CheckManufacturer: only an admin authorizes a manufacturer, a member.
func CheckManufacturer(p Past, author peer.ID, pl *ManufacturerPayload) error {
	if err := pl.Check(); err != nil {
		return err
	}
	if !p.HasRole(author, ledger.RoleAdmin) {
		return fmt.Errorf("implant.manufacturer: %w: only an admin authorizes a manufacturer", ledger.ErrUnauthorized)
	}
	who, _ := peer.IDFromBytes(pl.Peer)
	if !pl.Revoke && !p.IsMember(who) {
		return fmt.Errorf("implant.manufacturer: %s is not a member", who)
	}
	return nil
}

// ---- ledger.TypeSpec functions ----

func entryTime(e *ledger.Entry) time.Time { return time.UnixMilli(int64(e.Clock.Wall)).UTC() }

func validateRegister(v ledger.View, e *ledger.Entry, pl any) error {
	return CheckRegister(FromView(v), e.Author, pl.(*RegisterPayload))
}

func validateTransfer(v ledger.View, e *ledger.Entry, pl any) error {
	_, err := CheckTransfer(FromView(v), e.Author, pl.(*TransferPayload))
	return err
}

func validateUse(v ledger.View, e *ledger.Entry, pl any) error {
	_, err := CheckUse(FromView(v), e.Author, entryTime(e), pl.(*UsePayload))
	return err
}

func validateExplant(v ledger.View, e *ledger.Entry, pl any) error {
	_, err := CheckExplant(FromView(v), e.Author, pl.(*ExplantPayload))
	return err
}

func validateRecall(v ledger.View, e *ledger.Entry, pl any) error {
	return CheckRecall(FromView(v), e.Author, pl.(*RecallPayload))
}

func validateManufacturer(v ledger.View, e *ledger.Entry, pl any) error {
	return CheckManufacturer(FromView(v), e.Author, pl.(*ManufacturerPayload))
}

func put(t ledger.Txn, key string, v any) error {
	b, err := strictcbor.Enc.Marshal(v)
	if err != nil {
		return err
	}
	t.Put(key, b)
	return nil
}

func applyRegister(t ledger.Txn, e *ledger.Entry, pl any) error {
	p := pl.(*RegisterPayload)
	id := e.CID().String()
	row := deviceRow{Author: []byte(e.Author), Issuer: p.Issuer, DI: p.DI, Lot: p.Lot, Serial: p.Serial,
		Expiry: p.Expiry, Produced: p.Produced, Wall: e.Clock.Wall, Counter: e.Clock.Counter}
	keys := []string{"d/" + id + "/" + id, "g/" + p.DI + "/" + id}
	if p.Serial != "" {
		keys = append(keys, serialKey(p.DI, p.Serial)+id)
	}
	for _, k := range keys {
		if err := put(t, k, &row); err != nil {
			return err
		}
	}
	return nil
}

func applyEvent(t ledger.Txn, e *ledger.Entry, device, prev, to, patient []byte) error {
	dev, err := cid.Cast(device)
	if err != nil {
		return err
	}
	row := eventRow{Author: []byte(e.Author), Prev: prev, To: to, Patient: patient, Wall: e.Clock.Wall, Counter: e.Clock.Counter}
	return put(t, "d/"+dev.String()+"/"+e.CID().String(), &row)
}

func applyTransfer(t ledger.Txn, e *ledger.Entry, pl any) error {
	p := pl.(*TransferPayload)
	return applyEvent(t, e, p.Device, p.Prev, p.To, nil)
}

func applyUse(t ledger.Txn, e *ledger.Entry, pl any) error {
	p := pl.(*UsePayload)
	return applyEvent(t, e, p.Device, p.Prev, nil, p.Patient)
}

func applyExplant(t ledger.Txn, e *ledger.Entry, pl any) error {
	p := pl.(*ExplantPayload)
	return applyEvent(t, e, p.Device, p.Prev, nil, nil)
}

func applyRecall(t ledger.Txn, e *ledger.Entry, pl any) error {
	p := pl.(*RecallPayload)
	row := recallRow{Author: []byte(e.Author), Issuer: p.Issuer, Lot: p.Lot, Serial: p.Serial, Reason: p.Reason, As: p.As,
		Wall: e.Clock.Wall, Counter: e.Clock.Counter}
	return put(t, "g/"+p.DI+"/"+e.CID().String(), &row)
}

func applyManufacturer(t ledger.Txn, e *ledger.Entry, pl any) error {
	p := pl.(*ManufacturerPayload)
	who, err := peer.IDFromBytes(p.Peer)
	if err != nil {
		return err
	}
	row := manufacturerRow{Revoke: p.Revoke, Wall: e.Clock.Wall, Counter: e.Clock.Counter}
	return put(t, "p/"+p.Issuer+"/"+p.Prefix+"/"+who.String()+"/"+e.CID().String(), &row)
}
