package repo

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInitOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node")
	r, err := Init(dir, InitOptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"}, API: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(dir)
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("repo dir mode %v, want 0700", st.Mode().Perm())
	}
	for _, f := range []string{IdentityFile, KEMFile, TokenFile, ConfigFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	if _, err := Init(dir, InitOptions{}); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("second init: %v", err)
	}
	r2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := r.PeerID()
	id2, err := r2.PeerID()
	if err != nil || id1 != id2 {
		t.Fatalf("peer id changed: %v", err)
	}
	k, err := r2.KEMKey()
	if err != nil || len(k.Public()) == 0 {
		t.Fatalf("kem key: %v", err)
	}
	if tok, err := r2.Token(); err != nil || len(tok) != 64 {
		t.Fatalf("token %q: %v", tok, err)
	}
	// A key file readable by others is refused.
	os.Chmod(filepath.Join(dir, IdentityFile), 0o644)
	if _, err := r2.Identity(); err == nil {
		t.Fatal("world-readable identity accepted")
	}
}

func TestOpenMissing(t *testing.T) {
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "medmesh init") {
		t.Fatalf("got %v", err)
	}
}

func TestAPIMustBeLoopback(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:5101", "[::1]:0", "localhost:80"} {
		if err := ValidateAPIAddr(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:5101", "10.0.0.1:80", "example.org:80", "127.0.0.1", ":5101"} {
		if err := ValidateAPIAddr(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if _, err := Init(filepath.Join(t.TempDir(), "x"), InitOptions{API: "0.0.0.0:1"}); err == nil {
		t.Fatal("init accepted a public API address")
	}
}

func TestNetwork(t *testing.T) {
	r, _ := Init(filepath.Join(t.TempDir(), "n"), InitOptions{})
	if _, err := r.Network(); err != ErrNoNetwork {
		t.Fatalf("got %v", err)
	}
	psk, _ := NewPSK()
	if err := r.SetNetwork(&Network{Genesis: []byte("g1"), PSK: psk}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetNetwork(&Network{Genesis: []byte("g2"), PSK: psk}); err == nil {
		t.Fatal("joined a second network")
	}
	n, err := r.Network()
	if err != nil || !bytes.Equal(n.PSK, psk) {
		t.Fatal(err)
	}
}

const samplePeer = "12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf"
