package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/medmesh/medmesh/internal/atomicfile"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/auditlog"
)

// The audit log commands: an owner's Certificate-Transparency style log of
// the claims and attestations about its records (node/auditlog), its
// signed tree heads, inclusion and consistency proofs, and the offline
// verifier an auditor runs.

const auditLogLong = `This node keeps an append-only Merkle log (RFC 6962/9162 hashing) of the
audit entries it accepted about the records it owns: the readers' claims
(access) and the serving nodes' attestations (access.served), in the order it
accepted them. One log per owner: an auditor follows one sequence of tree
heads per clinic. Tree heads are signed with the node's identity key, so its
peer ID alone verifies them.

An auditor keeps the tree heads it was shown (audit head -o), asks for proofs
that entries are in the log (audit prove) and that the log only grew since a
head it kept (audit consistency), and checks them on its own machine, without
a node (audit verify-proof).

Each new head also keeps the order of the leaves since the previous one in a
segment, a record of this node's (encrypted, hidden from ls, replicated like
any record), so a node restored from an older backup answers with the same
heads.`

func addAuditLogCmds(audit *cobra.Command) {
	audit.Long = `List who read a record, when and for what purpose (the accounting of
disclosures): reads as the nodes that served them attested, matched with what
the readers' nodes claimed.

` + auditLogLong
	audit.AddCommand(newAuditHeadCmd(), newAuditProveCmd(), newAuditConsistencyCmd(), newAuditVerifyCmd())
}

// writeOut writes b to path (0600, atomically) when path is set.
func writeOut(path string, b []byte) error {
	if path == "" {
		return nil
	}
	if err := atomicfile.WriteBytes(path, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func newAuditHeadCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "head",
		Short: "Print this node's signed audit log tree head (size, root, time)",
		Long: `Print the signed tree head of this node's audit log: how many entries it
holds, their Merkle root and when it was signed. -o writes the signed head
itself (a C2SP signed note) to a file: an auditor keeps it, and later checks
that the log only grew since (audit consistency FILE).

` + auditLogLong,
		Example: `  medmesh audit head
  medmesh audit head -o head-2026-12-06.txt
  medmesh audit head --json | jq .tree_size`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var h api.AuditHead
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/auditlog/head", nil, &h); err != nil {
				return err
			}
			if err := writeOut(out, []byte(h.TreeHead)); err != nil {
				return err
			}
			return output(h, func() {
				say("owner:     %s", h.Owner)
				say("tree size: %d entries", h.TreeSize)
				say("root:      %s", h.Root)
				say("signed:    %s", h.Time.UTC().Format(time.RFC3339))
				if h.Segment != "" {
					say("order kept in segment %s (a hidden record of this node, for a restore)", h.Segment)
				}
				if out != "" {
					say("signed tree head written to %s", out)
				} else {
					fmt.Print("\n" + h.TreeHead)
				}
			})
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the signed tree head to this file")
	return cmd
}

func newAuditProveCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "prove RECORD [ENTRY]",
		Short: "Prove that a record's audit entries are in this node's audit log (inclusion proofs)",
		Long: `Prove, under one signed tree head, that the audit entries about RECORD (all
of its versions) are in this node's audit log: ENTRY alone (an access or
access.served entry's CID, as ` + "`medmesh ledger log --json`" + ` lists them), or every
entry about the record. The proof file (--json prints it, -o writes it)
carries the entries themselves, their leaf indexes and audit paths, and the
signed tree head: ` + "`medmesh audit verify-proof`" + ` checks it without a node.
Only the record's owner keeps its log.`,
		Example: `  medmesh audit prove bafkrei... -o proof.json
  medmesh audit prove bafkrei... bafyrei... --json > proof.json
  medmesh audit verify-proof proof.json --owner 12D3KooW...`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRecord(args[0]); err != nil {
				return err
			}
			q := url.Values{}
			if len(args) == 2 {
				if err := checkRecord(args[1]); err != nil {
					return invalidf("entry CIDs look like bafyrei…; `medmesh ledger log --type access.served --json` lists them", "%q is not an entry CID", args[1])
				}
				q.Set("entry", args[1])
			}
			c, err := client()
			if err != nil {
				return err
			}
			var f auditlog.ProofFile
			path := api.Prefix + "/records/" + pathEscape(args[0]) + "/audit/proof"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			if err := c.Do(ctxOf(cmd), "GET", path, nil, &f); err != nil {
				return err
			}
			if f.Proofs == nil {
				f.Proofs = []auditlog.Inclusion{}
			}
			if err := writeProof(out, &f); err != nil {
				return err
			}
			return output(f, func() {
				say("%d audit entries of %s proved in %s's log of %d entries (root %s)", len(f.Proofs), f.ID, f.Owner, f.TreeSize, f.Root)
				for _, p := range f.Proofs {
					say("  leaf %-6d %-14s %s", p.Index, p.Type, p.Entry)
				}
				if out != "" {
					say("proof written to %s; check it with `medmesh audit verify-proof %s --owner %s`", out, out, f.Owner)
				} else {
					say("write the proof file with -o FILE (or --json)")
				}
			})
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the proof file here")
	return cmd
}

