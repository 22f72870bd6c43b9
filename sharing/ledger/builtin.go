package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/keywrap"
)

// Built-in entry types.
const (
	TypeGenesis        = "genesis"
	TypeMemberAdd      = "member.add"
	TypeMemberRemove   = "member.remove"
	TypeKeyAnnounce    = "key.announce"
	TypeRecordAnnounce = "record.announce"
	TypeGrant          = "grant"
	TypeRevoke         = "revoke"
	TypeAccess         = "access"
	TypeReceipt        = "replica.receipt"
	TypeAssign         = "replica.assign"
	TypeServed         = "access.served"
)

// Roles and purposes.
const (
	RoleAdmin     = "admin"
	RoleEmergency = "emergency"

	PurposeTreatment  = "treatment"
	PurposeResearch   = "research"
	PurposeOperations = "operations"
	PurposeEmergency  = "emergency"

	// MaxEmergencyGrant bounds the lifetime of a grant made under the
	// emergency role by someone other than the owner.
	MaxEmergencyGrant = 24 * time.Hour

	// MaxGrantLifetime bounds any grant with an expiry (a grant without
	// one is written with no expiry at all).
	MaxGrantLifetime = 10 * 365 * 24 * time.Hour

	// ClockSkew is the margin by which a grant is honoured past its
	// expiry, to tolerate clocks that disagree between nodes. The ledger's
	// rules (an access claim needs a live grant) and every node's access
	// policy use the same margin.
	ClockSkew = 2 * time.Minute
)

// LiveAt reports whether the grant (not revoked) is live at t: it has no
// expiry, or t is before its expiry plus ClockSkew.
func (g Grant) LiveAt(t time.Time) bool {
	return g.Expires.IsZero() || t.Before(g.Expires.Add(ClockSkew))
}

var purposes = map[string]bool{PurposeTreatment: true, PurposeResearch: true, PurposeOperations: true, PurposeEmergency: true}

// ValidPurpose reports whether p is one of Purposes.
func ValidPurpose(p string) bool { return purposes[p] }

// ---- payloads as callers pass them to Append ----

// wirer is implemented by the built-in payload types: they convert to their
// canonical wire form.
type wirer interface{ wirePayload() (any, error) }

// GenesisPayload founds a network. Use NewGenesis.
type GenesisPayload struct {
	Name    string
	Admin   peer.ID
	Created time.Time
}

// MemberAddPayload admits (or re-admits with new roles) a peer. Admin only.
type MemberAddPayload struct {
	Peer  peer.ID
	Org   string
	Roles []string
}

// MemberRemovePayload removes a peer. Admin only.
type MemberRemovePayload struct{ Peer peer.ID }

// KeyAnnouncePayload announces (or rotates) the author's HPKE public key.
type KeyAnnouncePayload struct{ Public []byte }

// RecordAnnouncePayload announces a record; the author becomes its owner.
type RecordAnnouncePayload struct {
	Record    cid.Cid
	Blocklist cid.Cid
	Size      uint64
	Replicas  uint32
	Class     string
	// Prev is the previous version's record ID (cid.Undef for version 1);
	// it must be owned by the same author.
	Prev    cid.Cid
	Version uint64
	// OwnerEnvelope is the data key wrapped to the owner's current key
	// (keywrap.Envelope.MarshalBinary).
	OwnerEnvelope []byte
	// Escrow holds the data key wrapped to emergency authorities, when the
	// owner opted the record into break-glass access (add --emergency).
	Escrow []EscrowEnvelope
}

// EscrowEnvelope is a record's data key wrapped to one emergency authority's
// current key, so that authority can issue a short emergency grant while the
// owner is offline.
type EscrowEnvelope struct {
	Authority peer.ID
	Envelope  []byte
}

// MaxEscrow bounds the emergency authorities one record names.
const MaxEscrow = 8

// GrantPayload gives grantee the record's data key.
type GrantPayload struct {
	Record   cid.Cid
	Grantee  peer.ID
	Envelope []byte    // keywrap.Envelope.MarshalBinary, sealed to the grantee's current key
	Expires  time.Time // zero: no expiry (not allowed for emergency grants)
	Purpose  string
}

