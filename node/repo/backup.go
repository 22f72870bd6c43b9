package repo

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/internal/atomicfile"
	"github.com/medmesh/medmesh/sharing/auditlog"
	"github.com/medmesh/medmesh/storage/blockstore"
)

// A backup is what a node needs to come back, and nothing the network can
// give back: its keys and settings, and the few datastore rows no other
// node holds. It is a tar archive encrypted with age to a passphrase
// (scrypt): `age -d backup.age | tar t` lists it, given the passphrase.
//
//	medmesh-backup.json   BackupManifest: peer, time, files with their SHA-256, rows, peers
//	repo/config.json      settings
//	repo/identity.key     the Ed25519 identity: the peer ID
//	repo/kem.key          the HPKE key that opens this node's key envelopes
//	repo/network/genesis.cbor, repo/network/psk   the network and its pre-shared key
//	repo/dicom-project.key, repo/implant.key, ... every other file at the top of the repo
//	auditlog.leaves       the owner's audit log, its leaves in order (sharing/auditlog: Export)
//
// Left out: the API token (a restore makes a new one), files a running
// daemon writes (api, repo.lock, restore.json), staging files (names
// starting with a dot) and the datastore, but for the rows under
// backupPrefixes. The ledger, the records' blocks and the DICOM index come
// back from the network: the ledger from peers, the blocks from the
// records' replica holders, the index rebuilt from the records. The audit
// log's entries come back from the owner's replica group too, but not its
// order, which the tree heads auditors hold depend on: the backup carries
// the leaves, and the restored log appends what it syncs after them.

// BackupFormat names the archive's layout. Version 2 added the audit log;
// a restore reads both.
const BackupFormat = "medmesh-backup/2"

// backupFormatV1 is the layout before the audit log was in it.
const backupFormatV1 = "medmesh-backup/1"

// AuditLogPrefix is where a node keeps its audit log (node/auditlog) in its
// datastore.
const AuditLogPrefix = "/medmesh/auditlog"

// auditLogName is the archive member holding the audit log's leaves.
const auditLogName = "auditlog.leaves"

// RestoreFile marks a repo restored from a backup until its daemon has
// caught up (RestoreState).
const RestoreFile = "restore.json"

// backupPrefixes are the datastore rows a backup holds: what only this
// node knows. The implant service's local store maps its pseudonyms to
// this hospital's patients (sealed with a key derived from implant.key).
var backupPrefixes = []string{"/medmesh/implants/local/"}

// peerBookKey is where the daemon keeps members' last known addresses.
const peerBookKey = "/medmesh/local/peerbook"

// BackupPrefixes lists the datastore prefixes a backup holds.
func BackupPrefixes() []string { return append([]string(nil), backupPrefixes...) }

// MinPassphrase is the shortest passphrase a backup accepts.
const MinPassphrase = 12

// BackupManifest describes a backup; it is the archive's first file.
type BackupManifest struct {
	Format  string       `json:"format"`
	Peer    string       `json:"peer"`
	Created time.Time    `json:"created"`
	Medmesh string       `json:"medmesh_version"`
	Files   []BackupFile `json:"files"`
	// Rows are the datastore rows under BackupPrefixes.
	Rows []BackupRow `json:"rows"`
	// Peers are the members' last known addresses: a restored node dials
	// them to catch up its ledger.
	Peers map[string][]string `json:"peers"`
	// AuditLog describes the audit log the backup carries (absent: none,
	// or a backup of version 1).
	AuditLog *BackupAuditLog `json:"audit_log,omitempty"`
}

// BackupAuditLog describes an audit log in a backup: its first TreeSize
// leaves, whose tree hash is Root (hex), exported in Size bytes.
type BackupAuditLog struct {
	TreeSize int64  `json:"tree_size"`
	Root     string `json:"root"`
	Size     int64  `json:"size"`
}

// AuditLogSource is the audit log a backup takes: Write writes its export
// (exactly Size bytes).
type AuditLogSource struct {
	BackupAuditLog
	Write func(w io.Writer) (int64, error)
}

