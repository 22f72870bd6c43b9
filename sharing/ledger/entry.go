package ledger

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/internal/strictcbor"
	mh "github.com/multiformats/go-multihash"
)

// Limits on entries. They are part of the protocol: every node must use the
// same values or nodes could disagree on validity.
const (
	// MaxEntrySize is the largest encoded entry accepted.
	MaxEntrySize = 64 << 10
	// MaxParents bounds the number of parent links of one entry.
	MaxParents = 64
	// maxTypeLen bounds an entry type name.
	maxTypeLen = 64
)

// signDomain separates ledger signatures from any other use of node keys.
const signDomain = "medmesh/ledger/entry/v1\n"

// HLC is a hybrid logical clock reading: wall-clock milliseconds since the
// Unix epoch and a counter that orders readings within one millisecond.
// Every entry's clock is strictly greater than each of its parents' clocks,
// so ordering entries by (clock, CID) is a topological order of the DAG.
type HLC struct {
	Wall    uint64
	Counter uint32
}

// Less orders clock readings.
func (h HLC) Less(o HLC) bool {
	if h.Wall != o.Wall {
		return h.Wall < o.Wall
	}
	return h.Counter < o.Counter
}

// Entry is one decoded, signature-checked ledger entry.
type Entry struct {
	// Network is the genesis CID (cid.Undef in the genesis entry itself).
	Network cid.Cid
	// Type names the entry's TypeSpec.
	Type string
	// AuthorKey is the author's raw 32-byte Ed25519 public key.
	AuthorKey []byte
	// Author is the peer ID derived from AuthorKey.
	Author peer.ID
	// Payload is the type-specific canonical CBOR payload.
	Payload []byte
	// Parents are the heads the author had seen, sorted by bytes.
	Parents []cid.Cid
	// Clock is the author's hybrid logical clock at signing.
	Clock HLC
	// Scope is the scope the entry lives on ("" for the global scope; see
	// scope.go). It is signed: an entry cannot be moved to another scope.
	Scope string
	// Sig is the Ed25519 signature over the canonical encoding of all other
	// fields, prefixed with a domain separator.
	Sig []byte

	cid cid.Cid
	cs  string // cid.String(), rendered once
	raw []byte
}

// CID returns the entry's block CID (CIDv1, raw codec, sha2-256).
func (e *Entry) CID() cid.Cid { return e.cid }

// Bytes returns the entry's canonical encoding (the block's bytes). The
// caller must not modify it.
func (e *Entry) Bytes() []byte { return e.raw }

// wireEntry is the canonical CBOR form of an entry. Integer keys keep it
// compact; Core Deterministic Encoding fixes key order and integer widths.
type wireEntry struct {
	Scope   string          `cbor:"0,keyasint,omitempty"`
	Network []byte          `cbor:"1,keyasint,omitempty"`
	Type    string          `cbor:"2,keyasint"`
	Author  []byte          `cbor:"3,keyasint"`
	Payload cbor.RawMessage `cbor:"4,keyasint"`
	Parents [][]byte        `cbor:"5,keyasint"`
	Wall    uint64          `cbor:"6,keyasint"`
	Counter uint32          `cbor:"7,keyasint"`
	Sig     []byte          `cbor:"8,keyasint,omitempty"`
}

var (
	encMode = strictcbor.Enc
	decMode = strictcbor.Dec(strictcbor.Limits{Nesting: 16, Array: 4096, Map: 256})
)

// Errors reported by decoding.
var (
	ErrOversize  = errors.New("ledger: entry exceeds size limit")
	ErrMalformed = errors.New("ledger: malformed entry")
	ErrSignature = errors.New("ledger: bad signature")
)

// canonicalUnmarshal decodes b strictly into v and checks that re-encoding v
// gives b back, so every value has exactly one accepted encoding.
func canonicalUnmarshal(b []byte, v any) error {
	if err := decMode.Unmarshal(b, v); err != nil {
		return err
	}
	re, err := encMode.Marshal(v)
	if err != nil {
		return err
	}
	if !bytes.Equal(re, b) {
		return errors.New("non-canonical encoding")
	}
	return nil
}

