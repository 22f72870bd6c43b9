package access

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/strictcbor"
	"github.com/medmesh/medmesh/sharing/keywrap"
)

// A Label is what a grant tells its grantee about the record before any
// read: the record's name and media type, from its manifest. It travels
// sealed on the grant (ledger.GrantPayload.Label) under a key derived from
// the record's data key, so only a holder of that key — the owner and the
// record's grantees, who may read the manifest anyway — opens it, and the
// grantee's node shows what was shared with it without fetching the
// manifest (which is a read, claimed and attested in the owner's audit).
type Label struct {
	Name      string `cbor:"1,keyasint"`
	MediaType string `cbor:"2,keyasint,omitempty"`
}

// Bounds of what a label carries: longer names and media types are cut
// (at a rune boundary) when sealed, so a sealed label stays well under
// ledger.MaxGrantLabel.
const (
	MaxLabelName      = 512
	MaxLabelMediaType = 128
)

// labelVersion is the first byte of a sealed label.
const labelVersion = 1

var labelDec = strictcbor.Dec(strictcbor.Limits{Nesting: 4, Array: 16, Map: 16})

// ErrLabel is returned by OpenLabel for a label that does not open: sealed
// for another record, grantee or purpose, under another key, or damaged.
var ErrLabel = errors.New("grant label does not open")

// labelAEAD is AES-256-GCM under a key derived from the record's data key
// (HKDF-SHA256): the data key itself seals the record's chunks under
// deterministic nonces and is never used with random ones.
func labelAEAD(dataKey []byte) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, dataKey, nil, "medmesh grant label v1", 32)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// labelAD binds a sealed label to its grant: record, grantee, purpose.
func labelAD(record cid.Cid, grantee peer.ID, purpose string) []byte {
	return keywrap.Info("grant-label", record.String(), grantee.String(), purpose)
}

// SealLabel seals l for the grant of record to grantee for purpose under
// the record's data key.
func SealLabel(dataKey []byte, record cid.Cid, grantee peer.ID, purpose string, l Label) ([]byte, error) {
	l.Name, l.MediaType = cut(l.Name, MaxLabelName), cut(l.MediaType, MaxLabelMediaType)
	pt, err := strictcbor.Enc.Marshal(l)
	if err != nil {
		return nil, err
	}
	aead, err := labelAEAD(dataKey)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(pt)+aead.Overhead())
	out[0] = labelVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return aead.Seal(out, out[1:], pt, labelAD(record, grantee, purpose)), nil
}

// OpenLabel opens a label SealLabel sealed for the same record, grantee
// and purpose under the same data key.
func OpenLabel(dataKey []byte, record cid.Cid, grantee peer.ID, purpose string, sealed []byte) (Label, error) {
	aead, err := labelAEAD(dataKey)
	if err != nil {
		return Label{}, err
	}
	if len(sealed) < 1+aead.NonceSize()+aead.Overhead() || sealed[0] != labelVersion {
		return Label{}, fmt.Errorf("%w: malformed", ErrLabel)
	}
	nonce, ct := sealed[1:1+aead.NonceSize()], sealed[1+aead.NonceSize():]
	pt, err := aead.Open(nil, nonce, ct, labelAD(record, grantee, purpose))
	if err != nil {
		return Label{}, ErrLabel
	}
	return decodeLabel(pt)
}

// decodeLabel decodes an opened label's plaintext.
func decodeLabel(pt []byte) (Label, error) {
	var l Label
	if err := labelDec.Unmarshal(pt, &l); err != nil {
		return Label{}, fmt.Errorf("%w: %v", ErrLabel, err)
	}
	return l, nil
}

// cut shortens s to at most n bytes at a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
