package implant

import (
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/ledger"
)

// Past is the ledger state the custody rules read: membership and roles,
// and the rows this package's Apply functions wrote (Row), each naming its
// entry. At an entry's causal position it is the entries of the causal past
// only (FromView); for queries, every applied entry.
type Past interface {
	IsMember(p peer.ID) bool
	HasRole(p peer.ID, role string) bool
	// Rows lists the rows of entry type typ whose key starts with prefix,
	// in key order.
	Rows(typ, prefix string) ([]Row, error)
}

// Row is one state row: its key, the entry that wrote it, its value.
type Row struct {
	Key   string
	Entry cid.Cid
	Value []byte
}

// Status is a device's custody state.
type Status string

// Statuses.
const (
	// StatusAvailable: registered, not implanted yet.
	StatusAvailable Status = "available"
	// StatusImplanted: implanted in a patient.
	StatusImplanted Status = "implanted"
	// StatusExplanted: removed from the patient; never implanted again.
	StatusExplanted Status = "explanted"
)

// Event is one custody entry of a device (transfer, use or explant).
type Event struct {
	Entry   cid.Cid
	Type    string
	Author  peer.ID
	Prev    cid.Cid
	To      peer.ID // transfer: the receiver
	Patient []byte  // use: the patient's pseudonym
	Clock   ledger.HLC
	// Superseded marks an event on a losing branch: another event that
	// follows the same entry came first in (clock, CID) order.
	Superseded bool
}

// Time is the event's wall-clock time.
func (e Event) Time() time.Time { return time.UnixMilli(int64(e.Clock.Wall)).UTC() }

// Device is a device's state: its registration, the custody chain that
// follows it and the recalls that cover it.
type Device struct {
	ID         cid.Cid // the register entry's CID
	UDI        UDI
	Registrant peer.ID
	Registered ledger.HLC
	Custodian  peer.ID
	Status     Status
	// Tip is the latest entry of the custody chain (ID when there is none).
	Tip cid.Cid
	// History is the custody chain oldest first, then superseded events.
	History []Event
	// Use and Explant point into History when the device was implanted
	// (and removed).
	Use     *Event
	Explant *Event
	Recalls []Recall
}

// Recall is a recall entry.
type Recall struct {
	Entry  cid.Cid
	Author peer.ID
	Issuer string
	DI     string
	Lot    string
	Serial string
	Reason string
	As     string
	Clock  ledger.HLC
}

// Time is the recall's wall-clock time.
func (r Recall) Time() time.Time { return time.UnixMilli(int64(r.Clock.Wall)).UTC() }

// Covers reports whether the recall covers device d: same DI, the lot and
// serial if it names them, and, unless a manufacturer issued it, a device
// its author registered.
func (r Recall) Covers(d *Device) bool {
	if r.Issuer != d.UDI.Issuer || r.DI != d.UDI.DI {
		return false
	}
	if r.Lot != "" && r.Lot != d.UDI.Lot || r.Serial != "" && r.Serial != d.UDI.Serial {
		return false
	}
	return r.As == AsManufacturer || r.Author == d.Registrant
}

// State rows. Every key ends in the CID of the entry that wrote it.
// Keys: implant.register "d/<device>/<device>" (the device),
// "g/<DI>/<device>" (devices by DI) and "s/<DI>/<hex serial>/<device>"
// (serialized devices); transfer, use and explant "d/<device>/<entry>";
// recall "g/<DI>/<entry>"; manufacturer "p/<issuer>/<prefix>/<peer>/<entry>".
type deviceRow struct {
	Author   []byte `cbor:"1,keyasint"`
	Issuer   string `cbor:"2,keyasint"`
	DI       string `cbor:"3,keyasint"`
	Lot      string `cbor:"4,keyasint,omitempty"`
	Serial   string `cbor:"5,keyasint,omitempty"`
	Expiry   uint32 `cbor:"6,keyasint,omitempty"`
	Produced uint32 `cbor:"7,keyasint,omitempty"`
	Wall     uint64 `cbor:"8,keyasint"`
	Counter  uint32 `cbor:"9,keyasint"`
}

type eventRow struct {
	Author  []byte `cbor:"1,keyasint"`
	Prev    []byte `cbor:"2,keyasint"`
	To      []byte `cbor:"3,keyasint,omitempty"`
	Patient []byte `cbor:"4,keyasint,omitempty"`
	Wall    uint64 `cbor:"5,keyasint"`
	Counter uint32 `cbor:"6,keyasint"`
}

type recallRow struct {
	Author  []byte `cbor:"1,keyasint"`
	Issuer  string `cbor:"2,keyasint"`
	Lot     string `cbor:"3,keyasint,omitempty"`
	Serial  string `cbor:"4,keyasint,omitempty"`
	Reason  string `cbor:"5,keyasint"`
	As      string `cbor:"6,keyasint"`
	Wall    uint64 `cbor:"7,keyasint"`
	Counter uint32 `cbor:"8,keyasint"`
}

