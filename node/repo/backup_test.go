package repo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestBackupRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n")
	r, err := Init(dir, InitOptions{Org: "St Mary"})
	if err != nil {
		t.Fatal(err)
	}
	// Network files, a feature's key, and what a backup leaves out.
	if err := r.SetNetwork(&Network{Genesis: []byte("genesis"), PSK: bytes.Repeat([]byte{7}, PSKSize)}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(r.Path("dicom-project.key"), bytes.Repeat([]byte{1}, 32), 0o600)
	os.WriteFile(r.Path("implant.key"), bytes.Repeat([]byte{2}, 32), 0o600)
	os.WriteFile(r.Path(APIFile), []byte("127.0.0.1:1\n"), 0o600)
	os.WriteFile(r.Path(".stow-123"), []byte("staged instance"), 0o600)
	names, err := r.BackupFiles()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{ConfigFile, "dicom-project.key", IdentityFile, "implant.key", KEMFile, GenesisFile, PSKFile}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("backup files %v, want %v", names, want)
	}
	st := &NodeState{Rows: []BackupRow{{Key: "/medmesh/implants/local/abc", Value: []byte("sealed")}}, Peers: map[string][]string{"12D3KooWx": {"/ip4/127.0.0.1/tcp/1"}}}
	var buf bytes.Buffer
	if _, err := r.WriteBackup(&buf, "short", st, "test", time.Now()); err == nil {
		t.Fatal("a short passphrase was accepted")
	}
	pass := "correct horse battery staple"
	m, err := r.WriteBackup(&buf, pass, st, "test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ident, _ := os.ReadFile(r.Path(IdentityFile))
	if bytes.Contains(buf.Bytes(), ident) || bytes.Contains(buf.Bytes(), []byte("sealed")) {
		t.Fatal("the backup holds a secret in clear")
	}
	backup := buf.Bytes()

	if _, _, err := ReadBackup(bytes.NewReader(backup), "wrong horse battery staple"); !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	damaged := slices.Clone(backup)
	damaged[len(damaged)-20] ^= 1
	if _, _, err := ReadBackup(bytes.NewReader(damaged), pass); !errors.Is(err, ErrBadBackup) {
		t.Fatalf("damaged: %v", err)
	}

	dst := filepath.Join(t.TempDir(), "restored")
	got, err := Restore(bytes.NewReader(backup), pass, dst, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got.Peer != m.Peer || len(got.Rows) != 1 {
		t.Fatalf("restored manifest %+v", got)
	}
	r2, err := Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := r.PeerID()
	id2, _ := r2.PeerID()
	tok1, _ := r.Token()
	tok2, _ := r2.Token()
	if id1 != id2 || tok1 == tok2 || r2.Config.Org != "St Mary" {
		t.Fatalf("restored: peer %s (want %s), token changed %v, org %q", id2, id1, tok1 != tok2, r2.Config.Org)
	}
	for _, n := range want {
		a, _ := os.ReadFile(r.Path(n))
		b, _ := os.ReadFile(r2.Path(n))
		fi, _ := os.Stat(r2.Path(n))
		if !bytes.Equal(a, b) || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s differs, or mode %v", n, fi.Mode().Perm())
		}
	}
	if _, err := os.Stat(r2.Path(".stow-123")); err == nil {
		t.Error("a staging file was restored")
	}
	rs, err := r2.Restoring()
	if err != nil || rs == nil || len(rs.Peers) != 1 {
		t.Fatalf("restore state %+v %v", rs, err)
	}
	ns, err := r2.OfflineState(context.Background())
	if err != nil || len(ns.Rows) != 1 || string(ns.Rows[0].Value) != "sealed" {
		t.Fatalf("restored rows %+v %v", ns, err)
	}
	// Never over an existing repo.
	if _, err := Restore(bytes.NewReader(backup), pass, dst, time.Now()); !errors.Is(err, ErrRepoExists) {
		t.Fatalf("restore over a repo: %v", err)
	}
	if err := r2.RestoreDone(); err != nil {
		t.Fatal(err)
	}
	if rs, _ := r2.Restoring(); rs != nil {
		t.Fatal("restore state after RestoreDone")
	}
}
