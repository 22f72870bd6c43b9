package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/medmesh/medmesh/internal/atomicfile"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/repo"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// passphrase reads the backup passphrase: the first line of file, or,
// on a terminal, typed twice (confirm) or once (restore).
func passphrase(file string, confirm bool) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", invalidf("", "--passphrase-file: %v", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			return "", invalidf("write the passphrase on the file's first line", "--passphrase-file %s: the first line is empty", file)
		}
		return line, nil
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil || !term.IsTerminal(int(tty.Fd())) {
		if tty != nil {
			tty.Close()
		}
		return "", invalidf("give --passphrase-file FILE (its first line), or run the command on a terminal to type it", "no passphrase: not on a terminal")
	}
	defer tty.Close()
	read := func(prompt string) (string, error) {
		fmt.Fprint(tty, prompt)
		b, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		return string(b), err
	}
	p, err := read("Passphrase: ")
	if err != nil {
		return "", err
	}
	if confirm {
		if len(p) < repo.MinPassphrase {
			return "", invalidf("", "the passphrase has %d characters; use at least %d (it protects every key of the node)", len(p), repo.MinPassphrase)
		}
		again, err := read("Passphrase again: ")
		if err != nil {
			return "", err
		}
		if again != p {
			return "", invalidf("type the same passphrase twice", "the passphrases differ")
		}
	}
	return p, nil
}

