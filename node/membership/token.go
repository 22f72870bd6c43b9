package membership

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"filippo.io/edwards25519"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/medmesh/medmesh/internal/strictcbor"
	"github.com/medmesh/medmesh/node/repo"
)

// An invitation token is sealed to its invitee, as age seals a file to an
// ssh-ed25519 recipient: a peer ID carries the peer's Ed25519 public key,
// whose point converts to an X25519 public key (the birational map to the
// Montgomery curve); the peer's private key gives the matching X25519
// scalar (the clamped first half of SHA-512 of its seed, as Ed25519 itself
// derives it). The token is HPKE (RFC 9180: DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256, ChaCha20-Poly1305) to that key, its info binding the
// invitee's peer ID, so only the invited node opens it, and an eavesdropper
// on the channel that carries it learns nothing but the invitee's ID.
//
// Inside: the network's genesis and pre-shared key (with its epoch), the
// inviter's addresses, and the invitation's secret, which the invitee's
// daemon presents to the inviter once (the redeem protocol, redeem.go):
// the admission happens then, so an invitation is single-use and expires.

// TokenPrefix starts every invitation token.
const TokenPrefix = "medmesh-invite-2:"

// oldTokenPrefix is the prefix of the tokens before invitations were
// bound to their invitee (the bare network key): refused with a hint.
const oldTokenPrefix = "medmesh-invite-1:"

const maxTokenLen = 64 << 10

// SecretSize is the size of an invitation's secret.
const SecretSize = 16

var tokenSuite = struct {
	kdf  hpke.KDF
	aead hpke.AEAD
}{hpke.HKDFSHA256(), hpke.ChaCha20Poly1305()}

var (
	tokenEnc = strictcbor.Enc
	tokenDec = strictcbor.Dec(strictcbor.Limits{Nesting: 4, Array: 64, Map: 16})
)

// sealedToken is what the token's base64 encodes.
type sealedToken struct {
	Invitee []byte `cbor:"1,keyasint"` // peer ID bytes
	Sealed  []byte `cbor:"2,keyasint"` // HPKE enc || ciphertext of an Invitation
}

// Invitation is what a token carries to its invitee.
type Invitation struct {
	Genesis []byte   `cbor:"1,keyasint"`
	PSK     []byte   `cbor:"2,keyasint"`
	Epoch   uint64   `cbor:"3,keyasint"` // the PSK's epoch (0: the network's first)
	Addrs   []string `cbor:"4,keyasint"` // the inviter's dialable multiaddrs, with /p2p/
	Secret  []byte   `cbor:"5,keyasint"` // presented once to the inviter
	Expires int64    `cbor:"6,keyasint"` // unix ms
	Inviter []byte   `cbor:"7,keyasint"` // the inviter's peer ID
	Invitee []byte   `cbor:"8,keyasint"` // the invited peer ID (bound twice: here and in HPKE's info)
}

// ExpiresAt is when the invitation expires.
func (inv *Invitation) ExpiresAt() time.Time { return time.UnixMilli(inv.Expires).UTC() }

// InviterID is the inviter's peer ID.
func (inv *Invitation) InviterID() (peer.ID, error) { return peer.IDFromBytes(inv.Inviter) }

// Errors of opening a token. The CLI maps them to exit codes.
var (
	// ErrBadToken: not a token at all (exit 2).
	ErrBadToken = errors.New("not a valid medmesh invitation token (copy the whole last line `medmesh network invite` printed)")
	// ErrNotForThisNode: a token for another peer (exit 5).
	ErrNotForThisNode = errors.New("this invitation is for another node")
	// ErrExpired: an expired invitation (exit 6).
	ErrExpired = errors.New("this invitation has expired")
)

func tokenInfo(invitee peer.ID) []byte {
	return append([]byte("medmesh invitation v2\x00"), invitee...)
}

// x25519Public converts an Ed25519 public key to the X25519 public key of
// the same secret (filippo.io/edwards25519: the point is decoded and
// checked, then mapped to the Montgomery curve).
func x25519Public(pub crypto.PubKey) (*ecdh.PublicKey, error) {
	if pub.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("peer key is %v, not Ed25519", pub.Type())
	}
	raw, err := pub.Raw()
	if err != nil {
		return nil, err
	}
	pt, err := new(edwards25519.Point).SetBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("peer key is not a valid Ed25519 point: %w", err)
	}
	return ecdh.X25519().NewPublicKey(pt.BytesMontgomery())
}

// x25519Private derives the X25519 private key of an Ed25519 identity.
func x25519Private(priv crypto.PrivKey) (*ecdh.PrivateKey, error) {
	if priv.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("identity is %v, not Ed25519", priv.Type())
	}
	raw, err := priv.Raw()
	if err != nil {
		return nil, err
	}
	if len(raw) != ed25519.PrivateKeySize {
		return nil, errors.New("identity: bad Ed25519 private key size")
	}
	h := sha512.Sum512(ed25519.PrivateKey(raw).Seed())
	return ecdh.X25519().NewPrivateKey(h[:32])
}

