// Package netkey is the ledger entry that rotates the network's pre-shared
// key (libp2p's private-network key), and its rules.
//
// When the admin removes a member, the member still knows the key every
// connection of the network is protected with. A network.key entry hands a
// fresh one to each remaining member, wrapped (HPKE, sharing/keywrap) to
// that member's current key-wrapping key, with an epoch (one more than the
// last), the moment every node starts dialing with it (Activate) and the
// moment the previous key stops being accepted (Retire). Nodes apply the
// schedule to their running host (node/p2p: SetNetworkKeys), so they switch
// together, and after Retire the removed member cannot even complete a
// connection's first bytes.
//
// Authority, at the entry's causal position: only an admin signs it (a
// member that could would hand the network's key to whomever it likes, or
// cut members off); each envelope names a member and is sealed to that
// member's current key there, so no envelope goes to a removed member (the
// removal is in the entry's past) or to a key the member no longer holds;
// its epoch is one more than the highest in its past. Concurrent rotations
// by two admins may share an epoch: nodes install, per epoch, the entry
// first in (epoch, CID) order that has an envelope for them.
package netkey

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/strictcbor"
	"github.com/medmesh/medmesh/sharing/keywrap"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// Type is the entry type.
const Type = "network.key"

// Limits.
const (
	// MaxEnvelopes bounds the members one rotation reaches.
	MaxEnvelopes = 1024
	// MaxOverlap bounds how long the previous key stays accepted after
	// the switch, and MaxLead how far ahead the switch may be announced.
	MaxOverlap = 30 * 24 * time.Hour
	MaxLead    = 24 * time.Hour
)

// Payload is a network.key entry.
type Payload struct {
	Epoch    uint64 `cbor:"1,keyasint"`
	Activate int64  `cbor:"2,keyasint"` // unix ms: dial with the new key from then
	Retire   int64  `cbor:"3,keyasint"` // unix ms: stop accepting the previous key then
	// Removed is the member whose removal prompted the rotation (empty:
	// none). It must not be a member at the entry's causal position.
	Removed   []byte     `cbor:"4,keyasint,omitempty"`
	Envelopes []Envelope `cbor:"5,keyasint"`
}

// Envelope is the new key wrapped to one member.
type Envelope struct {
	Member   []byte `cbor:"1,keyasint"`
	Envelope []byte `cbor:"2,keyasint"` // keywrap.Envelope.MarshalBinary
}

// ActivateAt and RetireAt are the payload's times.
func (p *Payload) ActivateAt() time.Time { return time.UnixMilli(p.Activate).UTC() }

// RetireAt is when the previous key stops being accepted.
func (p *Payload) RetireAt() time.Time { return time.UnixMilli(p.Retire).UTC() }

// EnvelopeFor returns member's envelope, if the entry has one.
func (p *Payload) EnvelopeFor(member peer.ID) ([]byte, bool) {
	for _, e := range p.Envelopes {
		if string(e.Member) == string(member) {
			return e.Envelope, true
		}
	}
	return nil, false
}

// Types returns the entry types of this package, for the node to pass to
// the ledger (and declare in a new network's genesis).
func Types() []ledger.TypeSpec {
	return []ledger.TypeSpec{{Name: Type, New: func() any { return new(Payload) }, Validate: validate, Apply: apply}}
}

// rowKey orders the rows by epoch, then entry: "e/<epoch, 20 digits>/<cid>".
func rowKey(epoch uint64, entry cid.Cid) string {
	return fmt.Sprintf("e/%020d/%s", epoch, entry)
}

var dec = strictcbor.Dec(strictcbor.Limits{Nesting: 8, Array: MaxEnvelopes, Map: 16})

// maxEpochInPast is the highest epoch among the rotations in v's causal
// past (0: none).
func maxEpochInPast(v ledger.View) uint64 {
	var max uint64
	for _, r := range v.Ext(Type, "e/") {
		epoch, c, ok := parseRowKey(r.Key)
		if ok && epoch > max && v.InPast(c) {
			max = epoch
		}
	}
	return max
}