type manufacturerRow struct {
	Revoke  bool   `cbor:"1,keyasint,omitempty"`
	Wall    uint64 `cbor:"2,keyasint"`
	Counter uint32 `cbor:"3,keyasint"`
}

func serialKey(di, serial string) string {
	return "s/" + di + "/" + hex.EncodeToString([]byte(serial)) + "/"
}

func decodeRow(r Row, v any) error {
	if err := decMode.Unmarshal(r.Value, v); err != nil {
		return fmt.Errorf("implant: stored row %s does not decode: %w", r.Key, err)
	}
	return nil
}

// before orders by (clock, CID), the ledger's order.
func before(a ledger.HLC, ac cid.Cid, b ledger.HLC, bc cid.Cid) bool {
	if a != b {
		return a.Less(b)
	}
	return ac.String() < bc.String()
}

// LoadDevice reads a device and its custody as p has them; ok is false if
// no register entry of that ID is in p.
func LoadDevice(p Past, id cid.Cid) (*Device, bool, error) {
	rows, err := p.Rows(TypeRegister, "d/"+id.String()+"/")
	if err != nil {
		return nil, false, err
	}
	for _, r := range rows {
		if r.Entry == id {
			d, err := deviceFromRow(r, id)
			if err != nil {
				return nil, false, err
			}
			return d, true, fillDevice(p, d)
		}
	}
	return nil, false, nil
}

func deviceFromRow(r Row, id cid.Cid) (*Device, error) {
	var dr deviceRow
	if err := decodeRow(r, &dr); err != nil {
		return nil, err
	}
	reg, err := peer.IDFromBytes(dr.Author)
	if err != nil {
		return nil, fmt.Errorf("implant: stored row %s: %w", r.Key, err)
	}
	pl := RegisterPayload{Issuer: dr.Issuer, DI: dr.DI, Lot: dr.Lot, Serial: dr.Serial, Expiry: dr.Expiry, Produced: dr.Produced}
	u, err := pl.UDI()
	if err != nil {
		return nil, fmt.Errorf("implant: stored row %s: %w", r.Key, err)
	}
	return &Device{ID: id, UDI: u, Registrant: reg, Registered: ledger.HLC{Wall: dr.Wall, Counter: dr.Counter}}, nil
}

// fillDevice follows the custody chain from the register entry: at each
// step the first event in (clock, CID) order that names the current tip as
// its Prev extends the chain; other events naming the same Prev (a fork
// only a modified node makes) are superseded, and so is what follows them.
func fillDevice(p Past, d *Device) error {
	var events []Event
	for _, typ := range []string{TypeTransfer, TypeUse, TypeExplant} {
		rows, err := p.Rows(typ, "d/"+d.ID.String()+"/")
		if err != nil {
			return err
		}
		for _, r := range rows {
			var er eventRow
			if err := decodeRow(r, &er); err != nil {
				return err
			}
			ev := Event{Entry: r.Entry, Type: typ, Clock: ledger.HLC{Wall: er.Wall, Counter: er.Counter}, Patient: er.Patient}
			var err error
			if ev.Author, err = peer.IDFromBytes(er.Author); err == nil {
				if ev.Prev, err = cid.Cast(er.Prev); err == nil && len(er.To) > 0 {
					ev.To, err = peer.IDFromBytes(er.To)
				}
			}
			if err != nil {
				return fmt.Errorf("implant: stored row %s: %w", r.Key, err)
			}
			events = append(events, ev)
		}
	}
	sort.Slice(events, func(i, j int) bool {
		return before(events[i].Clock, events[i].Entry, events[j].Clock, events[j].Entry)
	})
	d.Custodian, d.Status, d.Tip = d.Registrant, StatusAvailable, d.ID
	used := make([]bool, len(events))
	var chain []Event
	for {
		next := -1
		for i, ev := range events {
			if !used[i] && ev.Prev == d.Tip {
				next = i
				break
			}
		}
		if next < 0 {
			break
		}
		used[next] = true
		ev := events[next]
		chain = append(chain, ev)
		d.Tip = ev.Entry
		switch ev.Type {
		case TypeTransfer:
			d.Custodian = ev.To
		case TypeUse:
			d.Status = StatusImplanted
		case TypeExplant:
			d.Status = StatusExplanted
		}
	}
	d.History = chain
	for i, ev := range events {
		if !used[i] {
			ev.Superseded = true
			d.History = append(d.History, ev)
		}
	}
	for i := range d.History {
		switch ev := &d.History[i]; {
		case ev.Superseded:
		case ev.Type == TypeUse:
			d.Use = ev
		case ev.Type == TypeExplant:
			d.Explant = ev
		}
	}
	recalls, err := RecallsOf(p, d.UDI.Issuer, d.UDI.DI)
	if err != nil {
		return err
	}
	for _, r := range recalls {
		if r.Covers(d) {
			d.Recalls = append(d.Recalls, r)
		}
	}
	return nil
}