// RevokePayload cancels the grants of (record, grantee). Owner only.
type RevokePayload struct {
	Record  cid.Cid
	Grantee peer.ID
}

// AccessPayload is a reader's claim that it read a record: the purpose it
// states and the grant it read under. Only a grantee with a live grant at
// the claim's causal position may make one. The reads themselves are
// attested by the nodes that served them (ServedPayload), so the audit does
// not depend on the reader's honesty; a claim adds the stated purpose.
type AccessPayload struct {
	Record  cid.Cid
	Version uint64
	Purpose string
	Time    time.Time
	// Grant is the grant entry the read was made under.
	Grant cid.Cid
}

// ServedPayload is a serving node's signed statement that it sent a
// record's blocks to a reader: Reads fetches of the record's manifest (one
// per read) and Blocks other blocks, between First and Last, under Grant.
// Only the record's owner or a holder may make one, and only about a reader
// that had the grant. Servers batch them per (reader, record) and interval.
type ServedPayload struct {
	Record cid.Cid
	Reader peer.ID
	Grant  cid.Cid
	Reads  uint64
	Blocks uint64
	First  time.Time
	Last   time.Time
}

// AssignPayload is an owner naming members as holders of its record beyond
// the placement window (see replication.Authority), when too many of the
// window's members are gone for the record to reach its replicas.
type AssignPayload struct {
	Record  cid.Cid
	Holders []peer.ID
}

// ReceiptPayload records what the author (a replica holder) did.
type ReceiptPayload struct {
	Record cid.Cid
	Status string // "held", "declined" or "released"
	Reason string
}

// ---- wire forms ----

type genesisWire struct {
	Name    string `cbor:"1,keyasint"`
	Admin   []byte `cbor:"2,keyasint"`
	Created int64  `cbor:"3,keyasint"`
}
type memberAddWire struct {
	Peer  []byte   `cbor:"1,keyasint"`
	Org   string   `cbor:"2,keyasint"`
	Roles []string `cbor:"3,keyasint"`
}
type memberRemoveWire struct {
	Peer []byte `cbor:"1,keyasint"`
}
type keyAnnounceWire struct {
	Pub []byte `cbor:"1,keyasint"`
}
type recordWire struct {
	Record        []byte `cbor:"1,keyasint"`
	Blocklist     []byte `cbor:"2,keyasint"`
	Size          uint64 `cbor:"3,keyasint"`
	Replicas      uint32 `cbor:"4,keyasint"`
	Class         string `cbor:"5,keyasint"`
	Prev          []byte `cbor:"6,keyasint,omitempty"`
	Version       uint64 `cbor:"7,keyasint"`
	OwnerEnvelope []byte `cbor:"8,keyasint"`
	// Set only in stored state, never in payloads.
	Owner []byte `cbor:"9,keyasint,omitempty"`
	Entry []byte `cbor:"10,keyasint,omitempty"`
	Wall  uint64 `cbor:"11,keyasint,omitempty"`
	// Escrow envelopes (break-glass), in payloads and state.
	Escrow []escrowWire `cbor:"12,keyasint,omitempty"`
}
type escrowWire struct {
	Authority []byte `cbor:"1,keyasint"`
	Envelope  []byte `cbor:"2,keyasint"`
}
type grantWire struct {
	Record   []byte `cbor:"1,keyasint"`
	Grantee  []byte `cbor:"2,keyasint"`
	Envelope []byte `cbor:"3,keyasint"`
	Expires  int64  `cbor:"4,keyasint"`
	Purpose  string `cbor:"5,keyasint"`
}
type revokeWire struct {
	Record  []byte `cbor:"1,keyasint"`
	Grantee []byte `cbor:"2,keyasint"`
}
type accessWire struct {
	Record  []byte `cbor:"1,keyasint"`
	Version uint64 `cbor:"2,keyasint"`
	Purpose string `cbor:"3,keyasint"`
	Time    int64  `cbor:"4,keyasint"`
	Grant   []byte `cbor:"5,keyasint"`
}
type servedWire struct {
	Record []byte `cbor:"1,keyasint"`
	Reader []byte `cbor:"2,keyasint"`
	Grant  []byte `cbor:"3,keyasint"`
	Reads  uint64 `cbor:"4,keyasint"`
	Blocks uint64 `cbor:"5,keyasint"`
	First  int64  `cbor:"6,keyasint"`
	Last   int64  `cbor:"7,keyasint"`
}
type assignWire struct {
	Record  []byte   `cbor:"1,keyasint"`
	Holders [][]byte `cbor:"2,keyasint"`
}
type receiptWire struct {
	Record []byte `cbor:"1,keyasint"`
	Status string `cbor:"2,keyasint"`
	Reason string `cbor:"3,keyasint,omitempty"`
}

