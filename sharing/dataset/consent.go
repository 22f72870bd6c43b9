package dataset

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/internal/strictcbor"

	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
)

// Entry types.
const (
	TypeConsent       = "consent"
	TypeConsentRevoke = "consent.revoke"
)

// PseudonymSize is the size of a consent pseudonym (HMAC-SHA256).
const PseudonymSize = 32

// maxScope bounds modality and body part strings.
const maxScope = 16

// ValidPurpose reports whether p is a known purpose (ledger.Purposes).
func ValidPurpose(p string) bool { return ledger.ValidPurpose(p) }

// ConsentPayload is the payload of a "consent" entry (wire form: canonical
// CBOR with integer keys).
type ConsentPayload struct {
	Patient  []byte `cbor:"1,keyasint"`           // ConsentPseudonym, 32 bytes
	Purpose  string `cbor:"2,keyasint"`           // ledger.Purpose*
	Modality string `cbor:"3,keyasint,omitempty"` // "" = any
	BodyPart string `cbor:"4,keyasint,omitempty"` // "" = any
	Expires  int64  `cbor:"5,keyasint,omitempty"` // Unix ms; 0 = none
}

// RevokePayload is the payload of a "consent.revoke" entry: it cancels the
// author's consents of (Patient, Purpose) that it saw or that are concurrent
// with it.
type RevokePayload struct {
	Patient []byte `cbor:"1,keyasint"`
	Purpose string `cbor:"2,keyasint"`
}

// ConsentPseudonym names a patient on the ledger: HMAC-SHA256 under the
// clinic's secret key of the patient ID, domain-separated.
func ConsentPseudonym(clinicKey []byte, patientID string) []byte {
	m := hmac.New(sha256.New, clinicKey)
	m.Write([]byte("medmesh consent patient v1\x00" + patientID))
	return m.Sum(nil)
}