// Devices lists every device in p, in device ID order.
func Devices(p Past) ([]*Device, error) {
	return devicesUnder(p, "d/")
}

// DevicesByDI lists the devices of one DI.
func DevicesByDI(p Past, di string) ([]*Device, error) {
	return devicesUnder(p, "g/"+di+"/")
}

func devicesUnder(p Past, prefix string) ([]*Device, error) {
	rows, err := p.Rows(TypeRegister, prefix)
	if err != nil {
		return nil, err
	}
	var out []*Device
	for _, r := range rows {
		d, err := deviceFromRow(r, r.Entry)
		if err != nil {
			return nil, err
		}
		if err := fillDevice(p, d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// RecallsOf lists the recalls of a DI in (clock, CID) order.
func RecallsOf(p Past, issuer, di string) ([]Recall, error) {
	return recallsUnder(p, "g/"+di+"/", issuer)
}

// Recalls lists every recall in (clock, CID) order.
func Recalls(p Past) ([]Recall, error) { return recallsUnder(p, "g/", "") }

func recallsUnder(p Past, prefix, issuer string) ([]Recall, error) {
	rows, err := p.Rows(TypeRecall, prefix)
	if err != nil {
		return nil, err
	}
	var out []Recall
	for _, r := range rows {
		var rr recallRow
		if err := decodeRow(r, &rr); err != nil {
			return nil, err
		}
		if issuer != "" && rr.Issuer != issuer {
			continue
		}
		a, err := peer.IDFromBytes(rr.Author)
		if err != nil {
			return nil, fmt.Errorf("implant: stored row %s: %w", r.Key, err)
		}
		parts := strings.Split(r.Key, "/")
		out = append(out, Recall{Entry: r.Entry, Author: a, Issuer: rr.Issuer, DI: parts[1], Lot: rr.Lot, Serial: rr.Serial,
			Reason: rr.Reason, As: rr.As, Clock: ledger.HLC{Wall: rr.Wall, Counter: rr.Counter}})
	}
	sort.Slice(out, func(i, j int) bool { return before(out[i].Clock, out[i].Entry, out[j].Clock, out[j].Entry) })
	return out, nil
}

// IsManufacturer reports whether who may recall every device of a DI: its
// latest implant.manufacturer entry, in (clock, CID) order, for a prefix
// that covers the DI authorizes it.
func IsManufacturer(p Past, who peer.ID, issuer, di string) (bool, error) {
	for _, pre := range prefixesOf(issuer, di) {
		rows, err := p.Rows(TypeManufacturer, "p/"+issuer+"/"+pre+"/"+who.String()+"/")
		if err != nil {
			return false, err
		}
		var latest *manufacturerRow
		var latestC cid.Cid
		for _, r := range rows {
			var mr manufacturerRow
			if err := decodeRow(r, &mr); err != nil {
				return false, err
			}
			if latest == nil || before(ledger.HLC{Wall: latest.Wall, Counter: latest.Counter}, latestC, ledger.HLC{Wall: mr.Wall, Counter: mr.Counter}, r.Entry) {
				latest, latestC = &mr, r.Entry
			}
		}
		if latest != nil && !latest.Revoke {
			return true, nil
		}
	}
	return false, nil
}

// Authorization is a current manufacturer authorization.
type Authorization struct {
	Peer   peer.ID
	Issuer string
	Prefix string
	Entry  cid.Cid
}

// Manufacturers lists the current manufacturer authorizations.
func Manufacturers(p Past) ([]Authorization, error) {
	rows, err := p.Rows(TypeManufacturer, "p/")
	if err != nil {
		return nil, err
	}
	type latest struct {
		row manufacturerRow
		a   Authorization
	}
	by := map[string]*latest{}
	var order []string
	for _, r := range rows {
		parts := strings.Split(r.Key, "/")
		if len(parts) != 5 {
			continue
		}
		var mr manufacturerRow
		if err := decodeRow(r, &mr); err != nil {
			return nil, err
		}
		who, err := peer.Decode(parts[3])
		if err != nil {
			return nil, fmt.Errorf("implant: stored row %s: %w", r.Key, err)
		}
		k := strings.Join(parts[1:4], "/")
		cur := by[k]
		if cur == nil {
			order = append(order, k)
		}
		if cur == nil || before(ledger.HLC{Wall: cur.row.Wall, Counter: cur.row.Counter}, cur.a.Entry, ledger.HLC{Wall: mr.Wall, Counter: mr.Counter}, r.Entry) {
			by[k] = &latest{mr, Authorization{Peer: who, Issuer: parts[1], Prefix: parts[2], Entry: r.Entry}}
		}
	}
	var out []Authorization
	for _, k := range order {
		if l := by[k]; !l.row.Revoke {
			out = append(out, l.a)
		}
	}
	return out, nil
}
