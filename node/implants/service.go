package implants

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/implant"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// Ledger is what the service needs from the ledger (*ledger.Ledger):
// appending entries and reading membership and the implant types' state.
type Ledger interface {
	Append(ctx context.Context, typ string, payload any) (*ledger.Entry, error)
	IsMember(p peer.ID) bool
	Members() []ledger.Member
	Ext(typ, prefix string) ([]ledger.ExtRow, error)
}

// Config holds the service's dependencies.
type Config struct {
	Ledger Ledger
	// Self is this node's peer ID.
	Self peer.ID
	// DS holds the encrypted local store (under /medmesh/implants/local).
	DS datastore.Batching
	// Dir is the repo directory, where KeyFile lives.
	Dir string
	// Now defaults to time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Service is implant traceability on one node.
type Service struct {
	led   Ledger
	self  peer.ID
	local *local
	pkey  []byte // the patient pseudonym key
	now   func() time.Time
	log   *slog.Logger
	// mu makes this node's custody entries one at a time, so it always
	// appends on its own latest state and never forks a device's chain.
	mu sync.Mutex
}

// New builds the service; it creates the repo's implant key on first use.
func New(c Config) (*Service, error) {
	if c.Ledger == nil || c.DS == nil || c.Dir == "" || c.Self == "" {
		return nil, errors.New("implants: Ledger, Self, DS and Dir are required")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	k, err := loadKey(c.Dir)
	if err != nil {
		return nil, err
	}
	l, err := newLocal(c.DS, k)
	if err != nil {
		return nil, err
	}
	return &Service{led: c.Ledger, self: c.Self, local: l, pkey: derive(k, "medmesh implant patient pseudonym key v1"), now: c.Now, log: c.Logger}, nil
}

// past is the ledger's current state for the rules; a failure to read it
// is the node's fault, not the request's.
type past struct{ implant.Past }

func (p past) Rows(typ, prefix string) ([]implant.Row, error) {
	rows, err := p.Past.Rows(typ, prefix)
	return rows, fault.Wrap(fault.Internal, "", err)
}

func (s *Service) past() implant.Past { return past{implant.FromState(s.led)} }

// classify gives a rule's refusal its kind: not the custodian or no
// authority is Forbidden, an unknown device NotFound, a state that does not
// allow it (implanted twice, expired, recalled, already registered)
// Conflict, anything else about the request Invalid. Errors already
// classified (storage) keep their kind.
func classify(err error) error {
	var fe *fault.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe):
		return err
	case errors.Is(err, implant.ErrNotCustodian):
		return fault.Wrap(fault.Forbidden, "only the device's current custodian can; see `medmesh implant history DEVICE`", err)
	case errors.Is(err, ledger.ErrUnauthorized):
		return fault.Wrap(fault.Forbidden, "", err)
	case errors.Is(err, implant.ErrUnknownDevice):
		return fault.Wrap(fault.NotFound, "list devices with `medmesh implant ls`", err)
	case errors.Is(err, implant.ErrState), errors.Is(err, implant.ErrDuplicate):
		return fault.Wrap(fault.Conflict, "", err)
	}
	return fault.Wrap(fault.Invalid, "", err)
}

// appendEntry appends a checked entry; a rejection (another entry got in
// first) is classified like the check's refusal.
func (s *Service) appendEntry(ctx context.Context, typ string, pl any) (*ledger.Entry, error) {
	e, err := s.led.Append(ctx, typ, pl)
	var re *ledger.RejectError
	if errors.As(err, &re) {
		return nil, classify(err)
	}
	if err != nil {
		return nil, fmt.Errorf("implants: append %s: %w", typ, err)
	}
	return e, nil
}

// ParseUDI parses a UDI, refusing a malformed one with a clear error.
func (s *Service) ParseUDI(text string) (implant.UDI, error) {
	u, err := implant.Parse(text, s.now())
	if err != nil {
		hint := "a GS1 UDI reads like (01)09506000134352(17)301231(10)LOT42(21)SN0001; a HIBCC one starts with +"
		if errors.Is(err, implant.ErrCheckDigit) {
			hint = "the check digit is the last digit of the GTIN (or HIBCC's last character): re-scan or re-type the label"
		}
		return implant.UDI{}, fault.Wrap(fault.Invalid, hint, err)
	}
	return u, nil
}

// Register registers a device by its UDI; this node becomes its registrant
// and custodian.
func (s *Service) Register(ctx context.Context, req api.ImplantRegisterRequest) (*api.ImplantDevice, error) {
	u, err := s.ParseUDI(req.UDI)
	if err != nil {
		return nil, err
	}
	pl := implant.RegisterPayloadOf(u)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := implant.CheckRegister(s.past(), s.self, pl); err != nil {
		return nil, classify(err)
	}
	e, err := s.appendEntry(ctx, implant.TypeRegister, pl)
	if err != nil {
		return nil, err
	}
	return s.Device(ctx, e.CID(), false)
}

