package repo

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/medmesh/medmesh/internal/atomicfile"
	"io/fs"
	"net"
	"os"
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