// DecodeEntry parses and checks an entry's encoding and signature. It does
// not check anything that depends on other entries (parents, membership).
func DecodeEntry(raw []byte) (*Entry, error) {
	if len(raw) > MaxEntrySize {
		return nil, ErrOversize
	}
	var w wireEntry
	if err := decMode.Unmarshal(raw, &w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(w.appendCanonical(make([]byte, 0, len(raw))), raw) {
		return nil, fmt.Errorf("%w: non-canonical encoding", ErrMalformed)
	}
	e := &Entry{Type: w.Type, AuthorKey: w.Author, Payload: w.Payload, Clock: HLC{w.Wall, w.Counter}, Sig: w.Sig, Scope: w.Scope}
	if len(w.Type) == 0 || len(w.Type) > maxTypeLen || !validTypeName(w.Type) {
		return nil, fmt.Errorf("%w: bad type name", ErrMalformed)
	}
	if w.Scope != "" {
		if _, _, err := ParseScope(w.Scope); err != nil || w.Scope == ScopeGlobal {
			return nil, fmt.Errorf("%w: bad scope %q", ErrMalformed, w.Scope)
		}
		if len(w.Parents) == 0 {
			return nil, fmt.Errorf("%w: the genesis is global", ErrMalformed)
		}
	}
	if len(w.Network) > 0 {
		c, err := cid.Cast(w.Network)
		if err != nil {
			return nil, fmt.Errorf("%w: network id: %v", ErrMalformed, err)
		}
		e.Network = c
	}
	if len(w.Parents) > MaxParents {
		return nil, fmt.Errorf("%w: too many parents", ErrMalformed)
	}
	for i, p := range w.Parents {
		if i > 0 && bytes.Compare(w.Parents[i-1], p) >= 0 {
			return nil, fmt.Errorf("%w: parents not sorted and unique", ErrMalformed)
		}
		c, err := cid.Cast(p)
		if err != nil {
			return nil, fmt.Errorf("%w: parent: %v", ErrMalformed, err)
		}
		if e.Parents == nil {
			e.Parents = make([]cid.Cid, 0, len(w.Parents))
		}
		e.Parents = append(e.Parents, c)
	}
	if (len(e.Parents) == 0) != (e.Network == cid.Undef) {
		return nil, fmt.Errorf("%w: only genesis may lack parents or network id", ErrMalformed)
	}
	pub, err := crypto.UnmarshalEd25519PublicKey(w.Author)
	if err != nil {
		return nil, fmt.Errorf("%w: author key: %v", ErrMalformed, err)
	}
	if e.Author, err = authorID(w.Author); err != nil {
		return nil, fmt.Errorf("%w: author key: %v", ErrMalformed, err)
	}
	if len(w.Sig) != 64 {
		return nil, ErrSignature
	}
	msg, err := signedMessage(raw, &w)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	ok, err := pub.Verify(msg, e.Sig)
	if err != nil || !ok {
		return nil, ErrSignature
	}
	e.raw = raw
	e.cid = blockCID(raw)
	e.cs = e.cid.String()
	return e, nil
}

// authorID derives the peer ID of an Ed25519 key: the identity multihash
// of the key's protobuf encoding (type Ed25519, 32 bytes of data), which is
// what peer.IDFromPublicKey computes, built directly: every received entry
// derives one. TestAuthorIDMatchesLibp2p compares the two.
func authorID(raw []byte) (peer.ID, error) {
	if len(raw) != 32 {
		return "", fmt.Errorf("ed25519 public key of %d bytes", len(raw))
	}
	const prefix = "\x00\x24\x08\x01\x12\x20" // identity multihash, 36 bytes; protobuf KeyType=Ed25519, Data (32 bytes)
	return peer.ID(prefix + string(raw)), nil
}

// appendCanonical appends encMode's encoding of w (Core Deterministic:
// integer keys in order, shortest heads, omitempty Network and Sig, nil
// byte strings and lists as null, the payload as is) without reflection:
// every received entry is re-encoded to check that it is canonical.
// FuzzEntryDecode compares it with encMode.Marshal.
func (w *wireEntry) appendCanonical(b []byte) []byte {
	bstr := func(b, v []byte) []byte {
		if v == nil {
			return append(b, 0xf6)
		}
		return append(cborHead(b, 2, uint64(len(v))), v...)
	}
	n := uint64(6)
	if len(w.Scope) > 0 {
		n++
	}
	if len(w.Network) > 0 {
		n++
	}
	if len(w.Sig) > 0 {
		n++
	}
	b = cborHead(b, 5, n)
	if len(w.Scope) > 0 {
		b = append(cborHead(append(b, 0x00), 3, uint64(len(w.Scope))), w.Scope...)
	}
	if len(w.Network) > 0 {
		b = bstr(append(b, 0x01), w.Network)
	}
	b = append(cborHead(append(b, 0x02), 3, uint64(len(w.Type))), w.Type...)
	b = bstr(append(b, 0x03), w.Author)
	b = append(b, 0x04)
	if len(w.Payload) == 0 {
		b = append(b, 0xf6)
	} else {
		b = append(b, w.Payload...)
	}
	b = append(b, 0x05)
	if w.Parents == nil {
		b = append(b, 0xf6)
	} else {
		b = cborHead(b, 4, uint64(len(w.Parents)))
		for _, p := range w.Parents {
			b = bstr(b, p)
		}
	}
	b = cborHead(append(b, 0x06), 0, w.Wall)
	b = cborHead(append(b, 0x07), 0, uint64(w.Counter))
	if len(w.Sig) > 0 {
		b = bstr(append(b, 0x08), w.Sig)
	}
	return b
}

// sigTrailer is how a canonical entry ends: key 8, then a 64-byte string.
const sigTrailer = "\x08\x58\x40"

// signedMessage returns signDomain followed by the entry's encoding without
// its signature. raw is canonical (checked by re-encoding) with a 64-byte
// signature, so that encoding is raw's map minus its last pair: the header
// (at most 9 pairs, one byte) counts one pair less and the 67 bytes of key 8
// and the signature are cut. Anything else is re-encoded from w.
func signedMessage(raw []byte, w *wireEntry) ([]byte, error) {
	const sigPair = 3 + 64
	if n := len(raw); n > sigPair && raw[0] > 0xa0 && raw[0] <= 0xa9 && string(raw[n-sigPair:n-64]) == sigTrailer {
		msg := make([]byte, 0, len(signDomain)+n-sigPair)
		msg = append(msg, signDomain...)
		msg = append(msg, raw[0]-1)
		return append(msg, raw[1:n-sigPair]...), nil
	}
	u := *w
	u.Sig = nil
	unsigned, err := encMode.Marshal(&u)
	if err != nil {
		return nil, err
	}
	return append(append([]byte(nil), signDomain...), unsigned...), nil
}

func validTypeName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// blockCID is the CID an entry's bytes are stored under.
func blockCID(raw []byte) cid.Cid {
	h, _ := mh.Sum(raw, mh.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, h)
}

// signEntry builds, signs and encodes a global entry.
func signEntry(key crypto.PrivKey, network cid.Cid, typ string, payload []byte, parents []cid.Cid, clock HLC) (*Entry, error) {
	return signScoped(key, network, "", typ, payload, parents, clock)
}

// signScoped builds, signs and encodes an entry of wire scope scope.
func signScoped(key crypto.PrivKey, network cid.Cid, scope, typ string, payload []byte, parents []cid.Cid, clock HLC) (*Entry, error) {
	if key.Type() != crypto.Ed25519 {
		return nil, errors.New("ledger: node key must be Ed25519")
	}
	pubRaw, err := key.GetPublic().Raw()
	if err != nil {
		return nil, err
	}
	w := wireEntry{Scope: scope, Type: typ, Author: pubRaw, Payload: payload, Wall: clock.Wall, Counter: clock.Counter}
	if network.Defined() {
		w.Network = network.Bytes()
	}
	w.Parents = make([][]byte, 0, len(parents))
	for _, p := range parents {
		w.Parents = append(w.Parents, p.Bytes())
	}
	sortBytes(w.Parents)
	unsigned, err := encMode.Marshal(&w)
	if err != nil {
		return nil, err
	}
	if w.Sig, err = key.Sign(append(append([]byte(nil), signDomain...), unsigned...)); err != nil {
		return nil, err
	}
	raw, err := encMode.Marshal(&w)
	if err != nil {
		return nil, err
	}
	if len(raw) > MaxEntrySize {
		return nil, ErrOversize
	}
	return DecodeEntry(raw)
}

func sortBytes(b [][]byte) {
	for i := 1; i < len(b); i++ {
		for j := i; j > 0 && bytes.Compare(b[j-1], b[j]) > 0; j-- {
			b[j-1], b[j] = b[j], b[j-1]
		}
	}
}