func newBackupCmd() *cobra.Command {
	var out, passFile string
	cmd := &cobra.Command{
		Use:   "backup -o FILE",
		Short: "Write an encrypted backup of the node's keys, settings and local-only data",
		Long: `Write an encrypted backup of what this node needs to come back after its disk is
lost, and nothing the network can give back:

  identity.key          the Ed25519 identity (the peer ID)
  kem.key               the HPKE key that opens the node's key envelopes
  network/genesis.cbor  the network it belongs to, and network/psk, its pre-shared key
  config.json           the settings
  dicom-project.key     the de-identification project key (same pseudonyms after a restore)
  implant.key           the implant pseudonym key, and the sealed rows that map this
                        hospital's implant pseudonyms to its patients
  any other file at the top of the repo (keys later features add)
  the members' last known addresses, so a restored node finds them
  the audit log of the node's records, in its order: the tree heads it signed
                        for auditors stay consistent with the restored log
                        (entries appended after the backup come back from the
                        owner's replica group, appended after these)

Not in it: the API token (a restore makes a new one), the ledger (it comes
back from the peers), the records' blocks (from their replica holders) and the
DICOM index (rebuilt from the studies). The file is a tar archive encrypted
with age to a passphrase (scrypt): the keys are never written in clear. The
passphrase is typed twice on a terminal, or read from the first line of
--passphrase-file (scripts); it needs at least 12 characters. Keep it apart
from the backup: whoever has both has the node.

Take one after ` + "`network join`" + ` or ` + "`network create`" + `, after every change of
settings or keys, and daily if the node records implants (the sealed rows
change with each one) or publishes audit tree heads (a head signed after the
last backup may not be consistent with a log restored from it). Works with or
without a running daemon.`,
		Example: `  medmesh backup -o /mnt/offsite/medmesh-$(date +%F).age
  medmesh backup -o node.age --passphrase-file /etc/medmesh/backup-pass --json
  age -d node.age | tar t          # list it (asks for the passphrase)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return invalidf("name the backup file: -o FILE", "-o is required")
			}
			path, err := filepath.Abs(out)
			if err != nil {
				return invalidf("", "-o %s: %v", out, err)
			}
			r, err := repo.Open(repoDir())
			if err != nil {
				return err
			}
			if rel, err := filepath.Rel(r.Dir, path); err == nil && !strings.HasPrefix(rel, "..") {
				return invalidf("write it outside the repo (another disk, ideally another place)", "-o %s is inside the repo", out)
			}
			pass, err := passphrase(passFile, true)
			if err != nil {
				return err
			}
			var st *repo.NodeState
			if c, err := api.ClientForRepo(r.Dir); err == nil {
				var live api.BackupState
				if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/backup/state", nil, &live); err != nil {
					return fmt.Errorf("ask the running daemon for its state: %w", err)
				}
				st = &repo.NodeState{Peers: live.Peers}
				for _, row := range live.Rows {
					st.Rows = append(st.Rows, repo.BackupRow{Key: row.Key, Value: row.Value})
				}
				if al := live.AuditLog; al != nil {
					st.AuditLog = &repo.AuditLogSource{
						BackupAuditLog: repo.BackupAuditLog{TreeSize: al.TreeSize, Root: al.Root, Size: al.Size},
						Write: func(w io.Writer) (int64, error) {
							cw := &countingWriter{w: w}
							err := c.DownloadRaw(ctxOf(cmd), fmt.Sprintf("%s/backup/auditlog?size=%d", api.Prefix, al.TreeSize), cw)
							return cw.n, err
						},
					}
				}
			} else if st, err = r.OfflineState(ctxOf(cmd)); err != nil {
				return err
			}
			defer st.Close()
			var m *repo.BackupManifest
			n, err := atomicfile.Write(path, 0o600, func(w io.Writer) error {
				var err error
				m, err = r.WriteBackup(w, pass, st, versionInfo().Version, time.Now())
				return err
			})
			if err != nil {
				if strings.Contains(err.Error(), "passphrase has") {
					return withCode(exitInvalid, err, "")
				}
				return fmt.Errorf("write %s: %w", path, err)
			}
			res := api.BackupResult{File: path, Peer: m.Peer, Size: n, Created: m.Created.Format(time.RFC3339), Files: []string{}, RowCount: len(m.Rows), PeerCount: len(m.Peers)}
			if m.AuditLog != nil {
				res.AuditLogTreeSize = m.AuditLog.TreeSize
			}
			for _, f := range m.Files {
				res.Files = append(res.Files, f.Path)
			}
			return output(res, func() {
				say("wrote %s (%s), encrypted to the passphrase", path, humanSize(n))
				say("peer %s; %s; %d local rows; %d members' addresses; audit log of %d entries", m.Peer, strings.Join(res.Files, ", "), res.RowCount, res.PeerCount, res.AuditLogTreeSize)
				say("restore with: medmesh restore %s --repo DIR", path)
			})
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "backup file to write (0600; outside the repo)")
	cmd.Flags().StringVar(&passFile, "passphrase-file", "", "read the passphrase from this file's first line (for scripts)")
	return cmd
}

func newRestoreCmd() *cobra.Command {
	var passFile string
	cmd := &cobra.Command{
		Use:   "restore FILE --repo DIR",
		Short: "Recreate a node's repo from a backup: same peer ID; the rest comes back from the network",
		Long: `Recreate a node's repo in DIR (new, or empty) from a backup written by
` + "`medmesh backup`" + `: its identity (the same peer ID), keys, network, settings
and local-only data, with a new API token. Then start the daemon: unattended, it
dials the members the backup lists, catches its ledger up from them, fetches
back the blocks of every record it owns from their replica holders, and
rebuilds its DICOM index from the studies it owns; ` + "`medmesh health`" + ` and the
daemon's log show the progress (REPO/restore.json is removed when the ledger
and the index are back).

The passphrase is typed on a terminal, or read from the first line of
--passphrase-file. A wrong passphrase, or a damaged file, is refused (exit 2)
and nothing is written. Never run the original node and its restored copy at
the same time: they are the same peer.`,
		Example: `  medmesh restore /mnt/offsite/medmesh-2026-03-01.age --repo /var/lib/medmesh
  medmesh restore node.age --repo /srv/medmesh --passphrase-file /etc/medmesh/backup-pass --json
  medmesh daemon --repo /srv/medmesh`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := repoDir()
			f, err := os.Open(args[0])
			if err != nil {
				return invalidf("", "cannot read the backup: %v", err)
			}
			defer f.Close()
			pass, err := passphrase(passFile, false)
			if err != nil {
				return err
			}
			m, err := repo.Restore(bufio.NewReader(f), pass, dir, time.Now())
			switch {
			case errors.Is(err, repo.ErrBadPassphrase):
				return withCode(exitInvalid, err, "check the passphrase (it is the one given to `medmesh backup`)")
			case errors.Is(err, repo.ErrBadBackup):
				return withCode(exitInvalid, err, "is it the file `medmesh backup` wrote, whole?")
			case err != nil:
				return err
			}
			res := api.RestoreResult{Repo: dir, Peer: m.Peer, BackupCreated: m.Created.Format(time.RFC3339), Files: []string{}, RowCount: len(m.Rows), PeerCount: len(m.Peers)}
			if m.AuditLog != nil {
				res.AuditLogTreeSize = m.AuditLog.TreeSize
			}
			for _, f := range m.Files {
				res.Files = append(res.Files, f.Path)
			}
			return output(res, func() {
				say("restored peer %s into %s (backup of %s; audit log of %d entries)", m.Peer, dir, res.BackupCreated, res.AuditLogTreeSize)
				say("next: `medmesh daemon --repo %s`: it catches up the ledger from %d members, fetches back its records and rebuilds its DICOM index", dir, res.PeerCount)
			})
		},
	}
	cmd.Flags().StringVar(&passFile, "passphrase-file", "", "read the passphrase from this file's first line (for scripts)")
	return cmd
}

// countingWriter counts what it passes on.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
