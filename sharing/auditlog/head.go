package auditlog

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/mod/sumdb/note"
)

// OriginPrefix starts a tree head's origin line; the owner's peer ID
// follows.
const OriginPrefix = "medmesh-audit/"

// maxHeadSize bounds a tree head note (origin, size, root, time, one
// signature: a few hundred bytes).
const maxHeadSize = 2048

// TreeHead is a signed tree head: the owner's log had Size leaves with
// root Root at Time.
type TreeHead struct {
	Owner peer.ID
	Size  int64
	Root  Hash
	Time  time.Time
}

// Text is the head's checkpoint body (C2SP tlog-checkpoint): origin, size,
// base64 root, then a "time" extension line.
func (h TreeHead) Text() string {
	return fmt.Sprintf("%s%s\n%d\n%s\ntime %s\n", OriginPrefix, h.Owner, h.Size,
		base64.StdEncoding.EncodeToString(h.Root[:]), h.Time.UTC().Format(time.RFC3339Nano))
}

// identitySigner signs notes with a node's libp2p Ed25519 identity.
type identitySigner struct {
	name string
	hash uint32
	key  crypto.PrivKey
}

func (s identitySigner) Name() string                    { return s.name }
func (s identitySigner) KeyHash() uint32                 { return s.hash }
func (s identitySigner) Sign(msg []byte) ([]byte, error) { return s.key.Sign(msg) }

// noteKeyHash is note's key hash: the first four bytes of
// SHA-256(name "\n" 0x01 || public key).
func noteKeyHash(name string, pub []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write(append([]byte{1}, pub...))
	return binary.BigEndian.Uint32(h.Sum(nil)[:4])
}

// Sign signs h with the owner's identity key, which must be the key of
// h.Owner.
func Sign(h TreeHead, key crypto.PrivKey) ([]byte, error) {
	if key.Type() != crypto.Ed25519 {
		return nil, errors.New("audit log: tree heads are signed with an Ed25519 identity")
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if id != h.Owner {
		return nil, fmt.Errorf("audit log: the key is %s's, the head %s's", id, h.Owner)
	}
	pub, err := key.GetPublic().Raw()
	if err != nil {
		return nil, err
	}
	name := OriginPrefix + h.Owner.String()
	return note.Sign(&note.Note{Text: h.Text()}, identitySigner{name: name, hash: noteKeyHash(name, pub), key: key})
}

// Errors of verification: ErrMalformed for what cannot be read (exit 2
// in the CLI), ErrVerify for what was read and does not verify (exit 8).
var (
	ErrMalformed = errors.New("malformed")
	ErrVerify    = errors.New("verification failed")
)

// OpenHead parses a signed tree head and checks its signature against
// the key of the owner it names. If owner is not empty, the head must be
// that owner's.
func OpenHead(msg []byte, owner peer.ID) (TreeHead, error) {
	var h TreeHead
	if len(msg) > maxHeadSize {
		return h, fmt.Errorf("%w: a tree head of %d bytes (at most %d)", ErrMalformed, len(msg), maxHeadSize)
	}
	origin, _, _ := strings.Cut(string(msg), "\n")
	ids, ok := strings.CutPrefix(origin, OriginPrefix)
	if !ok {
		return h, fmt.Errorf("%w: not a medmesh audit tree head (origin %q)", ErrMalformed, origin)
	}
	id, err := peer.Decode(ids)
	if err != nil {
		return h, fmt.Errorf("%w: tree head origin: %v", ErrMalformed, err)
	}
	if owner != "" && id != owner {
		return h, fmt.Errorf("%w: the tree head is %s's log, not %s's", ErrVerify, id, owner)
	}
	pk, err := id.ExtractPublicKey()
	if err != nil || pk.Type() != crypto.Ed25519 {
		return h, fmt.Errorf("%w: the owner %s has no Ed25519 key in its peer ID", ErrMalformed, id)
	}
	raw, _ := pk.Raw()
	vkey, err := note.NewEd25519VerifierKey(origin, ed25519.PublicKey(raw))
	if err != nil {
		return h, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return h, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		if errors.As(err, &unverified) || errors.As(err, &invalid) {
			return h, fmt.Errorf("%w: the tree head's signature is not %s's: %v", ErrVerify, id, err)
		}
		return h, fmt.Errorf("%w: tree head: %v", ErrMalformed, err)
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[3], "time ") {
		return h, fmt.Errorf("%w: a tree head has four lines (origin, size, root, time)", ErrMalformed)
	}
	h.Owner = id
	if h.Size, err = strconv.ParseInt(lines[1], 10, 64); err != nil || h.Size < 0 || lines[1] != strconv.FormatInt(h.Size, 10) {
		return h, fmt.Errorf("%w: tree head size %q", ErrMalformed, lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != len(h.Root) {
		return h, fmt.Errorf("%w: tree head root %q", ErrMalformed, lines[2])
	}
	copy(h.Root[:], root)
	if h.Time, err = time.Parse(time.RFC3339Nano, strings.TrimPrefix(lines[3], "time ")); err != nil {
		return h, fmt.Errorf("%w: tree head time: %v", ErrMalformed, err)
	}
	return h, nil
}