// BackupFile is one file of the repo in a backup.
type BackupFile struct {
	Path   string `json:"path"` // slash-separated, relative to the repo
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// BackupRow is one datastore row.
type BackupRow struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

// NodeState is what a backup takes from the datastore: rows, peers and the
// audit log (nil when the log is empty).
type NodeState struct {
	Rows     []BackupRow
	Peers    map[string][]string
	AuditLog *AuditLogSource
	// close releases what OfflineState holds open for the audit log's
	// export (the datastore and the repo's lock).
	close func()
}

// Close releases what the state holds open (OfflineState's datastore and
// lock); a no-op otherwise.
func (st *NodeState) Close() {
	if st != nil && st.close != nil {
		st.close()
		st.close = nil
	}
}

// maxBackupFile bounds a file a backup takes (keys and settings are small;
// anything larger at the top of a repo is not a secret we know).
const maxBackupFile = 1 << 20

// BackupFiles lists the repo's files a backup holds (see the package's
// backup comment), relative and slash-separated, sorted.
func (r *Repo) BackupFiles() ([]string, error) {
	skip := map[string]bool{TokenFile: true, APIFile: true, LockFile: true, RestoreFile: true}
	var out []string
	for _, sub := range []string{"", NetworkDir} {
		ents, err := os.ReadDir(filepath.Join(r.Dir, sub))
		if err != nil {
			return nil, fmt.Errorf("list the repo: %w", err)
		}
		for _, e := range ents {
			name := path.Join(sub, e.Name())
			if !e.Type().IsRegular() || skip[name] || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			out = append(out, name)
		}
	}
	sort.Strings(out)
	for _, must := range []string{ConfigFile, IdentityFile, KEMFile} {
		if !contains(out, must) {
			return nil, fmt.Errorf("%s has no %s: not a complete repo", r.Dir, must)
		}
	}
	return out, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// OfflineState reads the rows, peers and audit log a backup takes from the
// datastore of a repo whose daemon is not running; it holds the repo's
// lock until the state's Close, so no daemon starts under it.
func (r *Repo) OfflineState(ctx context.Context) (*NodeState, error) {
	lock, err := r.Lock()
	if err != nil {
		return nil, err
	}
	st := &NodeState{Rows: []BackupRow{}, Peers: map[string][]string{}}
	if _, err := os.Stat(r.Path(DatastoreDir)); errors.Is(err, os.ErrNotExist) {
		lock.Unlock()
		return st, nil // never started: nothing in it yet
	}
	store, err := blockstore.Open(r.Path(DatastoreDir))
	if err != nil {
		lock.Unlock()
		return nil, fmt.Errorf("open the datastore: %w", err)
	}
	release := func() { store.Close(); lock.Unlock() }
	st, err = ReadNodeState(ctx, store.DS)
	if err == nil {
		st.AuditLog, err = AuditLogExport(ctx, namespace.Wrap(store.DS, datastore.NewKey(AuditLogPrefix)))
	}
	if err != nil {
		release()
		return nil, err
	}
	st.close = release
	return st, nil
}

// AuditLogExport describes the audit log kept in ds (the node's datastore
// under AuditLogPrefix) as it is now, for a backup: nil if it is empty.
// Leaves appended after the call are not in the export.
func AuditLogExport(ctx context.Context, ds datastore.Batching) (*AuditLogSource, error) {
	l, err := auditlog.Open(ctx, ds)
	if err != nil {
		return nil, err
	}
	size := l.Size()
	if size == 0 {
		return nil, nil
	}
	root, err := l.Root(ctx, size)
	if err != nil {
		return nil, err
	}
	n, err := l.ExportSize(ctx, size)
	if err != nil {
		return nil, err
	}
	return &AuditLogSource{
		BackupAuditLog: BackupAuditLog{TreeSize: size, Root: hex.EncodeToString(root[:]), Size: n},
		Write:          func(w io.Writer) (int64, error) { return l.Export(ctx, size, w) },
	}, nil
}

// ReadNodeState reads the rows and peers a backup takes from ds (the
// node's whole datastore).
func ReadNodeState(ctx context.Context, ds datastore.Read) (*NodeState, error) {
	st := &NodeState{Rows: []BackupRow{}, Peers: map[string][]string{}}
	for _, p := range backupPrefixes {
		res, err := ds.Query(ctx, query.Query{Prefix: p})
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		for e := range res.Next() {
			if e.Error != nil {
				res.Close()
				return nil, fmt.Errorf("read %s: %w", p, e.Error)
			}
			st.Rows = append(st.Rows, BackupRow{Key: e.Key, Value: e.Value})
		}
		res.Close()
	}
	raw, err := ds.Get(ctx, datastore.NewKey(peerBookKey))
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &st.Peers); err != nil {
			st.Peers = map[string][]string{} // unreadable: the bootstrap peers remain
		}
	case !errors.Is(err, datastore.ErrNotFound):
		return nil, fmt.Errorf("read the peer book: %w", err)
	}
	return st, nil
}