func writeProof(path string, f *auditlog.ProofFile) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return writeOut(path, append(b, '\n'))
}

// headSize reads a tree size: a number, or a file with a signed tree head
// (audit head -o), whose signature it checks.
func headSize(arg string) (int64, *auditlog.TreeHead, error) {
	if n, err := strconv.ParseInt(arg, 10, 64); err == nil {
		if n < 1 {
			return 0, nil, invalidf("sizes count entries, from 1", "size %d: the smallest log with a proof is of one entry", n)
		}
		return n, nil, nil
	}
	b, err := os.ReadFile(arg)
	if err != nil {
		return 0, nil, invalidf("give a size (a number) or a file written by `medmesh audit head -o`", "%q is neither a size nor a readable tree head file: %v", arg, err)
	}
	h, err := auditlog.OpenHead(b, "")
	if err != nil {
		return 0, nil, auditErr(fmt.Errorf("%s: %w", arg, err))
	}
	return h.Size, &h, nil
}

// auditErr gives the verifier's errors their exit codes: a file that is
// not a proof is invalid input (2), one that does not verify is a failed
// verification (8).
func auditErr(err error) error {
	switch {
	case errors.Is(err, auditlog.ErrVerify):
		return withCode(exitVerify, err, "the log, the proof or the tree head is not what its owner signed: keep the file as evidence")
	case errors.Is(err, auditlog.ErrMalformed):
		return withCode(exitInvalid, err, "give a file written by `medmesh audit prove`, `audit consistency` or `audit head`")
	}
	return err
}

func newAuditConsistencyCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "consistency OLD [NEW]",
		Short: "Prove that this node's audit log only grew from size OLD to NEW (a consistency proof)",
		Long: `Prove that this node's audit log of OLD entries is a prefix of its log of NEW
entries (default: its current size): nothing was changed or removed, only
appended. OLD is a size, or a tree head file an auditor kept (audit head -o).
Both tree heads are signed; ` + "`medmesh audit verify-proof FILE --head OLD_HEAD`" + `
checks the proof against the head the auditor kept, without a node.`,
		Example: `  medmesh audit consistency 120 -o grew.json
  medmesh audit consistency 120 450 --json > grew.json
  medmesh audit consistency head-2026-12-06.txt -o grew.json`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			old, _, err := headSize(args[0])
			if err != nil {
				return err
			}
			q := url.Values{"old": {strconv.FormatInt(old, 10)}}
			if len(args) == 2 {
				n, err := strconv.ParseInt(args[1], 10, 64)
				if err != nil || n < old {
					return invalidf("NEW is a size at least OLD", "NEW %q is not a size of at least %d", args[1], old)
				}
				q.Set("new", args[1])
			}
			c, err := client()
			if err != nil {
				return err
			}
			var f auditlog.ProofFile
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/auditlog/consistency?"+q.Encode(), nil, &f); err != nil {
				return err
			}
			if f.Path == nil {
				f.Path = []string{}
			}
			if err := writeProof(out, &f); err != nil {
				return err
			}
			return output(f, func() {
				say("%s's audit log of %d entries (root %s) is a prefix of its log of %d entries (root %s): %d hashes of proof",
					f.Owner, f.OldSize, f.OldRoot, f.NewSize, f.NewRoot, len(f.Path))
				if out != "" {
					say("proof written to %s; check it with `medmesh audit verify-proof %s --owner %s`", out, out, f.Owner)
				}
			})
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the proof file here")
	return cmd
}

// verifyResult is `audit verify-proof --json`.
type verifyResult struct {
	Kind     string `json:"kind"`
	Owner    string `json:"owner"`
	Verified bool   `json:"verified"`
	// Inclusion.
	ID              string          `json:"id,omitempty"`
	TreeSize        int64           `json:"tree_size,omitempty"`
	Root            string          `json:"root,omitempty"`
	Time            *time.Time      `json:"time,omitempty"`
	VerifiedEntries []verifiedEntry `json:"verified_entries,omitempty"`
	// Consistency.
	OldSize int64  `json:"old_size,omitempty"`
	OldRoot string `json:"old_root,omitempty"`
	NewSize int64  `json:"new_size,omitempty"`
	NewRoot string `json:"new_root,omitempty"`
}

type verifiedEntry struct {
	ID     string `json:"id"`
	Entry  string `json:"entry"`
	Type   string `json:"type"`
	Author string `json:"author"`
	Index  int64  `json:"index"`
}