func cidBytes(c cid.Cid) []byte {
	if !c.Defined() {
		return nil
	}
	return c.Bytes()
}

func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func (p GenesisPayload) wirePayload() (any, error) {
	return &genesisWire{Name: p.Name, Admin: []byte(p.Admin), Created: p.Created.UnixMilli()}, nil
}
func (p MemberAddPayload) wirePayload() (any, error) {
	return &memberAddWire{Peer: []byte(p.Peer), Org: p.Org, Roles: p.Roles}, nil
}
func (p MemberRemovePayload) wirePayload() (any, error) {
	return &memberRemoveWire{Peer: []byte(p.Peer)}, nil
}
func (p KeyAnnouncePayload) wirePayload() (any, error) { return &keyAnnounceWire{Pub: p.Public}, nil }
func (p RecordAnnouncePayload) wirePayload() (any, error) {
	return &recordWire{Record: cidBytes(p.Record), Blocklist: cidBytes(p.Blocklist), Size: p.Size, Replicas: p.Replicas,
		Class: p.Class, Prev: cidBytes(p.Prev), Version: p.Version, OwnerEnvelope: p.OwnerEnvelope, Escrow: escrowToWire(p.Escrow)}, nil
}

func escrowToWire(es []EscrowEnvelope) []escrowWire {
	var out []escrowWire
	for _, e := range es {
		out = append(out, escrowWire{Authority: []byte(e.Authority), Envelope: e.Envelope})
	}
	return out
}
func (p GrantPayload) wirePayload() (any, error) {
	return &grantWire{Record: cidBytes(p.Record), Grantee: []byte(p.Grantee), Envelope: p.Envelope, Expires: unixMs(p.Expires), Purpose: p.Purpose}, nil
}
func (p RevokePayload) wirePayload() (any, error) {
	return &revokeWire{Record: cidBytes(p.Record), Grantee: []byte(p.Grantee)}, nil
}
func (p AccessPayload) wirePayload() (any, error) {
	return &accessWire{Record: cidBytes(p.Record), Version: p.Version, Purpose: p.Purpose, Time: unixMs(p.Time), Grant: cidBytes(p.Grant)}, nil
}
func (p ServedPayload) wirePayload() (any, error) {
	return &servedWire{Record: cidBytes(p.Record), Reader: []byte(p.Reader), Grant: cidBytes(p.Grant), Reads: p.Reads, Blocks: p.Blocks,
		First: unixMs(p.First), Last: unixMs(p.Last)}, nil
}
func (p AssignPayload) wirePayload() (any, error) {
	w := &assignWire{Record: cidBytes(p.Record)}
	for _, h := range p.Holders {
		w.Holders = append(w.Holders, []byte(h))
	}
	return w, nil
}
func (p ReceiptPayload) wirePayload() (any, error) {
	return &receiptWire{Record: cidBytes(p.Record), Status: p.Status, Reason: p.Reason}, nil
}

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
	Entry    cid.Cid
	Time     time.Time
}

// AccessEvent is a reader's claim of one read (an access entry).
type AccessEvent struct {
	Record  cid.Cid
	Reader  peer.ID
	Version uint64
	Purpose string
	Time    time.Time
	Grant   cid.Cid
	Entry   cid.Cid
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
	out.Time = msTime(int64(g.Wall))
	return out, nil
}

