package keys

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/medmesh/medmesh/node/repo"
	"github.com/medmesh/medmesh/sharing/keywrap"
)

// A rotation keeps the previous key (0600) before it replaces kem.key; the
// keyring loads both; a destroyed key is gone from the repo.
func TestRotationFiles(t *testing.T) {
	r, err := repo.Init(filepath.Join(t.TempDir(), "n"), repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ring, err := LoadKeyring(r)
	if err != nil {
		t.Fatal(err)
	}
	prev := ring.Current()
	next, _ := keywrap.Generate()
	if err := saveRotation(r, prev, next); err != nil {
		t.Fatal(err)
	}
	ring, err = LoadKeyring(r)
	if err != nil {
		t.Fatal(err)
	}
	if ring.Current().ID() != next.ID() || len(ring.Old()) != 1 || ring.Old()[0] != prev.ID() {
		t.Fatal("the keyring does not load the rotation")
	}
	p := r.Path(oldKeyFile(prev.ID()))
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("previous key file: %v %v", err, st)
	}
	// A previous key readable by others is refused.
	os.Chmod(p, 0o644)
	if _, err := LoadKeyring(r); err == nil {
		t.Fatal("a world-readable previous key was loaded")
	}
	os.Chmod(p, 0o600)
	if err := markDestroy(r, prev.ID()); err != nil || !marked(r, prev.ID()) {
		t.Fatal("mark")
	}
	if err := destroyFile(r, prev.ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) || marked(r, prev.ID()) {
		t.Fatal("the destroyed key (or its mark) is still there")
	}
	ring, _ = LoadKeyring(r)
	if len(ring.Old()) != 0 {
		t.Fatal("a destroyed key came back")
	}
}