// SealToken seals inv to invitee and renders the one-line token.
func SealToken(invitee peer.ID, inv *Invitation) (string, error) {
	pub, err := invitee.ExtractPublicKey()
	if err != nil {
		return "", fmt.Errorf("%s carries no public key: %w", invitee, err)
	}
	xpub, err := x25519Public(pub)
	if err != nil {
		return "", err
	}
	pk, err := hpke.NewDHKEMPublicKey(xpub)
	if err != nil {
		return "", err
	}
	inv.Invitee = []byte(invitee)
	body, err := tokenEnc.Marshal(inv)
	if err != nil {
		return "", err
	}
	sealed, err := hpke.Seal(pk, tokenSuite.kdf, tokenSuite.aead, tokenInfo(invitee), body)
	if err != nil {
		return "", fmt.Errorf("seal invitation: %w", err)
	}
	b, err := tokenEnc.Marshal(&sealedToken{Invitee: []byte(invitee), Sealed: sealed})
	if err != nil {
		return "", err
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// TokenInvitee parses a token and names the peer it is for, without
// opening it.
func TokenInvitee(tok string) (peer.ID, []byte, error) {
	tok = strings.TrimSpace(tok)
	if strings.HasPrefix(tok, oldTokenPrefix) {
		return "", nil, fmt.Errorf("%w: it is an old, unbound token (medmesh-invite-1); ask the admin for a new one with `medmesh network invite --peer ID`", ErrBadToken)
	}
	if !strings.HasPrefix(tok, TokenPrefix) || len(tok) > maxTokenLen {
		return "", nil, ErrBadToken
	}
	b, err := base64.RawURLEncoding.DecodeString(tok[len(TokenPrefix):])
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	var st sealedToken
	if err := tokenDec.Unmarshal(b, &st); err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	invitee, err := peer.IDFromBytes(st.Invitee)
	if err != nil {
		return "", nil, fmt.Errorf("%w: invitee: %v", ErrBadToken, err)
	}
	if len(st.Sealed) == 0 {
		return "", nil, fmt.Errorf("%w: empty", ErrBadToken)
	}
	return invitee, st.Sealed, nil
}

// OpenToken opens a token with this node's identity. A token for another
// peer fails with ErrNotForThisNode (it cannot be opened), an expired one
// (at now) with ErrExpired, anything malformed with ErrBadToken.
func OpenToken(tok string, identity crypto.PrivKey, now time.Time) (*Invitation, error) {
	invitee, sealed, err := TokenInvitee(tok)
	if err != nil {
		return nil, err
	}
	self, err := peer.IDFromPrivateKey(identity)
	if err != nil {
		return nil, err
	}
	if invitee != self {
		return nil, fmt.Errorf("%w: it is for %s, and this node is %s; the admin invites this node with `medmesh network invite --peer %s`", ErrNotForThisNode, invitee, self, self)
	}
	xpriv, err := x25519Private(identity)
	if err != nil {
		return nil, err
	}
	sk, err := hpke.NewDHKEMPrivateKey(xpriv)
	if err != nil {
		return nil, err
	}
	body, err := hpke.Open(sk, tokenSuite.kdf, tokenSuite.aead, tokenInfo(self), sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: it does not open with this node's key (tampered with, or for another node)", ErrNotForThisNode)
	}
	var inv Invitation
	if err := tokenDec.Unmarshal(body, &inv); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if err := inv.check(self); err != nil {
		return nil, err
	}
	if !now.Before(inv.ExpiresAt()) {
		return nil, fmt.Errorf("%w (at %s); ask the admin for a new one", ErrExpired, inv.ExpiresAt().Format(time.RFC3339))
	}
	return &inv, nil
}

func (inv *Invitation) check(self peer.ID) error {
	switch {
	case string(inv.Invitee) != string(self):
		return fmt.Errorf("%w: it names another invitee inside", ErrNotForThisNode)
	case len(inv.PSK) != repo.PSKSize:
		return fmt.Errorf("%w: pre-shared key has %d bytes", ErrBadToken, len(inv.PSK))
	case len(inv.Genesis) == 0:
		return fmt.Errorf("%w: no network genesis", ErrBadToken)
	case len(inv.Secret) != SecretSize:
		return fmt.Errorf("%w: bad secret", ErrBadToken)
	case len(inv.Addrs) == 0:
		return fmt.Errorf("%w: no inviter address to dial", ErrBadToken)
	}
	inviter, err := peer.IDFromBytes(inv.Inviter)
	if err != nil {
		return fmt.Errorf("%w: inviter: %v", ErrBadToken, err)
	}
	for _, a := range inv.Addrs {
		ai, err := peer.AddrInfoFromString(a)
		if err != nil {
			return fmt.Errorf("%w: address %q: %v", ErrBadToken, a, err)
		}
		if ai.ID != inviter {
			return fmt.Errorf("%w: address %q is not the inviter's", ErrBadToken, a)
		}
		if _, err := multiaddr.NewMultiaddr(a); err != nil {
			return fmt.Errorf("%w: address %q: %v", ErrBadToken, a, err)
		}
	}
	return nil
}