// ---- validation helpers ----

func unauthorized(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUnauthorized, fmt.Sprintf(format, a...))
}

func parsePeer(b []byte) (peer.ID, error) {
	p, err := peer.IDFromBytes(b)
	if err != nil {
		return "", fmt.Errorf("bad peer id: %w", err)
	}
	return p, nil
}

func parseCid(b []byte, what string) (cid.Cid, error) {
	c, err := cid.Cast(b)
	if err != nil {
		return cid.Undef, fmt.Errorf("bad %s: %w", what, err)
	}
	return c, nil
}

func validRoles(roles []string) error {
	if len(roles) > 8 {
		return errors.New("too many roles")
	}
	for i, r := range roles {
		if r == "" || len(r) > 32 || !validTypeName(r) {
			return fmt.Errorf("bad role %q", r)
		}
		if i > 0 && roles[i-1] >= r {
			return errors.New("roles must be sorted and unique")
		}
	}
	return nil
}

// ownerOf returns the owner of a record as the view sees it.
func recordInView(v View, b []byte) (cid.Cid, RecordInfo, error) {
	id, err := parseCid(b, "record id")
	if err != nil {
		return id, RecordInfo{}, err
	}
	info, ok := viewRecord(v, id)
	if !ok {
		return id, info, fmt.Errorf("record %s not announced in the entry's causal past", id)
	}
	return id, info, nil
}

// viewRecord is v.Record for the built-in validators, which only read the
// result: on the fast path it shares the cached value instead of copying
// its envelopes.
func viewRecord(v View, id cid.Cid) (RecordInfo, bool) {
	if cv, ok := v.(*causalView); ok && cv.cur {
		return cv.curRecordShared(id)
	}
	return v.Record(id)
}

// viewKeyID returns the KeyID of p's current key in v.
func viewKeyID(v View, p peer.ID) (keywrap.KeyID, bool) {
	if cv, ok := v.(*causalView); ok && cv.cur {
		k := cv.curKey(p)
		if k == nil {
			return keywrap.KeyID{}, false
		}
		return k.id, true
	}
	_, kid, ok := v.KEMKey(p)
	return kid, ok
}

// ---- applier: built-in state changes ----

// applier applies entries to the view's state; it evaluates derived state
// against the current (all applied entries) view.
type applier struct {
	ctx context.Context
	t   *txn
	d   *dag
}

func (a *applier) view() *causalView { return &causalView{ctx: a.ctx, d: a.d, t: a.t} }

func (a *applier) putCBOR(k string, v any) error {
	b, err := encMode.Marshal(v)
	if err != nil {
		return err
	}
	a.t.put(k, b)
	return nil
}

func (a *applier) recomputeMember(p peer.ID) error {
	v := a.view()
	m, ok := v.memberState(p)
	if v.err != nil {
		return v.err
	}
	if !ok {
		a.t.del(pState + "m/" + p.String())
		return nil
	}
	return a.putCBOR(pState+"m/"+p.String(), m)
}

func (a *applier) indexMember(e *Entry, p peer.ID, add bool, org string, roles []string) error {
	m := memberIdx{Add: add, Org: org, Roles: roles, Entry: e.cid.Bytes(), Wall: e.Clock.Wall, Counter: e.Clock.Counter}
	if err := a.putCBOR(pIdx+"m/"+p.String()+"/"+e.cs, &m); err != nil {
		return err
	}
	return a.recomputeMember(p)
}

