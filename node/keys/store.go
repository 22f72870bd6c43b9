package keys

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/medmesh/medmesh/internal/atomicfile"
	"github.com/medmesh/medmesh/node/repo"
	"github.com/medmesh/medmesh/sharing/keywrap"
)

// In the repo, beside kem.key (the current key-wrapping key):
//
//	kem.<key id, 16 hex>.key          a previous key, kept after a rotation (0600)
//	kem.<key id, 16 hex>.key.destroy  it is to be destroyed once nothing needs it
//
// A rotation writes the previous key's file before it replaces kem.key, so
// a crash between the two loses no key.

const (
	oldPrefix     = "kem."
	oldSuffix     = ".key"
	destroySuffix = ".destroy"
)

func shortID(id keywrap.KeyID) string { return hex.EncodeToString(id[:8]) }

func oldKeyFile(id keywrap.KeyID) string { return oldPrefix + shortID(id) + oldSuffix }

// LoadKeyring reads the repo's current key-wrapping key and the previous
// ones it keeps.
func LoadKeyring(r *repo.Repo) (*keywrap.Keyring, error) {
	cur, err := r.KEMKey()
	if err != nil {
		return nil, err
	}
	paths, err := filepath.Glob(filepath.Join(r.Dir, oldPrefix+"*"+oldSuffix))
	if err != nil {
		return nil, err
	}
	var old []*keywrap.PrivateKey
	for _, p := range paths {
		if filepath.Base(p) == repo.KEMFile {
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("%s has mode %v: secrets must be readable by the owner only (chmod 600 %s)", p, st.Mode().Perm(), p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		k, err := keywrap.ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		old = append(old, k)
	}
	return keywrap.NewKeyring(cur, old...), nil
}

// saveRotation keeps prev as a previous key, then makes next the repo's
// current key.
func saveRotation(r *repo.Repo, prev, next *keywrap.PrivateKey) error {
	pb, err := prev.Bytes()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(r.Path(oldKeyFile(prev.ID())), pb, 0o600); err != nil {
		return fmt.Errorf("keep the previous key: %w", err)
	}
	nb, err := next.Bytes()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(r.Path(repo.KEMFile), nb, 0o600); err != nil {
		return fmt.Errorf("write the new key: %w", err)
	}
	return nil
}

// markDestroy records that a previous key is to be destroyed.
func markDestroy(r *repo.Repo, id keywrap.KeyID) error {
	return atomicfile.WriteBytes(r.Path(oldKeyFile(id)+destroySuffix), nil, 0o600)
}

func marked(r *repo.Repo, id keywrap.KeyID) bool {
	_, err := os.Stat(r.Path(oldKeyFile(id) + destroySuffix))
	return err == nil
}

// destroyFile removes a previous key's file (and its mark).
func destroyFile(r *repo.Repo, id keywrap.KeyID) error {
	p := r.Path(oldKeyFile(id))
	// Overwrite before removing: the filesystem may still keep the
	// blocks, but not a plain copy in the file's last place.
	if st, err := os.Stat(p); err == nil {
		if err := os.WriteFile(p, make([]byte, st.Size()), 0o600); err != nil {
			return err
		}
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Remove(p + destroySuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
