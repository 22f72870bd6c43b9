package ledger

import (
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
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

// ValidPurpose reports whether p is one of Purposes.
func ValidPurpose(p string) bool {
	switch p {
	case PurposeTreatment, PurposeResearch, PurposeOperations, PurposeEmergency:
		return true
	}
	return false
}

// ---- payloads as callers pass them to Append ----

// wirer is implemented by the built-in payload types: they convert to their
// canonical wire form.
type wirer interface{ wirePayload() (any, error) }

// GenesisPayload founds a network. Use NewGenesis.
type GenesisPayload struct {
	Name    string
	Admin   peer.ID
	Created time.Time
	Types   []string
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
	// Label is optional: the record's name and media type sealed under its
	// data key for this grant (access.SealLabel), so the grantee's node can
	// show what was shared with it without reading the record. Opaque to
	// the ledger, at most MaxGrantLabel bytes; nothing in it is in clear.
	Label []byte
}

// MaxGrantLabel bounds a grant's sealed label.
const MaxGrantLabel = 1024

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
	// Reads is how many reads the claim covers (0 or 1: one, at Time); a
	// reader's node batches its reads of a record under one grant and
	// purpose, Time the first and Last the last of them.
	Reads uint64
	Last  time.Time
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
	// Types are the entry types the network runs, sorted (absent in
	// networks founded before they were declared).
	Types []string `cbor:"4,keyasint,omitempty"`
	// Scoped networks split their entries into scopes (scope.go); absent
	// in networks founded before scopes, whose entries are all global.
	Scoped bool `cbor:"5,keyasint,omitempty"`
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
	Label    []byte `cbor:"6,keyasint,omitempty"`
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
	// A batch of reads (2 or more; absent: one read at Time), the last at
	// Last.
	Reads uint64 `cbor:"6,keyasint,omitempty"`
	Last  int64  `cbor:"7,keyasint,omitempty"`
}

// event is the claim an access entry's payload makes.
func (w *accessWire) event(rec cid.Cid, reader peer.ID, entry cid.Cid) AccessEvent {
	ev := AccessEvent{Record: rec, Reader: reader, Version: w.Version, Purpose: w.Purpose, Time: msTime(w.Time), Entry: entry, Reads: 1}
	ev.Last = ev.Time
	if w.Reads > 1 {
		ev.Reads, ev.Last = int(w.Reads), msTime(w.Last)
	}
	if len(w.Grant) > 0 {
		ev.Grant, _ = cid.Cast(w.Grant)
	}
	return ev
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
	return &genesisWire{Name: p.Name, Admin: []byte(p.Admin), Created: p.Created.UnixMilli(), Types: p.Types}, nil
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
	return &grantWire{Record: cidBytes(p.Record), Grantee: []byte(p.Grantee), Envelope: p.Envelope, Expires: unixMs(p.Expires), Purpose: p.Purpose, Label: p.Label}, nil
}
func (p RevokePayload) wirePayload() (any, error) {
	return &revokeWire{Record: cidBytes(p.Record), Grantee: []byte(p.Grantee)}, nil
}
func (p AccessPayload) wirePayload() (any, error) {
	w := &accessWire{Record: cidBytes(p.Record), Version: p.Version, Purpose: p.Purpose, Time: unixMs(p.Time), Grant: cidBytes(p.Grant)}
	if p.Reads > 1 {
		w.Reads, w.Last = p.Reads, unixMs(p.Last)
	}
	return w, nil
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