func init() {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(Register(TypeSpec{
		Name: TypeGenesis,
		New:  func() any { return new(genesisWire) },
		Validate: func(v View, e *Entry, pl any) error {
			g := pl.(*genesisWire)
			admin, err := parsePeer(g.Admin)
			if err != nil {
				return err
			}
			if admin != e.Author {
				return errors.New("genesis admin must be its author")
			}
			if g.Name == "" || len(g.Name) > 128 {
				return errors.New("bad network name")
			}
			return nil
		},
		builtin: func(a *applier, e *Entry, pl any) error {
			g := pl.(*genesisWire)
			if err := a.putCBOR(pState+"n", g); err != nil {
				return err
			}
			return a.indexMember(e, e.Author, true, "", []string{RoleAdmin})
		},
	}))
	must(Register(TypeSpec{
		Name: TypeMemberAdd,
		New:  func() any { return new(memberAddWire) },
		Validate: func(v View, e *Entry, pl any) error {
			m := pl.(*memberAddWire)
			if _, err := parsePeer(m.Peer); err != nil {
				return err
			}
			if m.Org != "" {
				if err := CheckOrg(m.Org); err != nil {
					return err
				}
			}
			if err := validRoles(m.Roles); err != nil {
				return err
			}
			if !v.HasRole(e.Author, RoleAdmin) {
				return unauthorized("member.add by non-admin")
			}
			return nil
		},
		builtin: func(a *applier, e *Entry, pl any) error {
			m := pl.(*memberAddWire)
			p, _ := peer.IDFromBytes(m.Peer)
			return a.indexMember(e, p, true, m.Org, m.Roles)
		},
	}))
	must(Register(TypeSpec{
		Name: TypeMemberRemove,
		New:  func() any { return new(memberRemoveWire) },
		Validate: func(v View, e *Entry, pl any) error {
			if _, err := parsePeer(pl.(*memberRemoveWire).Peer); err != nil {
				return err
			}
			if !v.HasRole(e.Author, RoleAdmin) {
				return unauthorized("member.remove by non-admin")
			}
			return nil
		},
		builtin: func(a *applier, e *Entry, pl any) error {
			p, _ := peer.IDFromBytes(pl.(*memberRemoveWire).Peer)
			return a.indexMember(e, p, false, "", nil)
		},
	}))
	must(Register(TypeSpec{
		Name: TypeKeyAnnounce,
		New:  func() any { return new(keyAnnounceWire) },
		Validate: func(v View, e *Entry, pl any) error {
			return keywrap.ValidatePublicKey(pl.(*keyAnnounceWire).Pub)
		},
		builtin: func(a *applier, e *Entry, pl any) error {
			k := keyIdx{Pub: pl.(*keyAnnounceWire).Pub, Entry: e.cid.Bytes(), Wall: e.Clock.Wall, Counter: e.Clock.Counter}
			if err := a.putCBOR(pIdx+"k/"+e.Author.String()+"/"+e.cs, &k); err != nil {
				return err
			}
			v := a.view()
			cur, ok := v.keyState(e.Author)
			if v.err != nil {
				return v.err
			}
			if ok {
				return a.putCBOR(pState+"k/"+e.Author.String(), cur)
			}
			return nil
		},
	}))
	must(Register(TypeSpec{
		Name: TypeRecordAnnounce,
		New:  func() any { return new(recordWire) },
		Validate: func(v View, e *Entry, pl any) error {
			r := pl.(*recordWire)
			if len(r.Owner) > 0 || len(r.Entry) > 0 || r.Wall != 0 {
				return errors.New("state-only fields set")
			}
			id, err := parseCid(r.Record, "record id")
			if err != nil {
				return err
			}
			if _, err := parseCid(r.Blocklist, "blocklist"); err != nil {
				return err
			}
			if _, ok := viewRecord(v, id); ok {
				return fmt.Errorf("record %s already announced", id)
			}
			if r.Replicas == 0 || r.Replicas > 64 {
				return errors.New("replicas must be 1..64")
			}
			if err := CheckClass(r.Class); err != nil {
				return err
			}
			if len(r.Prev) > 0 {
				_, prev, err := recordInView(v, r.Prev)
				if err != nil {
					return fmt.Errorf("previous version: %w", err)
				}
				if prev.Owner != e.Author {
					return unauthorized("new version of a record owned by %s", prev.Owner)
				}
				if r.Version <= prev.Version {
					return errors.New("version must grow")
				}
			} else if r.Version != 1 {
				return errors.New("first version must be 1")
			}
			var env keywrap.Envelope
			if err := env.UnmarshalBinary(r.OwnerEnvelope); err != nil {
				return fmt.Errorf("owner envelope: %w", err)
			}
			kid, ok := viewKeyID(v, e.Author)
			if !ok || kid != env.KeyID {
				return unauthorized("owner envelope is not sealed to the owner's current key")
			}
			if len(r.Escrow) > MaxEscrow {
				return fmt.Errorf("at most %d escrow envelopes", MaxEscrow)
			}
			seen := map[peer.ID]bool{}
			for _, es := range r.Escrow {
				a, err := parsePeer(es.Authority)
				if err != nil {
					return fmt.Errorf("escrow authority: %w", err)
				}
				if seen[a] {
					return fmt.Errorf("escrow authority %s named twice", a)
				}
				seen[a] = true
				if !v.HasRole(a, RoleEmergency) {
					return unauthorized("escrow for %s, who is not an emergency authority", a)
				}
				var env keywrap.Envelope
				if err := env.UnmarshalBinary(es.Envelope); err != nil {
					return fmt.Errorf("escrow envelope: %w", err)
				}
				if kid, ok := viewKeyID(v, a); !ok || kid != env.KeyID {
					return unauthorized("escrow envelope is not sealed to %s's current key", a)
				}
			}
			return nil
		},
		builtin: func(a *applier, e *Entry, pl any) error {
			r := *pl.(*recordWire)
			r.Owner, r.Entry, r.Wall = []byte(e.Author), e.cid.Bytes(), e.Clock.Wall
			id, _ := cid.Cast(r.Record)
			ri := recordIdx{Info: r, Wall: e.Clock.Wall, Counter: e.Clock.Counter}
			if err := a.putCBOR(pIdx+"r/"+id.String()+"/"+e.cs, &ri); err != nil {
				return err
			}
			if len(r.Prev) > 0 {
				prev, _ := cid.Cast(r.Prev)
				a.t.put(pIdx+"v/"+prev.String()+"/"+id.String(), nil)
			}
			v := a.view()
			best, ok := v.recordState(id)
			if v.err != nil {
				return v.err
			}
			if ok {
				return a.putCBOR(pState+"r/"+id.String(), &best.Info)
			}
			return nil
		},
	}))
	must(Register(TypeSpec{
		Name: TypeGrant,
		New:  func() any { return new(grantWire) },
		Validate: func(v View, e *Entry, pl any) error {
			g := pl.(*grantWire)
			_, rec, err := recordInView(v, g.Record)
			if err != nil {
				return err
			}
			grantee, err := parsePeer(g.Grantee)
			if err != nil {
				return err
			}
			if !purposes[g.Purpose] {
				return fmt.Errorf("unknown purpose %q", g.Purpose)
			}
			if g.Expires < 0 || (g.Expires != 0 && g.Expires <= int64(e.Clock.Wall)) {
				return errors.New("grant expires before it is made")
			}
			if g.Expires != 0 && g.Expires-int64(e.Clock.Wall) > MaxGrantLifetime.Milliseconds() {
				return fmt.Errorf("grant expires more than %s after it is made", MaxGrantLifetime)
			}
			if rec.Owner != e.Author {
				if g.Purpose != PurposeEmergency || !v.HasRole(e.Author, RoleEmergency) {
					return unauthorized("grant by non-owner")
				}
				if g.Expires == 0 || g.Expires > int64(e.Clock.Wall)+MaxEmergencyGrant.Milliseconds() {
					return fmt.Errorf("emergency grant must expire within %s", MaxEmergencyGrant)
				}
				// The owner must have opted the record into break-glass
				// access by escrowing its key to this authority.
				if _, ok := rec.EscrowFor(e.Author); !ok {
					return unauthorized("emergency grant for a record its owner did not escrow to %s", e.Author)
				}
			}
			if !v.IsMember(grantee) {
				return unauthorized("grantee is not a member")
			}
			var env keywrap.Envelope
			if err := env.UnmarshalBinary(g.Envelope); err != nil {
				return fmt.Errorf("envelope: %w", err)
			}
			kid, ok := viewKeyID(v, grantee)
			if !ok || kid != env.KeyID {
				return unauthorized("envelope is not sealed to the grantee's current key")
			}
			return nil
		},
		builtin: func(a *applier, e *Entry, pl any) error {
			g := pl.(*grantWire)
			rec, _ := cid.Cast(g.Record)
			grantee, _ := peer.IDFromBytes(g.Grantee)
			pair := rec.String() + "/" + grantee.String() + "/"
			st := grantStored{Grant: *g, Grantor: []byte(e.Author), Entry: e.cid.Bytes(), Wall: e.Clock.Wall, Counter: e.Clock.Counter}
			if err := a.putCBOR(pIdx+"g/"+pair+e.cs, &st); err != nil {
				return err
			}
			revokes, err := a.t.list(a.ctx, pIdx+"rv/"+pair)
			if err != nil {
				return err
			}
			for _, r := range revokes {
				rc, err := cid.Decode(lastSeg(r.Key))
				if err != nil {
					return err
				}
				anc, err := a.d.isAncestor(a.ctx, rc, e.cid)
				if err != nil {
					return err
				}
				if !anc {
					return nil // cancelled by a revoke it did not see
				}
			}
			return a.putCBOR(pState+"g/"+pair+e.cs, &st)
		},
	}))
	must(Register(TypeSpec{
		Name: TypeRevoke,
		New:  func() any { return new(revokeWire) },
		Validate: func(v View, e *Entry, pl any) error {
			r := pl.(*revokeWire)
			_, rec, err := recordInView(v, r.Record)
			if err != nil {
				return err
			}
			if _, err := parsePeer(r.Grantee); err != nil {
				return err
			}
			if rec.Owner != e.Author {
				return unauthorized("revoke by non-owner")
			}
			return nil
		},
		builtin: func(a *applier, e *Entry, pl any) error {
			r := pl.(*revokeWire)
			rec, _ := cid.Cast(r.Record)
			grantee, _ := peer.IDFromBytes(r.Grantee)
			pair := rec.String() + "/" + grantee.String() + "/"
			a.t.put(pIdx+"rv/"+pair+e.cs, nil)
			grants, err := a.t.list(a.ctx, pIdx+"g/"+pair)
			if err != nil {
				return err
			}
			for _, g := range grants {
				gc, err := cid.Decode(lastSeg(g.Key))
				if err != nil {
					return err
				}
				anc, err := a.d.isAncestor(a.ctx, e.cid, gc)
				if err != nil {
					return err
				}
				if !anc {
					a.t.del(pState + "g/" + pair + gc.String())
				}
			}
			return nil
		},
	}))
	must(Register(TypeSpec{Name: TypeAccess, New: func() any { return new(accessWire) }, Validate: validateAccess, builtin: applyAccess}))
	must(Register(TypeSpec{Name: TypeReceipt, New: func() any { return new(receiptWire) }, Validate: validateReceipt, builtin: applyReceipt}))
	must(Register(TypeSpec{Name: TypeAssign, New: func() any { return new(assignWire) }, Validate: validateAssign, builtin: applyAssign}))
	must(Register(TypeSpec{Name: TypeServed, New: func() any { return new(servedWire) }, Validate: validateServed, builtin: applyServed}))
}

// encodeAccessStored returns encMode's encoding of the accessStored of an
// access entry that passed validation: its payload is the canonical
// encoding of its accessWire, so it is copied rather than encoded again.
func encodeAccessStored(e *Entry) []byte {
	b := make([]byte, 0, 3+len(e.Payload)+2*9+len(e.Author)+e.cid.ByteLen())
	b = append(b, 0xa3, 0x01)
	b = append(b, e.Payload...)
	b = append(cborHead(append(b, 0x02), 2, uint64(len(e.Author))), e.Author...)
	return append(cborHead(append(b, 0x03), 2, uint64(e.cid.ByteLen())), e.cid.KeyString()...)
}

func lastSeg(k string) string {
	if i := bytes.LastIndexByte([]byte(k), '/'); i >= 0 {
		return k[i+1:]
	}
	return k
}
