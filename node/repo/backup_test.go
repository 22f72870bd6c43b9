package repo

import (
	"encoding/hex"
	"fmt"

	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	"github.com/medmesh/medmesh/sharing/auditlog"
	"github.com/medmesh/medmesh/storage/blockstore"
	"github.com/multiformats/go-multihash"
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
	if ns.AuditLog != nil {
		t.Fatalf("an audit log from nowhere: %+v", ns.AuditLog)
	}
	ns.Close()
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

// The owner's audit log travels in the backup, in its order: the restored
// log has the same root, and an audit log that does not make the tree the
// manifest names is refused with nothing left behind.
func TestBackupAuditLog(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "n")
	r, err := Init(dir, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	store, err := blockstore.Open(r.Path(DatastoreDir))
	if err != nil {
		t.Fatal(err)
	}
	ds := namespace.Wrap(store.DS, datastore.NewKey(AuditLogPrefix))
	l, err := auditlog.Open(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		data := []byte(fmt.Sprintf("claim %d", i))
		mh, _ := multihash.Sum(data, multihash.SHA2_256, -1)
		if _, err := l.Append(ctx, []auditlog.Leaf{{Data: data, Entry: cid.NewCidV1(cid.Raw, mh), Record: cid.NewCidV1(cid.Raw, mh)}}); err != nil {
			t.Fatal(err)
		}
	}
	root, _ := l.Root(ctx, 300)
	store.Close()

	st, err := r.OfflineState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.AuditLog == nil || st.AuditLog.TreeSize != 300 || st.AuditLog.Root != hex.EncodeToString(root[:]) {
		t.Fatalf("audit log in the state: %+v", st.AuditLog)
	}
	if _, err := r.Lock(); err == nil {
		t.Fatal("the repo is not locked while the state is open")
	}
	pass := "correct horse battery staple"
	var good, bad bytes.Buffer
	if _, err := r.WriteBackup(&good, pass, st, "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(good.Bytes(), []byte("claim 7")) {
		t.Fatal("the audit log is in clear")
	}
	other, _ := l.Root(ctx, 299)
	st.AuditLog.Root = hex.EncodeToString(other[:])
	if _, err := r.WriteBackup(&bad, pass, st, "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	st.Close()

	dst := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(bytes.NewReader(bad.Bytes()), pass, dst, time.Now()); !errors.Is(err, ErrBadBackup) {
		t.Fatalf("an audit log of another tree: %v", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatal("a refused restore left a repo")
	}
	m, err := Restore(bytes.NewReader(good.Bytes()), pass, dst, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if m.AuditLog == nil || m.AuditLog.TreeSize != 300 {
		t.Fatalf("manifest audit log %+v", m.AuditLog)
	}
	store2, err := blockstore.Open(filepath.Join(dst, DatastoreDir))
	if err != nil {
		t.Fatal(err)
	}
	defer store2.Close()
	l2, err := auditlog.Open(ctx, namespace.Wrap(store2.DS, datastore.NewKey(AuditLogPrefix)))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := l2.Root(ctx, 300); l2.Size() != 300 || got != root {
		t.Fatalf("restored log: %d leaves, root %x; want 300, %x", l2.Size(), got[:4], root[:4])
	}
}
