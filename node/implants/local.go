package implants

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"

	"github.com/medmesh/medmesh/internal/atomicfile"
	"github.com/medmesh/medmesh/internal/strictcbor"
)

// KeyFile is the node-local implant key in the repo: 32 random bytes, mode
// 0600, created on first use. The patient pseudonym key and the local
// store's key are derived from it; it never leaves the node.
const KeyFile = "implant.key"

// localPrefix is where the local store keeps one sealed row per device
// this node implanted.
const localPrefix = "/medmesh/implants/local/"

// loadKey reads the repo's implant key, creating it if absent.
func loadKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, KeyFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		if err := atomicfile.WriteBytes(path, k, 0o600); err != nil {
			return nil, fmt.Errorf("implants: create key %s: %w", path, err)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("implants: key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("implants: key %s has mode %v: it must be readable by its owner only (chmod 600 %s)", path, st.Mode().Perm(), path)
	}
	k, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("implants: key: %w", err)
	}
	if len(k) != 32 {
		return nil, fmt.Errorf("implants: key %s holds %d bytes, not 32: restore it from a backup (without it, this node cannot name the patients of its implants)", path, len(k))
	}
	return k, nil
}

func derive(k []byte, label string) []byte {
	m := hmac.New(sha256.New, k)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// localRow is what the hospital keeps about one implantation: the local
// patient ID and the procedure text (sealed; never on the ledger).
type localRow struct {
	Patient   string `cbor:"1,keyasint"`
	Procedure string `cbor:"2,keyasint"`
	Time      int64  `cbor:"3,keyasint"` // Unix ms, when it was recorded
}

// local is the encrypted local store: AES-256-GCM under a key derived from
// the implant key, the device ID bound as associated data so a row cannot
// be moved to another device.
type local struct {
	ds   datastore.Batching
	aead cipher.AEAD
}

func newLocal(ds datastore.Batching, key []byte) (*local, error) {
	b, err := aes.NewCipher(derive(key, "medmesh implant local store key v1"))
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &local{ds: ds, aead: g}, nil
}

var localDec = strictcbor.Dec(strictcbor.Limits{Nesting: 4, Array: 16, Map: 16})

func ad(device cid.Cid) []byte {
	return append([]byte("medmesh implant local v1\x00"), device.Bytes()...)
}

func (l *local) put(ctx context.Context, device cid.Cid, r *localRow) error {
	pt, err := strictcbor.Enc.Marshal(r)
	if err != nil {
		return err
	}
	nonce := make([]byte, l.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	sealed := l.aead.Seal(nonce, nonce, pt, ad(device))
	if err := l.ds.Put(ctx, datastore.NewKey(localPrefix+device.String()), sealed); err != nil {
		return fmt.Errorf("implants: store the local record of device %s: %w", device, err)
	}
	return nil
}

// get returns the local row of a device; ok is false if there is none. A
// row that does not open is an error, never "none".
func (l *local) get(ctx context.Context, device cid.Cid) (*localRow, bool, error) {
	b, err := l.ds.Get(ctx, datastore.NewKey(localPrefix+device.String()))
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("implants: read the local record of device %s: %w", device, err)
	}
	r, err := l.open(device, b)
	return r, err == nil, err
}

func (l *local) open(device cid.Cid, b []byte) (*localRow, error) {
	n := l.aead.NonceSize()
	if len(b) < n {
		return nil, fmt.Errorf("implants: the local record of device %s is truncated", device)
	}
	pt, err := l.aead.Open(nil, b[:n], b[n:], ad(device))
	if err != nil {
		return nil, fmt.Errorf("implants: the local record of device %s does not open (wrong %s, or damaged): %w", device, KeyFile, err)
	}
	var r localRow
	if err := localDec.Unmarshal(pt, &r); err != nil {
		return nil, fmt.Errorf("implants: the local record of device %s does not decode: %w", device, err)
	}
	return &r, nil
}

func (l *local) delete(ctx context.Context, device cid.Cid) error {
	return l.ds.Delete(ctx, datastore.NewKey(localPrefix+device.String()))
}

// each calls fn with every local row.
func (l *local) each(ctx context.Context, fn func(device cid.Cid, r *localRow) error) error {
	res, err := l.ds.Query(ctx, dsq.Query{Prefix: localPrefix})
	if err != nil {
		return fmt.Errorf("implants: list the local records: %w", err)
	}
	defer res.Close()
	for e := range res.Next() {
		if e.Error != nil {
			return fmt.Errorf("implants: list the local records: %w", e.Error)
		}
		dev, err := cid.Decode(datastore.NewKey(e.Key).BaseNamespace())
		if err != nil {
			return fmt.Errorf("implants: local record key %s: %w", e.Key, err)
		}
		r, err := l.open(dev, e.Value)
		if err != nil {
			return err
		}
		if err := fn(dev, r); err != nil {
			return err
		}
	}
	return nil
}
