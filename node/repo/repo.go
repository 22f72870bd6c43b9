// Package repo manages a node's repository directory: its configuration, its
// private keys, the API token and the datastore.
//
// Layout of a repo (the directory itself is 0700, every secret file 0600):
//
//	config.json      settings: addresses, bootstrap peers, replication, storage (settings.go)
//	identity.key     libp2p Ed25519 private key (protobuf, as libp2p marshals it)
//	kem.key          HPKE ML-KEM-768+X25519 private key (key wrapping)
//	kem.<id>.key     a previous key-wrapping key kept after `keys rotate` until
//	                 nothing needs it (node/keys); .destroy beside it: to be destroyed
//	api.token        bearer token for the HTTP API
//	implant.key      node-local implant key (node/implants): keys the patient
//	                 pseudonyms of its implantations and seals their local records;
//	                 created by the daemon on first start; back it up with the repo
//	network/         genesis.cbor (the ledger's first entry), psk (pre-shared key),
//	                 keys (the pre-shared key schedule after rotations) and
//	                 invitation (until the daemon redeemed it): node/membership
//	datastore/       badger: blocks, ledger state, indexes, wrapped data keys
//	api              written by a running daemon: its actual API address
//	repo.lock        flock-ed by the running daemon (holds its pid): one daemon per repo
//	restore.json     left by `medmesh restore` until the daemon has caught up (backup.go)
//
// Private keys never leave the repo: nothing in this package sends them
// anywhere, and they are read only by the daemon of the same repo.
package repo

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/medmesh/medmesh/internal/atomicfile"
	"os"
	"path/filepath"
	"strings"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/sharing/keywrap"
)

// File names inside a repo.
const (
	ConfigFile   = "config.json"
	IdentityFile = "identity.key"
	KEMFile      = "kem.key"
	TokenFile    = "api.token"
	APIFile      = "api"
	NetworkDir   = "network"
	GenesisFile  = "network/genesis.cbor"
	PSKFile      = "network/psk"
	DatastoreDir = "datastore"
	// ScratchDir holds the ledger's replays while they run (a scope
	// checkpoint's draft): a badger database each, deleted when done and
	// when the daemon starts. Not backed up.
	ScratchDir = "scratch"
	// CheckpointDir holds the state blocks of the latest checkpoint of
	// each ledger scope this node keeps, a file each (dropping an older
	// checkpoint's is then an unlink, not value-log garbage in the
	// datastore). Not backed up: a restored node fetches or drafts them
	// again.
	CheckpointDir = "checkpoints"
)

// Defaults for a new repo.
const (
	DefaultListen            = "/ip4/0.0.0.0/tcp/4101"
	DefaultAPI               = "127.0.0.1:5101"
	DefaultReplicationFactor = 3
)

// EnvRepo names the environment variable that selects the repo.
const EnvRepo = "MEDMESH_REPO"

// Repo is an opened repository.
type Repo struct {
	Dir    string
	Config Config
}

// ErrNoRepo means the directory holds no medmesh repo.
var ErrNoRepo = errors.New("no medmesh repo")

// ErrRepoExists means Init found a repo (or other files) where it was asked
// to create one.
var ErrRepoExists = errors.New("refusing to initialise a repo")

// DefaultDir resolves --repo: the flag, then $MEDMESH_REPO, then ~/.medmesh.
func DefaultDir(flag string) string {
	if flag != "" {
		return flag
	}
	if d := os.Getenv(EnvRepo); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".medmesh"
	}
	return filepath.Join(home, ".medmesh")
}

// InitOptions configure Init.
type InitOptions struct {
	Listen []string
	API    string
	Org    string
}

// Init creates a new repo in dir. It refuses to touch a directory that
// already holds one (or any file), so an existing identity is never lost.
func Init(dir string, o InitOptions) (*Repo, error) {
	if _, err := os.Stat(filepath.Join(dir, ConfigFile)); err == nil {
		return nil, fmt.Errorf("%w: %s already holds a medmesh repo; refusing to overwrite it (choose another --repo)", ErrRepoExists, dir)
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%w: %s exists and is not empty (choose another --repo)", ErrRepoExists, dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create repo: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	cfg := DefaultConfig()
	if len(o.Listen) > 0 {
		cfg.Listen = o.Listen
	}
	if o.API != "" {
		cfg.API = o.API
	}
	cfg.Org = o.Org
	for _, s := range []struct{ key, val string }{{"addresses.listen", strings.Join(cfg.Listen, ",")}, {"addresses.api", cfg.API}, {"org", cfg.Org}} {
		st, _ := lookup(s.key)
		if err := st.Set(&cfg, []string{s.val}); err != nil {
			return nil, err
		}
	}
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	privBytes, err := crypto.MarshalPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	kem, err := keywrap.Generate()
	if err != nil {
		return nil, err
	}
	kemBytes, err := kem.Bytes()
	if err != nil {
		return nil, err
	}
	token := make([]byte, 32)
	if _, err := rand.Read(token); err != nil {
		return nil, err
	}
	r := &Repo{Dir: dir, Config: cfg}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{IdentityFile, privBytes},
		{KEMFile, kemBytes},
		{TokenFile, []byte(hex.EncodeToString(token) + "\n")},
	} {
		if err := atomicfile.WriteBytes(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, NetworkDir), 0o700); err != nil {
		return nil, err
	}
	// The config is written last: its presence marks a complete repo.
	if err := r.SaveConfig(); err != nil {
		return nil, err
	}
	return r, nil
}

// Open opens an existing repo.
func Open(dir string) (*Repo, error) {
	cfg, err := readConfig(dir)
	if err != nil {
		return nil, err
	}
	return &Repo{Dir: dir, Config: cfg}, nil
}

// SaveConfig writes config.json atomically.
func (r *Repo) SaveConfig() error { return writeConfig(r.Dir, r.Config) }

// Path joins name onto the repo directory.
func (r *Repo) Path(name string) string { return filepath.Join(r.Dir, name) }

// Identity loads the libp2p private key.
func (r *Repo) Identity() (crypto.PrivKey, error) {
	b, err := readSecret(r.Path(IdentityFile))
	if err != nil {
		return nil, err
	}
	k, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", IdentityFile, err)
	}
	return k, nil
}

// PeerID returns this node's peer ID.
func (r *Repo) PeerID() (peer.ID, error) {
	k, err := r.Identity()
	if err != nil {
		return "", err
	}
	return peer.IDFromPrivateKey(k)
}

// KEMKey loads the HPKE private key.
func (r *Repo) KEMKey() (*keywrap.PrivateKey, error) {
	b, err := readSecret(r.Path(KEMFile))
	if err != nil {
		return nil, err
	}
	return keywrap.ParsePrivateKey(b)
}

// Token returns the API bearer token.
func (r *Repo) Token() (string, error) {
	b, err := readSecret(r.Path(TokenFile))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// readSecret reads a key file and refuses one that others can read: a key
// that leaked through permissions is a key that must be rotated.
func readSecret(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %v: secrets must be readable by the owner only (chmod 600 %s)", path, st.Mode().Perm(), path)
	}
	return os.ReadFile(path)
}