func (s *Service) load(id cid.Cid) (*implant.Device, error) {
	d, ok, err := implant.LoadDevice(s.past(), id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fault.NotFoundf("list devices with `medmesh implant ls`; a device ID is the CID its register printed", "no device %s on the ledger", id)
	}
	return d, nil
}

// Transfer hands a device to another member.
func (s *Service) Transfer(ctx context.Context, id cid.Cid, req api.ImplantTransferRequest) (*api.ImplantDevice, error) {
	to, err := peer.Decode(req.Receiver)
	if err != nil {
		return nil, fault.Invalidf("peer IDs look like 12D3KooW…; `medmesh network members` lists them", "%q is not a peer ID", req.Receiver)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.load(id)
	if err != nil {
		return nil, err
	}
	pl := &implant.TransferPayload{Device: id.Bytes(), Prev: d.Tip.Bytes(), To: []byte(to)}
	if _, err := implant.CheckTransfer(s.past(), s.self, pl); err != nil {
		return nil, classify(err)
	}
	if _, err := s.appendEntry(ctx, implant.TypeTransfer, pl); err != nil {
		return nil, err
	}
	return s.Device(ctx, id, false)
}

// Limits of what stays local.
const (
	maxPatient   = 64
	maxProcedure = 4096
)

func checkText(what, v string, max int) error {
	if v == "" || len(v) > max || !utf8.ValidString(v) {
		return fault.Invalidf("", "%s must be 1 to %d bytes of UTF-8", what, max)
	}
	for _, c := range v {
		if unicode.IsControl(c) && c != '\n' && c != '\t' {
			return fault.Invalidf("", "%s has the control character %U", what, c)
		}
	}
	return nil
}

// Use implants a device into a local patient. The local record (patient,
// procedure) is sealed into the local store before the ledger entry is
// appended, and removed again if the append fails, so the ledger never
// names an implantation this node cannot resolve.
func (s *Service) Use(ctx context.Context, id cid.Cid, req api.ImplantUseRequest) (*api.ImplantDevice, error) {
	if err := checkText("the patient ID", req.Patient, maxPatient); err != nil {
		return nil, err
	}
	if strings.ContainsAny(req.Patient, "\n\t") {
		return nil, fault.Invalidf("", "the patient ID is one line")
	}
	if err := checkText("the procedure", req.Procedure, maxProcedure); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.load(id)
	if err != nil {
		return nil, err
	}
	now := s.now()
	pl := &implant.UsePayload{Device: id.Bytes(), Prev: d.Tip.Bytes(), Patient: implant.Pseudonym(s.pkey, id, req.Patient)}
	if _, err := implant.CheckUse(s.past(), s.self, now, pl); err != nil {
		return nil, classify(err)
	}
	if err := s.local.put(ctx, id, &localRow{Patient: req.Patient, Procedure: req.Procedure, Time: now.UnixMilli()}); err != nil {
		return nil, err
	}
	if _, err := s.appendEntry(ctx, implant.TypeUse, pl); err != nil {
		if derr := s.local.delete(context.WithoutCancel(ctx), id); derr != nil {
			s.log.Error("implants: remove the local record of a failed use", "device", id, "err", derr)
		}
		return nil, err
	}
	return s.Device(ctx, id, false)
}

// Explant records the removal of an implanted device.
func (s *Service) Explant(ctx context.Context, id cid.Cid) (*api.ImplantDevice, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.load(id)
	if err != nil {
		return nil, err
	}
	pl := &implant.ExplantPayload{Device: id.Bytes(), Prev: d.Tip.Bytes()}
	if _, err := implant.CheckExplant(s.past(), s.self, pl); err != nil {
		return nil, classify(err)
	}
	if _, err := s.appendEntry(ctx, implant.TypeExplant, pl); err != nil {
		return nil, err
	}
	return s.Device(ctx, id, false)
}

// Device returns a device as this node sees it (with its custody history
// if history is set), the patient resolved if this node implanted it.
func (s *Service) Device(ctx context.Context, id cid.Cid, history bool) (*api.ImplantDevice, error) {
	d, err := s.load(id)
	if err != nil {
		return nil, err
	}
	v, err := s.view(ctx, d, history)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// Devices lists every device on the ledger.
func (s *Service) Devices(ctx context.Context) ([]api.ImplantDevice, error) {
	ds, err := implant.Devices(s.past())
	if err != nil {
		return nil, err
	}
	return s.views(ctx, ds)
}

func (s *Service) views(ctx context.Context, ds []*implant.Device) ([]api.ImplantDevice, error) {
	sort.Slice(ds, func(i, j int) bool { return ds[i].Registered.Less(ds[j].Registered) })
	out := make([]api.ImplantDevice, 0, len(ds))
	for _, d := range ds {
		v, err := s.view(ctx, d, false)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Local is an implantation this node made, resolved to its local patient.
type Local struct {
	Device api.ImplantDevice
	// UseEntry is the ledger entry of the implantation; ExplantEntry that
	// of the removal ("" while implanted).
	UseEntry     string
	ExplantEntry string
	Patient      string
	Procedure    string
	Time         time.Time // when the implantation was recorded
}

// Implantations lists the implantations this node made and can resolve
// (optionally of one local patient), oldest first.
func (s *Service) Implantations(ctx context.Context, patient string) ([]Local, error) {
	var out []Local
	err := s.local.each(ctx, func(dev cid.Cid, r *localRow) error {
		if patient != "" && r.Patient != patient {
			return nil
		}
		d, ok, err := implant.LoadDevice(s.past(), dev)
		if err != nil || !ok || !s.resolves(d, r) {
			return err // a use whose append failed, or not yet synced
		}
		v, err := s.view(ctx, d, false)
		if err != nil {
			return err
		}
		l := Local{Device: v, UseEntry: d.Use.Entry.String(), Patient: r.Patient, Procedure: r.Procedure, Time: time.UnixMilli(r.Time).UTC()}
		if d.Explant != nil {
			l.ExplantEntry = d.Explant.Entry.String()
		}
		out = append(out, l)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, err
}

// resolves reports whether local row r is the implantation the ledger
// records for d: this node's use, with the pseudonym r's patient gives.
func (s *Service) resolves(d *implant.Device, r *localRow) bool {
	return d.Use != nil && d.Use.Author == s.self && hmac.Equal(d.Use.Patient, implant.Pseudonym(s.pkey, d.ID, r.Patient))
}

func dateOrNull(d implant.Date) *string {
	if d.IsZero() {
		return nil
	}
	s := d.String()
	return &s
}

func (s *Service) view(ctx context.Context, d *implant.Device, history bool) (api.ImplantDevice, error) {
	v := api.ImplantDevice{
		Device: d.ID.String(), UDI: d.UDI.HRF(), Issuer: d.UDI.Issuer, DI: d.UDI.DI, Lot: d.UDI.Lot, Serial: d.UDI.Serial,
		Expiry: dateOrNull(d.UDI.Expiry), Produced: dateOrNull(d.UDI.Produced),
		Registrant: d.Registrant.String(), Custodian: d.Custodian.String(), Status: string(d.Status),
		Registered: time.UnixMilli(int64(d.Registered.Wall)).UTC(), Recalled: len(d.Recalls) > 0, Recalls: []string{},
		Mine: d.Registrant == s.self || d.Custodian == s.self || d.Use != nil && d.Use.Author == s.self,
	}
	for _, r := range d.Recalls {
		v.Recalls = append(v.Recalls, r.Entry.String())
	}
	if d.Use != nil {
		v.Implanted = api.Nullable(d.Use.Time())
		v.Implanter = d.Use.Author.String()
		if d.Use.Author == s.self {
			r, ok, err := s.local.get(ctx, d.ID)
			if err != nil {
				return v, err
			}
			if ok && s.resolves(d, r) {
				v.Patient, v.Procedure = r.Patient, r.Procedure
			} else {
				s.log.Warn("implants: this node implanted a device it cannot resolve to a local patient (local record lost?)", "device", d.ID)
			}
		}
	}
	if d.Explant != nil {
		v.Explanted = api.Nullable(d.Explant.Time())
	}
	if history {
		v.History = append(v.History, api.ImplantEvent{Entry: d.ID.String(), Type: "register", Author: d.Registrant.String(), Time: v.Registered})
		for _, ev := range d.History {
			e := api.ImplantEvent{Entry: ev.Entry.String(), Type: strings.TrimPrefix(ev.Type, "implant."), Author: ev.Author.String(), Time: ev.Time(), Superseded: ev.Superseded}
			if ev.Type == implant.TypeTransfer {
				e.Receiver = ev.To.String()
			}
			v.History = append(v.History, e)
		}
	}
	return v, nil
}

// Recall publishes a recall of the devices of a DI (narrowed by lot and
// serial).
func (s *Service) Recall(ctx context.Context, req api.ImplantRecallRequest) (*api.ImplantRecall, error) {
	if req.As == "" {
		req.As = implant.AsRegistrant
	}
	issuer := implant.IssuerHIBCC
	if len(req.DI) == 14 && strings.Trim(req.DI, "0123456789") == "" {
		issuer = implant.IssuerGS1
	}
	pl := &implant.RecallPayload{Issuer: issuer, DI: req.DI, Lot: req.Lot, Serial: req.Serial, Reason: req.Reason, As: req.As}
	if err := pl.Check(); err != nil {
		hint := ""
		if errors.Is(err, implant.ErrCheckDigit) {
			hint = "the GTIN's last digit is its check digit: copy it from the label or the recall notice"
		}
		if pl.As != implant.AsRegistrant && pl.As != implant.AsManufacturer {
			hint = "--as registrant or --as manufacturer"
		}
		return nil, fault.Wrap(fault.Invalid, hint, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := implant.CheckRecall(s.past(), s.self, pl); err != nil {
		err = classify(err)
		if fault.Is(err, fault.Forbidden) {
			err = fault.Wrap(fault.Forbidden, "recall as the registrant of the devices, or ask an admin for `medmesh implant authorize` as their manufacturer", err)
		}
		return nil, err
	}
	e, err := s.appendEntry(ctx, implant.TypeRecall, pl)
	if err != nil {
		return nil, err
	}
	rs, err := s.Recalls(ctx, false)
	if err != nil {
		return nil, err
	}
	for i := range rs {
		if rs[i].Recall == e.CID().String() {
			return &rs[i], nil
		}
	}
	return nil, fmt.Errorf("implants: recall %s appended but not found", e.CID())
}

// Recalls lists every recall, newest first, each with the devices it
// covers (only this node's, Mine, if mine is set); the patient of a device
// is resolved only on the node that implanted it.
func (s *Service) Recalls(ctx context.Context, mine bool) ([]api.ImplantRecall, error) {
	p := s.past()
	rs, err := implant.Recalls(p)
	if err != nil {
		return nil, err
	}
	out := make([]api.ImplantRecall, 0, len(rs))
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i]
		ds, err := implant.DevicesByDI(p, r.DI)
		if err != nil {
			return nil, err
		}
		var covered []*implant.Device
		for _, d := range ds {
			if r.Covers(d) {
				covered = append(covered, d)
			}
		}
		vs, err := s.views(ctx, covered)
		if err != nil {
			return nil, err
		}
		if mine {
			kept := vs[:0]
			for _, v := range vs {
				if v.Mine {
					kept = append(kept, v)
				}
			}
			vs = kept
		}
		out = append(out, api.ImplantRecall{Recall: r.Entry.String(), Author: r.Author.String(), As: r.As, Issuer: r.Issuer, DI: r.DI,
			Lot: r.Lot, Serial: r.Serial, Reason: r.Reason, Time: r.Time(), Devices: vs, Count: len(vs)})
	}
	return out, nil
}

// Authorize (an admin's) lets a member recall every device of a prefix as
// its manufacturer, or withdraws that.
func (s *Service) Authorize(ctx context.Context, req api.ImplantAuthorizeRequest) (*api.ImplantAuthorization, error) {
	who, err := peer.Decode(req.Peer)
	if err != nil {
		return nil, fault.Invalidf("peer IDs look like 12D3KooW…; `medmesh network members` lists them", "%q is not a peer ID", req.Peer)
	}
	issuer := implant.IssuerHIBCC
	if strings.Trim(req.Prefix, "0123456789") == "" {
		issuer = implant.IssuerGS1
	}
	pl := &implant.ManufacturerPayload{Peer: []byte(who), Issuer: issuer, Prefix: req.Prefix, Revoke: req.Revoke}
	if err := pl.Check(); err != nil {
		return nil, fault.Wrap(fault.Invalid, "a GS1 company prefix (6 to 12 digits, as in the GTIN-13) or a HIBCC labeler code (e.g. A123)", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := implant.CheckManufacturer(s.past(), s.self, pl); err != nil {
		err = classify(err)
		if fault.Is(err, fault.Forbidden) {
			err = fault.Wrap(fault.Forbidden, "run it on the network admin's node", err)
		}
		return nil, err
	}
	e, err := s.appendEntry(ctx, implant.TypeManufacturer, pl)
	if err != nil {
		return nil, err
	}
	return &api.ImplantAuthorization{Peer: who.String(), Issuer: issuer, Prefix: req.Prefix, Entry: e.CID().String()}, nil
}

// Manufacturers lists the current manufacturer authorizations.
func (s *Service) Manufacturers(ctx context.Context) ([]api.ImplantAuthorization, error) {
	as, err := implant.Manufacturers(s.past())
	if err != nil {
		return nil, err
	}
	out := make([]api.ImplantAuthorization, 0, len(as))
	for _, a := range as {
		out = append(out, api.ImplantAuthorization{Peer: a.Peer.String(), Issuer: a.Issuer, Prefix: a.Prefix, Entry: a.Entry.String()})
	}
	return out, nil
}