func parseRowKey(k string) (uint64, cid.Cid, bool) {
	parts := strings.Split(k, "/")
	if len(parts) != 3 || parts[0] != "e" {
		return 0, cid.Undef, false
	}
	epoch, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil {
		return 0, cid.Undef, false
	}
	c, err := cid.Decode(parts[2])
	if err != nil {
		return 0, cid.Undef, false
	}
	return epoch, c, true
}

func validate(v ledger.View, e *ledger.Entry, pl any) error {
	p := pl.(*Payload)
	if !v.HasRole(e.Author, ledger.RoleAdmin) {
		return fmt.Errorf("%w: network.key by non-admin %s", ledger.ErrUnauthorized, e.Author)
	}
	if want := maxEpochInPast(v) + 1; p.Epoch != want {
		return fmt.Errorf("network.key epoch %d, want %d (one more than the last in its past)", p.Epoch, want)
	}
	if p.Activate <= 0 || p.Retire < p.Activate {
		return errors.New("network.key: retirement before activation")
	}
	if time.Duration(p.Retire-p.Activate)*time.Millisecond > MaxOverlap {
		return fmt.Errorf("network.key: the previous key may stay accepted %v at most", MaxOverlap)
	}
	if wall := int64(e.Clock.Wall); p.Activate > wall+MaxLead.Milliseconds() {
		return fmt.Errorf("network.key: activation more than %v after the entry", MaxLead)
	}
	if len(p.Removed) > 0 {
		r, err := peer.IDFromBytes(p.Removed)
		if err != nil {
			return fmt.Errorf("network.key: removed member: %w", err)
		}
		if v.IsMember(r) {
			return fmt.Errorf("%w: network.key names %s removed, but it is a member in the entry's past", ledger.ErrUnauthorized, r)
		}
	}
	if len(p.Envelopes) == 0 || len(p.Envelopes) > MaxEnvelopes {
		return fmt.Errorf("network.key: 1 to %d envelopes", MaxEnvelopes)
	}
	var prev string
	for _, env := range p.Envelopes {
		m, err := peer.IDFromBytes(env.Member)
		if err != nil {
			return fmt.Errorf("network.key: envelope member: %w", err)
		}
		if string(env.Member) <= prev {
			return errors.New("network.key: envelopes must be sorted by member and unique")
		}
		prev = string(env.Member)
		if !v.IsMember(m) {
			return fmt.Errorf("%w: network.key wraps the key to %s, not a member in the entry's past", ledger.ErrUnauthorized, m)
		}
		var ke keywrap.Envelope
		if err := ke.UnmarshalBinary(env.Envelope); err != nil {
			return fmt.Errorf("network.key: envelope for %s: %w", m, err)
		}
		if _, kid, ok := v.KEMKey(m); !ok || kid != ke.KeyID {
			return fmt.Errorf("%w: network.key envelope for %s is not sealed to its current key", ledger.ErrUnauthorized, m)
		}
	}
	return nil
}

func apply(t ledger.Txn, e *ledger.Entry, pl any) error {
	p := pl.(*Payload)
	t.Put(rowKey(p.Epoch, e.CID()), e.Payload)
	return nil
}

// Rotation is one network.key entry as a node reads it back.
type Rotation struct {
	Entry   cid.Cid
	Payload Payload
}

// Rows is what Rotations reads (*ledger.Ledger's Ext).
type Rows interface {
	Ext(typ, prefix string) ([]ledger.ExtRow, error)
}

// Rotations lists every applied rotation, in (epoch, CID) order.
func Rotations(l Rows) ([]Rotation, error) {
	rows, err := l.Ext(Type, "e/")
	if err != nil {
		return nil, err
	}
	var out []Rotation
	for _, r := range rows {
		_, c, ok := parseRowKey(r.Key)
		if !ok {
			return nil, fmt.Errorf("netkey: bad state key %q", r.Key)
		}
		var p Payload
		if err := dec.Unmarshal(r.Value, &p); err != nil {
			return nil, fmt.Errorf("netkey: stored rotation %s: %w", c, err)
		}
		out = append(out, Rotation{Entry: c, Payload: p})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Payload.Epoch < out[j].Payload.Epoch })
	return out, nil
}