// WriteBackup writes an encrypted backup of the repo to w: the files of
// BackupFiles and the rows and peers of st, encrypted to passphrase.
func (r *Repo) WriteBackup(w io.Writer, passphrase string, st *NodeState, version string, now time.Time) (*BackupManifest, error) {
	if len(passphrase) < MinPassphrase {
		return nil, fmt.Errorf("the passphrase has %d characters; use at least %d (it protects every key of the node)", len(passphrase), MinPassphrase)
	}
	id, err := r.PeerID()
	if err != nil {
		return nil, err
	}
	names, err := r.BackupFiles()
	if err != nil {
		return nil, err
	}
	m := &BackupManifest{Format: BackupFormat, Peer: id.String(), Created: now.UTC().Truncate(time.Second), Medmesh: version,
		Files: []BackupFile{}, Rows: st.Rows, Peers: st.Peers}
	if st.AuditLog != nil {
		al := st.AuditLog.BackupAuditLog
		m.AuditLog = &al
	}
	if m.Rows == nil {
		m.Rows = []BackupRow{}
	}
	if m.Peers == nil {
		m.Peers = map[string][]string{}
	}
	data := map[string][]byte{}
	for _, n := range names {
		p := filepath.Join(r.Dir, filepath.FromSlash(n))
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if fi.Size() > maxBackupFile {
			return nil, fmt.Errorf("%s has %d bytes: more than a key or setting file should; move it out of the repo", p, fi.Size())
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		data[n] = b
		m.Files = append(m.Files, BackupFile{Path: n, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
	}
	rcpt, err := age.NewScryptRecipient(passphrase)
	if err != nil {
		return nil, err
	}
	enc, err := age.Encrypt(w, rcpt)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(enc)
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	put := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), ModTime: m.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := put(manifestName, mb); err != nil {
		return nil, err
	}
	for _, f := range m.Files {
		if err := put("repo/"+f.Path, data[f.Path]); err != nil {
			return nil, err
		}
	}
	if al := st.AuditLog; al != nil {
		// Last, streamed: it grows with the node's reads.
		if err := tw.WriteHeader(&tar.Header{Name: auditLogName, Mode: 0o600, Size: al.Size, ModTime: m.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		n, err := al.Write(tw)
		if err != nil {
			return nil, fmt.Errorf("write the audit log: %w", err)
		}
		if n != al.Size {
			return nil, fmt.Errorf("write the audit log: %d bytes, %d announced", n, al.Size)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return m, nil
}

const manifestName = "medmesh-backup.json"

// maxBackupSize bounds what ReadBackup reads of an archive's members but
// the audit log, which is streamed into the restored repo, not held.
const maxBackupSize = 256 << 20

// ErrBadPassphrase means the passphrase does not open the backup.
var ErrBadPassphrase = errors.New("the passphrase does not open this backup")

// ErrBadBackup means the file is not a medmesh backup, or is damaged.
var ErrBadBackup = errors.New("not a medmesh backup, or a damaged one")

// ReadBackup decrypts and checks a backup: the manifest, every file it
// lists with its SHA-256, and that the identity is the manifest's peer.
// The audit log is read and discarded (Restore checks it as it writes it).
func ReadBackup(src io.Reader, passphrase string) (*BackupManifest, map[string][]byte, error) {
	return readBackup(src, passphrase, nil)
}

// readBackup is ReadBackup; auditLog, if not nil, is given the manifest and
// the audit log member as it is read (after the manifest and the files).
func readBackup(src io.Reader, passphrase string, auditLog func(*BackupManifest, io.Reader) error) (*BackupManifest, map[string][]byte, error) {
	ident, err := age.NewScryptIdentity(passphrase)
	if err != nil {
		return nil, nil, err
	}
	dec, err := age.Decrypt(src, ident)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return nil, nil, ErrBadPassphrase
		}
		return nil, nil, fmt.Errorf("%w: %v", ErrBadBackup, err)
	}
	tr := tar.NewReader(dec)
	var m *BackupManifest
	files := map[string][]byte{}
	sawLog := false
	var held int64 // bytes of the members read into memory
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrBadBackup, err)
		}
		if h.Typeflag != tar.TypeReg {
			return nil, nil, fmt.Errorf("%w: unexpected entry %q", ErrBadBackup, h.Name)
		}
		if h.Name == auditLogName {
			if m == nil || m.AuditLog == nil || sawLog || h.Size != m.AuditLog.Size {
				return nil, nil, fmt.Errorf("%w: an audit log the manifest does not describe", ErrBadBackup)
			}
			sawLog = true
			if auditLog == nil {
				_, err = io.Copy(io.Discard, tr)
			} else {
				err = auditLog(m, tr)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("%w: audit log: %v", ErrBadBackup, err)
			}
			continue
		}
		if held += h.Size; h.Size > maxBackupSize || held > maxBackupSize {
			return nil, nil, fmt.Errorf("%w: unexpected entry %q", ErrBadBackup, h.Name)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrBadBackup, err)
		}
		switch {
		case h.Name == manifestName && m == nil:
			m = &BackupManifest{}
			if err := json.Unmarshal(b, m); err != nil {
				return nil, nil, fmt.Errorf("%w: manifest: %v", ErrBadBackup, err)
			}
		case strings.HasPrefix(h.Name, "repo/"):
			files[strings.TrimPrefix(h.Name, "repo/")] = b
		default:
			return nil, nil, fmt.Errorf("%w: unexpected entry %q", ErrBadBackup, h.Name)
		}
	}
	if m == nil || (m.Format != BackupFormat && m.Format != backupFormatV1) {
		return nil, nil, fmt.Errorf("%w: no %s manifest", ErrBadBackup, BackupFormat)
	}
	if m.AuditLog != nil && !sawLog {
		return nil, nil, fmt.Errorf("%w: the manifest describes an audit log the archive does not hold", ErrBadBackup)
	}
	for _, f := range m.Files {
		b, ok := files[f.Path]
		if !ok {
			return nil, nil, fmt.Errorf("%w: %s is missing", ErrBadBackup, f.Path)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != f.SHA256 {
			return nil, nil, fmt.Errorf("%w: %s does not match its checksum", ErrBadBackup, f.Path)
		}
		if f.Path != path.Clean(f.Path) || path.IsAbs(f.Path) || strings.HasPrefix(f.Path, "..") || strings.Count(f.Path, "/") > 1 ||
			(strings.Contains(f.Path, "/") && !strings.HasPrefix(f.Path, NetworkDir+"/")) {
			return nil, nil, fmt.Errorf("%w: unsafe path %q", ErrBadBackup, f.Path)
		}
	}
	if len(files) != len(m.Files) {
		return nil, nil, fmt.Errorf("%w: files the manifest does not list", ErrBadBackup)
	}
	k, err := crypto.UnmarshalPrivateKey(files[IdentityFile])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: identity: %v", ErrBadBackup, err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil || id.String() != m.Peer {
		return nil, nil, fmt.Errorf("%w: the identity is not peer %s", ErrBadBackup, m.Peer)
	}
	for _, row := range m.Rows {
		if !underPrefixes(row.Key) {
			return nil, nil, fmt.Errorf("%w: datastore row %q is outside what a backup holds", ErrBadBackup, row.Key)
		}
	}
	return m, files, nil
}

