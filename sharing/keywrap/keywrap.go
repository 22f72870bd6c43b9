// Package keywrap wraps a record's data key to one recipient's public key with
// HPKE (RFC 9180) using the hybrid post-quantum KEM ML-KEM-768 + X25519,
// HKDF-SHA256 and AES-256-GCM, all from the standard library's crypto/hpke.
//
// An envelope opens exactly one thing: the caller binds what the key is for
// (record ID, grantee, purpose, version) into HPKE's info parameter, so an
// envelope moved to another record or another grantee fails to open.
package keywrap

import (
	"bytes"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Suite identifiers (RFC 9180 registries).
var (
	kem  = hpke.MLKEM768X25519()
	kdf  = hpke.HKDFSHA256()
	aead = hpke.AES256GCM()
)

// KeySize is the size of a data key.
const KeySize = 32

// KeyID identifies a recipient public key: SHA-256 of its serialized bytes.
type KeyID [32]byte

// IDOf returns the KeyID of a serialized public key.
func IDOf(pub []byte) KeyID { return sha256.Sum256(pub) }

// PrivateKey is a node's key-wrapping private key.
type PrivateKey struct{ k hpke.PrivateKey }

// Generate makes a fresh key pair.
func Generate() (*PrivateKey, error) {
	k, err := kem.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("generate HPKE key: %w", err)
	}
	return &PrivateKey{k: k}, nil
}

// ParsePrivateKey reads a private key serialized by Bytes.
func ParsePrivateKey(b []byte) (*PrivateKey, error) {
	k, err := kem.NewPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("parse HPKE private key: %w", err)
	}
	return &PrivateKey{k: k}, nil
}

// Bytes serializes the private key (keep it in a 0600 file, never send it).
func (p *PrivateKey) Bytes() ([]byte, error) { return p.k.Bytes() }

// Public returns the serialized public key.
func (p *PrivateKey) Public() []byte { return p.k.PublicKey().Bytes() }

// ID returns the KeyID of this key's public half.
func (p *PrivateKey) ID() KeyID { return IDOf(p.Public()) }

// ValidatePublicKey checks that b is a well-formed public key of our suite.
func ValidatePublicKey(b []byte) error {
	if _, err := kem.NewPublicKey(b); err != nil {
		return fmt.Errorf("not an ML-KEM-768+X25519 public key: %w", err)
	}
	return nil
}

// Envelope is a data key wrapped to one recipient.
type Envelope struct {
	// KeyID names the recipient public key the envelope was sealed to, so
	// validators can check it against the grantee's announced key.
	KeyID KeyID
	// Sealed is HPKE's single-shot output: encapsulated key || ciphertext.
	Sealed []byte
}

// Errors.
var (
	ErrWrongKey  = errors.New("envelope was sealed to a different key")
	ErrOpen      = errors.New("envelope does not open with this key and context (wrong record, grantee or purpose, or tampered)")
	ErrMalformed = errors.New("malformed key envelope")
)

// Wrap seals dataKey to the recipient public key, bound to info.
func Wrap(recipientPub []byte, dataKey []byte, info []byte) (*Envelope, error) {
	if len(dataKey) != KeySize {
		return nil, fmt.Errorf("data key must be %d bytes, got %d", KeySize, len(dataKey))
	}
	pk, err := kem.NewPublicKey(recipientPub)
	if err != nil {
		return nil, fmt.Errorf("recipient public key: %w", err)
	}
	sealed, err := hpke.Seal(pk, kdf, aead, info, dataKey)
	if err != nil {
		return nil, fmt.Errorf("hpke seal: %w", err)
	}
	return &Envelope{KeyID: IDOf(recipientPub), Sealed: sealed}, nil
}

// Unwrap opens an envelope with the recipient's private key and the same info
// it was wrapped with.
func Unwrap(priv *PrivateKey, env *Envelope, info []byte) ([]byte, error) {
	if env == nil {
		return nil, ErrMalformed
	}
	if env.KeyID != priv.ID() {
		return nil, ErrWrongKey
	}
	key, err := hpke.Open(priv.k, kdf, aead, info, env.Sealed)
	if err != nil {
		return nil, ErrOpen
	}
	if len(key) != KeySize {
		return nil, ErrOpen
	}
	return key, nil
}

// Binary encoding: magic "MMKW" | version 1 | KEM id (2) | KDF id (2) |
// AEAD id (2) | key id (32) | len (4, big endian) | sealed.
var magic = []byte("MMKW")

const (
	version       = 1
	headerLen     = 4 + 1 + 6 + 32 + 4
	maxSealedSize = 4096 // ML-KEM-768+X25519 enc is 1120 bytes; the sealed key 48
)

// MarshalBinary encodes the envelope.
func (e *Envelope) MarshalBinary() ([]byte, error) {
	var b bytes.Buffer
	b.Write(magic)
	b.WriteByte(version)
	binary.Write(&b, binary.BigEndian, kem.ID())
	binary.Write(&b, binary.BigEndian, kdf.ID())
	binary.Write(&b, binary.BigEndian, aead.ID())
	b.Write(e.KeyID[:])
	binary.Write(&b, binary.BigEndian, uint32(len(e.Sealed)))
	b.Write(e.Sealed)
	return b.Bytes(), nil
}

// UnmarshalBinary decodes an envelope strictly: unknown suites, wrong
// lengths and trailing bytes are errors.
func (e *Envelope) UnmarshalBinary(b []byte) error {
	if len(b) < headerLen || !bytes.Equal(b[:4], magic) {
		return ErrMalformed
	}
	if b[4] != version {
		return fmt.Errorf("%w: version %d", ErrMalformed, b[4])
	}
	if binary.BigEndian.Uint16(b[5:]) != kem.ID() || binary.BigEndian.Uint16(b[7:]) != kdf.ID() || binary.BigEndian.Uint16(b[9:]) != aead.ID() {
		return fmt.Errorf("%w: unsupported HPKE suite", ErrMalformed)
	}
	var id KeyID
	copy(id[:], b[11:43])
	n := binary.BigEndian.Uint32(b[43:47])
	if n == 0 || n > maxSealedSize || int(n) != len(b)-headerLen {
		return fmt.Errorf("%w: bad length", ErrMalformed)
	}
	e.KeyID = id
	e.Sealed = append([]byte(nil), b[headerLen:]...)
	return nil
}

// Info builds the HPKE info string that binds an envelope to its use. Each
// part is length-prefixed so no two different tuples give the same bytes.
func Info(parts ...string) []byte {
	b := []byte("medmesh keywrap v1")
	for _, p := range parts {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}
