package repo

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/medmesh/medmesh/internal/atomicfile"
	"io/fs"
	"net"
	"os"
	"strings"

	"github.com/medmesh/medmesh/internal/strictcbor"
	"github.com/multiformats/go-multiaddr"
)

// ValidateAPIAddr accepts only loopback host:port addresses: the API carries
// plaintext records and must never be reachable from the network.
func ValidateAPIAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("API address %q: %w (want HOST:PORT, e.g. 127.0.0.1:5101)", addr, err)
	}
	if port == "" {
		return fmt.Errorf("API address %q has no port", addr)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("API address %q is not a loopback address: the API must listen on 127.0.0.1 or ::1 only", addr)
	}
	return nil
}

// PSKSize is the size of the network's pre-shared key.
const PSKSize = 32

// Network is what a node knows of the network it belongs to.
type Network struct {
	Genesis []byte // the ledger's genesis entry
	PSK     []byte // 32 bytes
}

// ErrNoNetwork means the node has neither created nor joined a network.
var ErrNoNetwork = errors.New("this node belongs to no network yet: run `medmesh network create` (first node) or `medmesh network join TOKEN`")

// HasNetwork reports whether the repo has a network.
func (r *Repo) HasNetwork() bool {
	_, err := os.Stat(r.Path(GenesisFile))
	return err == nil
}

// Network loads the network genesis and pre-shared key.
func (r *Repo) Network() (*Network, error) {
	g, err := os.ReadFile(r.Path(GenesisFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoNetwork
	}
	if err != nil {
		return nil, err
	}
	psk, err := readSecret(r.Path(PSKFile))
	if err != nil {
		return nil, err
	}
	if len(psk) != PSKSize {
		return nil, fmt.Errorf("%s: pre-shared key must be %d bytes", PSKFile, PSKSize)
	}
	return &Network{Genesis: g, PSK: psk}, nil
}

// SetNetwork stores the network genesis and pre-shared key. It refuses to
// replace a different network: a node belongs to one network.
func (r *Repo) SetNetwork(n *Network) error {
	if len(n.PSK) != PSKSize {
		return fmt.Errorf("pre-shared key must be %d bytes", PSKSize)
	}
	if old, err := os.ReadFile(r.Path(GenesisFile)); err == nil && !bytes.Equal(old, n.Genesis) {
		return fmt.Errorf("this node already belongs to another network; use a new repo to join a different one")
	}
	if err := os.MkdirAll(r.Path(NetworkDir), 0o700); err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(r.Path(PSKFile), n.PSK, 0o600); err != nil {
		return err
	}
	return atomicfile.WriteBytes(r.Path(GenesisFile), n.Genesis, 0o600)
}

// NewPSK returns a fresh random pre-shared key.
func NewPSK() ([]byte, error) {
	k := make([]byte, PSKSize)
	_, err := rand.Read(k)
	return k, err
}

// Invite is what an admin hands to a new member, out of band, as a token.
// It is a secret: it carries the network's pre-shared key.
type Invite struct {
	Genesis []byte   `cbor:"1,keyasint"`
	PSK     []byte   `cbor:"2,keyasint"`
	Addrs   []string `cbor:"3,keyasint"` // the inviter's dialable multiaddrs, with /p2p/
}

// InvitePrefix starts every invite token, so a pasted token is recognisable.
const InvitePrefix = "medmesh-invite-1:"

const maxInviteLen = 64 << 10

var (
	inviteEnc = strictcbor.Enc
	inviteDec = strictcbor.Dec(strictcbor.Limits{Nesting: 4, Array: 64, Map: 16})
)

// Encode renders the invite as a one-line token.
func (i *Invite) Encode() (string, error) {
	b, err := inviteEnc.Marshal(i)
	if err != nil {
		return "", err
	}
	return InvitePrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// ErrBadInvite is returned for a token that is not a valid invite.
var ErrBadInvite = errors.New("not a valid medmesh invite token (copy the whole last line `medmesh network invite` printed)")

// DecodeInvite parses a token strictly.
func DecodeInvite(tok string) (*Invite, error) {
	tok = strings.TrimSpace(tok)
	if !strings.HasPrefix(tok, InvitePrefix) || len(tok) > maxInviteLen {
		return nil, ErrBadInvite
	}
	b, err := base64.RawURLEncoding.DecodeString(tok[len(InvitePrefix):])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadInvite, err)
	}
	var inv Invite
	if err := inviteDec.Unmarshal(b, &inv); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadInvite, err)
	}
	if len(inv.PSK) != PSKSize {
		return nil, fmt.Errorf("%w: pre-shared key has %d bytes", ErrBadInvite, len(inv.PSK))
	}
	if len(inv.Genesis) == 0 {
		return nil, fmt.Errorf("%w: no network genesis", ErrBadInvite)
	}
	if len(inv.Addrs) == 0 {
		return nil, fmt.Errorf("%w: no inviter address to dial", ErrBadInvite)
	}
	for _, a := range inv.Addrs {
		ma, err := multiaddr.NewMultiaddr(a)
		if err != nil {
			return nil, fmt.Errorf("%w: address %q: %v", ErrBadInvite, a, err)
		}
		if _, err := ma.ValueForProtocol(multiaddr.P_P2P); err != nil {
			return nil, fmt.Errorf("%w: address %q has no /p2p/ peer ID", ErrBadInvite, a)
		}
	}
	return &inv, nil
}