// validScope: upper-case letters, digits and underscore (DICOM CS), bounded.
func validScope(s string) bool {
	if len(s) > maxScope {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Check validates a consent payload on its own.
func (p *ConsentPayload) Check() error {
	if len(p.Patient) != PseudonymSize {
		return fmt.Errorf("consent: patient pseudonym must be %d bytes, is %d", PseudonymSize, len(p.Patient))
	}
	if !ledger.ValidPurpose(p.Purpose) {
		return fmt.Errorf("consent: unknown purpose %q", p.Purpose)
	}
	if !validScope(p.Modality) || !validScope(p.BodyPart) {
		return errors.New("consent: modality and body part must be up to 16 of A-Z, 0-9, _")
	}
	if p.Modality != "" {
		// The scope is on the ledger in clear: a modality is one of
		// DICOM's defined terms, never free text.
		if m, err := dicom.NormalizeModality(p.Modality); err != nil || m != p.Modality {
			return fmt.Errorf("consent: modality %q is not a DICOM modality in upper case (MR, CT, ...)", p.Modality)
		}
	}
	if p.Expires < 0 {
		return errors.New("consent: negative expiry")
	}
	return nil
}

// Check validates a revoke payload on its own.
func (p *RevokePayload) Check() error {
	if len(p.Patient) != PseudonymSize {
		return fmt.Errorf("consent.revoke: patient pseudonym must be %d bytes, is %d", PseudonymSize, len(p.Patient))
	}
	if !ledger.ValidPurpose(p.Purpose) {
		return fmt.Errorf("consent.revoke: unknown purpose %q", p.Purpose)
	}
	return nil
}

var (
	encMode = strictcbor.Enc
	decMode = strictcbor.Dec(strictcbor.Limits{Nesting: 8, Array: 1 << 16, Map: 64})
)

// stateRow is what Apply stores per entry (part of the ledger digest).
type stateRow struct {
	Purpose  string `cbor:"1,keyasint"`
	Modality string `cbor:"2,keyasint,omitempty"`
	BodyPart string `cbor:"3,keyasint,omitempty"`
	Expires  int64  `cbor:"4,keyasint,omitempty"`
	Wall     uint64 `cbor:"5,keyasint"`
	Counter  uint32 `cbor:"6,keyasint"`
}

func stateKey(e *ledger.Entry, patient []byte) string {
	return e.Author.String() + "/" + hex.EncodeToString(patient) + "/" + e.CID().String()
}

// Types returns the consent entry types, for a node's ledger.Options.Types
// (append(ledger.Builtin(), dataset.Types()...)). Nothing registers them
// by import: a node runs them because it is told to, and a network whose
// genesis declares them cannot be opened by a node that does not.
func Types() []ledger.TypeSpec {
	return []ledger.TypeSpec{
		{Name: TypeConsent, New: func() any { return new(ConsentPayload) }, Validate: validateConsent, Apply: applyConsent},
		{Name: TypeConsentRevoke, New: func() any { return new(RevokePayload) }, Validate: validateConsentRevoke, Apply: applyConsentRevoke},
	}
}

// validateConsent: any member records a consent of one of its patients
// (under a pseudonym only its clinic can compute).
func validateConsent(v ledger.View, e *ledger.Entry, pl any) error {
	p, ok := pl.(*ConsentPayload)
	if !ok {
		return errors.New("consent: wrong payload type")
	}
	if !v.IsMember(e.Author) {
		return fmt.Errorf("%w: consent author is not a member", ledger.ErrUnauthorized)
	}
	return p.Check()
}

func applyConsent(t ledger.Txn, e *ledger.Entry, pl any) error {
	p := pl.(*ConsentPayload)
	b, err := encMode.Marshal(&stateRow{Purpose: p.Purpose, Modality: p.Modality, BodyPart: p.BodyPart, Expires: p.Expires, Wall: e.Clock.Wall, Counter: e.Clock.Counter})
	if err != nil {
		return err
	}
	t.Put("c/"+stateKey(e, p.Patient), b)
	return nil
}

// validateConsentRevoke: any member revokes consents; a revoke cancels only
// its author's consents (Evaluate).
func validateConsentRevoke(v ledger.View, e *ledger.Entry, pl any) error {
	p, ok := pl.(*RevokePayload)
	if !ok {
		return errors.New("consent.revoke: wrong payload type")
	}
	if !v.IsMember(e.Author) {
		return fmt.Errorf("%w: consent.revoke author is not a member", ledger.ErrUnauthorized)
	}
	return p.Check()
}

func applyConsentRevoke(t ledger.Txn, e *ledger.Entry, pl any) error {
	p := pl.(*RevokePayload)
	b, err := encMode.Marshal(&stateRow{Purpose: p.Purpose, Wall: e.Clock.Wall, Counter: e.Clock.Counter})
	if err != nil {
		return err
	}
	t.Put("r/"+stateKey(e, p.Patient), b)
	return nil
}

// Consent is one decoded consent entry.
type Consent struct {
	Author   peer.ID
	Patient  []byte
	Purpose  string
	Modality string
	BodyPart string
	Expires  time.Time // zero: none
	Entry    cid.Cid
	Clock    ledger.HLC
	// Revoked is set by Evaluate when a revoke cancels it.
	Revoked bool
}

// Revocation is one decoded consent.revoke entry.
type Revocation struct {
	Author  peer.ID
	Patient []byte
	Purpose string
	Entry   cid.Cid
	Clock   ledger.HLC
}

// DecodeConsent decodes a consent entry (already validated by the ledger).
func DecodeConsent(e *ledger.Entry) (*Consent, error) {
	if e.Type != TypeConsent {
		return nil, fmt.Errorf("entry %s is a %q, not a consent", e.CID(), e.Type)
	}
	var p ConsentPayload
	if err := Unmarshal(e.Payload, &p); err != nil {
		return nil, err
	}
	if err := p.Check(); err != nil {
		return nil, err
	}
	c := &Consent{Author: e.Author, Patient: p.Patient, Purpose: p.Purpose, Modality: p.Modality, BodyPart: p.BodyPart, Entry: e.CID(), Clock: e.Clock}
	if p.Expires > 0 {
		c.Expires = time.UnixMilli(p.Expires).UTC()
	}
	return c, nil
}

// DecodeRevocation decodes a consent.revoke entry.
func DecodeRevocation(e *ledger.Entry) (*Revocation, error) {
	if e.Type != TypeConsentRevoke {
		return nil, fmt.Errorf("entry %s is a %q, not a consent.revoke", e.CID(), e.Type)
	}
	var p RevokePayload
	if err := Unmarshal(e.Payload, &p); err != nil {
		return nil, err
	}
	if err := p.Check(); err != nil {
		return nil, err
	}
	return &Revocation{Author: e.Author, Patient: p.Patient, Purpose: p.Purpose, Entry: e.CID(), Clock: e.Clock}, nil
}

// Covers reports whether the consent's scope includes a series of the
// given modality and body part.
func (c *Consent) Covers(modality, bodyPart string) bool {
	return (c.Modality == "" || c.Modality == modality) && (c.BodyPart == "" || c.BodyPart == bodyPart)
}

// Live reports whether the consent is neither revoked nor expired at now
// (with skew: an expiry is honoured that much longer).
func (c *Consent) Live(now time.Time, skew time.Duration) bool {
	return !c.Revoked && (c.Expires.IsZero() || now.Before(c.Expires.Add(skew)))
}

// Ancestry answers whether entry a is in the causal past of entry b.
type Ancestry interface {
	IsAncestor(ctx context.Context, a, b cid.Cid) (bool, error)
}

// Evaluate marks each consent Revoked when some revocation by the same
// author of the same (patient, purpose) is not in the consent's causal past
// (revoke wins over what it saw and over what is concurrent with it). The
// result depends only on the entries and their causal relation.
func Evaluate(ctx context.Context, anc Ancestry, cs []*Consent, rs []*Revocation) error {
	type key struct {
		author  peer.ID
		patient string
		purpose string
	}
	byKey := map[key][]*Revocation{}
	for _, r := range rs {
		k := key{r.Author, string(r.Patient), r.Purpose}
		byKey[k] = append(byKey[k], r)
	}
	for _, c := range cs {
		c.Revoked = false
		for _, r := range byKey[key{c.Author, string(c.Patient), c.Purpose}] {
			// A revoke can only be in the past of an entry with a greater clock.
			if !r.Clock.Less(c.Clock) {
				c.Revoked = true
				break
			}
			ok, err := anc.IsAncestor(ctx, r.Entry, c.Entry)
			if err != nil {
				return err
			}
			if !ok {
				c.Revoked = true
				break
			}
		}
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Clock != cs[j].Clock {
			return cs[i].Clock.Less(cs[j].Clock)
		}
		return cs[i].Entry.KeyString() < cs[j].Entry.KeyString()
	})
	return nil
}

// EntryGetter fetches an applied ledger entry (ledger.Ledger.Entry).
type EntryGetter interface {
	Entry(ctx context.Context, c cid.Cid) (*ledger.Entry, error)
}

// LedgerAncestry answers ancestry by walking parents from b, pruning every
// entry whose clock is not greater than a's (clocks grow along links). Its
// cost is the part of the DAG between the two entries.
type LedgerAncestry struct {
	L     EntryGetter
	Limit int // entries visited before giving up (default 1<<20)
	cache map[cid.Cid]*ledger.Entry
}

func (la *LedgerAncestry) entry(ctx context.Context, c cid.Cid) (*ledger.Entry, error) {
	if e, ok := la.cache[c]; ok {
		return e, nil
	}
	e, err := la.L.Entry(ctx, c)
	if err != nil {
		return nil, err
	}
	if la.cache == nil {
		la.cache = map[cid.Cid]*ledger.Entry{}
	}
	la.cache[c] = e
	return e, nil
}

// IsAncestor implements Ancestry.
func (la *LedgerAncestry) IsAncestor(ctx context.Context, a, b cid.Cid) (bool, error) {
	ea, err := la.entry(ctx, a)
	if err != nil {
		return false, err
	}
	limit := la.Limit
	if limit <= 0 {
		limit = 1 << 20
	}
	seen := map[cid.Cid]bool{b: true}
	queue := []cid.Cid{b}
	for len(queue) > 0 {
		c := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		e, err := la.entry(ctx, c)
		if err != nil {
			return false, err
		}
		for _, p := range e.Parents {
			if p == a {
				return true, nil
			}
			if seen[p] {
				continue
			}
			seen[p] = true
			if len(seen) > limit {
				return false, errors.New("dataset: ancestry walk exceeded its limit")
			}
			pe, err := la.entry(ctx, p)
			if err != nil {
				return false, err
			}
			if ea.Clock.Less(pe.Clock) {
				queue = append(queue, p)
			}
		}
	}
	return false, nil
}

// Marshal encodes v in canonical CBOR (Core Deterministic Encoding).
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// Unmarshal decodes b strictly into v: no duplicate keys, indefinite
// lengths, tags, unknown fields or invalid UTF-8, and the re-encoding of v
// must equal b, so every value has exactly one accepted encoding.
func Unmarshal(b []byte, v any) error {
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("dataset: decode: %w", err)
	}
	re, err := encMode.Marshal(v)
	if err != nil {
		return fmt.Errorf("dataset: decode: %w", err)
	}
	if string(re) != string(b) {
		return errors.New("dataset: decode: non-canonical encoding")
	}
	return nil
}