func newAuditVerifyCmd() *cobra.Command {
	var owner, headFile string
	cmd := &cobra.Command{
		Use:   "verify-proof FILE",
		Short: "Check an audit log proof file offline (no node needed)",
		Long: `Check a proof file written by ` + "`medmesh audit prove`" + ` or ` + "`audit consistency`" + `,
on any machine, without a repo or a daemon:
  inclusion:   the tree head is signed by the owner's identity; every entry's
               own signature is valid, it is an access or access.served entry
               about the record it names, and its audit path leads from its
               leaf (RFC 6962: SHA-256(0x00 || entry)) to the signed root;
  consistency: both tree heads are signed by the owner, and the proof shows
               the old tree is a prefix of the new one.
--owner pins the clinic whose log it must be (otherwise the file's owner is
trusted to be who it says, and only its signatures are checked). --head
pins a tree head the auditor kept (audit head -o): a consistency proof must
start from it, an inclusion proof must be signed under it or a later head
it can be checked against with a consistency proof.
Exit 0: verified; 8: the proof does not verify; 2: not a proof file.`,
		Example: `  medmesh audit verify-proof proof.json --owner 12D3KooW...
  medmesh audit verify-proof grew.json --head head-2026-12-06.txt
  medmesh audit prove bafkrei... --json | medmesh audit verify-proof -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var pin peer.ID
			if owner != "" {
				if err := checkPeer("--owner", owner); err != nil {
					return err
				}
				pin, _ = peer.Decode(owner)
			}
			var in io.Reader = os.Stdin
			if args[0] != "-" {
				fh, err := os.Open(args[0])
				if err != nil {
					return invalidf("give the proof file `medmesh audit prove -o` or `audit consistency -o` wrote", "cannot read %s: %v", args[0], err)
				}
				defer fh.Close()
				in = fh
			}
			f, err := auditlog.ReadProofFile(in)
			if err != nil {
				return auditErr(err)
			}
			rep, err := auditlog.Verify(f, pin)
			if err != nil {
				return auditErr(err)
			}
			if headFile != "" {
				b, err := os.ReadFile(headFile)
				if err != nil {
					return invalidf("give a file written by `medmesh audit head -o`", "cannot read %s: %v", headFile, err)
				}
				kept, err := auditlog.OpenHead(b, rep.Owner)
				if err != nil {
					return auditErr(fmt.Errorf("%s: %w", headFile, err))
				}
				got := rep.Old
				if rep.Kind == auditlog.KindInclusion {
					got = rep.Head
				}
				if kept.Size != got.Size || kept.Root != got.Root {
					if rep.Kind == auditlog.KindConsistency || kept.Size >= got.Size {
						return auditErr(fmt.Errorf("%w: the proof starts from the log of %d entries (root %s), the head kept in %s is of %d entries (root %s)",
							auditlog.ErrVerify, got.Size, auditlog.EncodeHash(got.Root), headFile, kept.Size, auditlog.EncodeHash(kept.Root)))
					}
					// An inclusion proof under a later head: the auditor
					// checks that head against the kept one with audit
					// consistency.
				}
			}
			res := verifyResult{Kind: rep.Kind, Owner: rep.Owner.String(), Verified: true}
			switch rep.Kind {
			case auditlog.KindInclusion:
				t := rep.Head.Time.UTC()
				res.ID, res.TreeSize, res.Root, res.Time = rep.Record.String(), rep.Head.Size, auditlog.EncodeHash(rep.Head.Root), &t
				res.VerifiedEntries = []verifiedEntry{}
				for _, e := range rep.Entries {
					res.VerifiedEntries = append(res.VerifiedEntries, verifiedEntry{ID: e.Record.String(), Entry: e.Entry.String(), Type: e.Type, Author: e.Author.String(), Index: e.Index})
				}
			case auditlog.KindConsistency:
				res.OldSize, res.OldRoot = rep.Old.Size, auditlog.EncodeHash(rep.Old.Root)
				res.NewSize, res.NewRoot = rep.New.Size, auditlog.EncodeHash(rep.New.Root)
			}
			return output(res, func() {
				switch rep.Kind {
				case auditlog.KindInclusion:
					say("verified: %d entries are in %s's audit log of %d entries (root %s, signed %s)",
						len(rep.Entries), rep.Owner, rep.Head.Size, auditlog.EncodeHash(rep.Head.Root), rep.Head.Time.UTC().Format(time.RFC3339))
					for _, e := range rep.Entries {
						say("  leaf %-6d %-14s %s by %s (record %s)", e.Index, e.Type, e.Entry, e.Author, e.Record)
					}
				case auditlog.KindConsistency:
					say("verified: %s's audit log only grew from %d entries (root %s) to %d (root %s)",
						rep.Owner, rep.Old.Size, auditlog.EncodeHash(rep.Old.Root), rep.New.Size, auditlog.EncodeHash(rep.New.Root))
				}
				if owner == "" {
					say("note: the owner was not pinned (--owner): the file's own owner, %s, signed it", rep.Owner)
				}
			})
		},
	}
	cmd.Flags().StringVar(&owner, "owner", "", "the peer ID whose log it must be")
	cmd.Flags().StringVar(&headFile, "head", "", "a tree head file kept earlier (audit head -o) the proof must start from")
	return cmd
}