func underPrefixes(key string) bool {
	for _, p := range backupPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// RestoreState is what a restored repo's daemon reads from RestoreFile.
type RestoreState struct {
	BackupCreated time.Time           `json:"backup_created"`
	Restored      time.Time           `json:"restored"`
	Peers         map[string][]string `json:"peers"`
}

// Restore recreates a repo in dir (which must not exist, or be empty) from
// a backup: its files (0600, in 0700 directories), a new API token, the
// datastore rows, and RestoreFile for its daemon.
func Restore(src io.Reader, passphrase, dir string, now time.Time) (*BackupManifest, error) {
	if _, err := os.Stat(filepath.Join(dir, ConfigFile)); err == nil {
		return nil, fmt.Errorf("%w: %s already holds a medmesh repo; restore into a new --repo", ErrRepoExists, dir)
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("%w: %s exists and is not empty; restore into an empty or new --repo", ErrRepoExists, dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, NetworkDir), 0o700); err != nil {
		return nil, fmt.Errorf("create repo: %w", err)
	}
	os.Chmod(dir, 0o700)
	ok := false
	var store *blockstore.Store
	openStore := func() error {
		if store != nil {
			return nil
		}
		var err error
		if store, err = blockstore.Open(filepath.Join(dir, DatastoreDir)); err != nil {
			return fmt.Errorf("create the datastore: %w", err)
		}
		return nil
	}
	defer func() {
		if store != nil {
			store.Close()
		}
		if !ok {
			os.RemoveAll(dir) // half a repo is worse than none
		}
	}()
	// The audit log streams into the new datastore as it is read; a
	// backup that fails any later check leaves nothing (the deferred
	// removal).
	m, files, err := readBackup(src, passphrase, func(m *BackupManifest, r io.Reader) error {
		root, err := hex.DecodeString(m.AuditLog.Root)
		if err != nil || len(root) != len(auditlog.Hash{}) {
			return fmt.Errorf("bad root %q", m.AuditLog.Root)
		}
		if err := openStore(); err != nil {
			return err
		}
		return auditlog.Import(context.Background(), namespace.Wrap(store.DS, datastore.NewKey(AuditLogPrefix)), r, m.AuditLog.TreeSize, auditlog.Hash(root))
	})
	if err != nil {
		return nil, err
	}
	// The config last: its presence marks a complete repo (as Init).
	for _, f := range m.Files {
		if f.Path == ConfigFile {
			continue
		}
		if err := atomicfile.WriteBytes(filepath.Join(dir, filepath.FromSlash(f.Path)), files[f.Path], 0o600); err != nil {
			return nil, err
		}
	}
	token := make([]byte, 32)
	if _, err := rand.Read(token); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, TokenFile), []byte(hex.EncodeToString(token)+"\n"), 0o600); err != nil {
		return nil, err
	}
	if len(m.Rows) > 0 {
		if err := openStore(); err != nil {
			return nil, err
		}
		for _, row := range m.Rows {
			if err := store.DS.Put(context.Background(), datastore.NewKey(row.Key), row.Value); err != nil {
				return nil, fmt.Errorf("restore datastore row: %w", err)
			}
		}
	}
	if store != nil {
		err := store.Close()
		store = nil
		if err != nil {
			return nil, fmt.Errorf("close the datastore: %w", err)
		}
	}
	rs, _ := json.MarshalIndent(RestoreState{BackupCreated: m.Created, Restored: now.UTC().Truncate(time.Second), Peers: m.Peers}, "", "  ")
	if err := atomicfile.WriteBytes(filepath.Join(dir, RestoreFile), rs, 0o600); err != nil {
		return nil, err
	}
	if _, err := ParseConfig(ConfigFile, files[ConfigFile]); err != nil {
		return nil, fmt.Errorf("%w: config.json: %v", ErrBadBackup, err)
	}
	if err := atomicfile.WriteBytes(filepath.Join(dir, ConfigFile), files[ConfigFile], 0o600); err != nil {
		return nil, err
	}
	ok = true
	return m, nil
}

// Restoring returns the restore state of a repo restored from a backup
// whose daemon has not caught up yet (nil when there is none).
func (r *Repo) Restoring() (*RestoreState, error) {
	b, err := os.ReadFile(r.Path(RestoreFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st RestoreState
	if err := json.Unmarshal(bytes.TrimSpace(b), &st); err != nil {
		return nil, fmt.Errorf("%s: %w", r.Path(RestoreFile), err)
	}
	return &st, nil
}

// RestoreDone removes RestoreFile: the daemon has caught up.
func (r *Repo) RestoreDone() error {
	err := os.Remove(r.Path(RestoreFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
