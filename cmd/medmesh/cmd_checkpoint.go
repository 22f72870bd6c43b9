package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/medmesh/medmesh/node/api"
)

// newCheckpointCmds returns `ledger checkpoint`, `ledger checkpoints` and
// `ledger prune` (issue #16: join without replay, prune what is covered).
func newCheckpointCmds() []*cobra.Command {
	show := func(ck api.Checkpoint) {
		say("checkpoint %s (#%d, scope %s)", ck.Checkpoint, ck.Index, ck.Scope)
		say("  at        %s, %d heads, %d entries behind them", ck.Time.Format("2006-01-02T15:04:05Z07:00"), len(ck.Heads), ck.EntryCount)
		say("  state     %s, %d bytes in %d blocks", ck.Digest, ck.Size, ck.BlockCount)
		say("  signed by %v (the next needs %d of %v)", ck.Signatures, ck.Quorum, ck.Signers)
	}
	var cosign string
	mk := &cobra.Command{
		Use:   "checkpoint",
		Short: "Sign a checkpoint of the ledger's state (admins)",
		Long: `Sign a checkpoint of the global scope at this node's current heads: its
state (the view, indexes and entry metadata) as content-addressed blocks,
its digest, and the admins who sign the next one. In a network with scopes
(every ` + "`medmesh network create`" + ` since) that is the global scope's state
alone: members, roles, keys, the network key, implants and consents, the
same on every node whatever records it follows. A node that joins the
network afterwards loads the latest checkpoint instead of replaying every
entry, and syncs only what came after it (and the owner and audit scopes
it follows); nodes may prune what it covers (` + "`medmesh ledger prune`" + `).

Checkpoints form a chain anchored at the genesis: the first is signed by
the network's founding admin, each later one by a majority of the admins
of the one before. Run it on an admin's node when the network is quiet
(every node that later joins trusts it without replaying).

With several admins, one admin's signature is a proposal ("trusted":
false): it prints it ("proposal") and the next admin co-signs it with
--cosign, on a node in the same state (same ` + "`medmesh ledger heads`" + `), until
a majority signed. Exits 5 on a node that is not an admin, 6 if nothing was
appended since the latest or the proposal is of another state.`,
		Example: `  medmesh ledger checkpoint
  medmesh ledger checkpoint --json | jq -r .checkpoint
  # two admins: the first proposes, the second co-signs
  P=$(medmesh ledger checkpoint --json | jq -r .proposal)
  medmesh --repo ~/.medmesh-admin2 ledger checkpoint --cosign "$P"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var ck api.Checkpoint
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/ledger/checkpoint", api.CheckpointRequest{Proposal: cosign}, &ck); err != nil {
				return err
			}
			return output(ck, func() {
				show(ck)
				if !ck.Trusted {
					say("  not trusted yet: %d of %d signatures; another admin co-signs it with", len(ck.Signatures), ck.Quorum)
					say("  medmesh ledger checkpoint --cosign %s", ck.Proposal)
				}
			})
		},
	}
	mk.Flags().StringVar(&cosign, "cosign", "", "co-sign this proposal (\"proposal\" of another admin's --json output)")
	list := &cobra.Command{
		Use:   "checkpoints",
		Short: "List the ledger's trusted checkpoints, oldest first",
		Long: `List the trusted checkpoints of the global scope this node holds, oldest
first: the chain from the genesis to the latest. "base" marks the one this
node joined from (it never replayed the entries behind it), "pruned" the
one it pruned up to.`,
		Example: `  medmesh ledger checkpoints
  medmesh ledger checkpoints --json | jq -r '.[-1].entry_count'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var cks []api.Checkpoint
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/ledger/checkpoints", nil, &cks); err != nil {
				return err
			}
			if cks == nil {
				cks = []api.Checkpoint{}
			}
			return output(cks, func() {
				if len(cks) == 0 {
					say("no checkpoint yet (an admin makes one with `medmesh ledger checkpoint`)")
					return
				}
				tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "#\tTIME\tENTRIES\tSIZE\tSIGNATURES\tNOTE\tCHECKPOINT")
				for _, ck := range cks {
					note := ""
					if ck.Base {
						note = "base"
					}
					if ck.Pruned {
						note += " pruned"
					}
					fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%s\t%s\n", ck.Index, ck.Time.Format("2006-01-02T15:04:05Z07:00"), ck.EntryCount, ck.Size, len(ck.Signatures), note, ck.Checkpoint)
				}
				tw.Flush()
			})
		},
	}
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Drop ledger entries the latest checkpoint covers that this node does not need",
		Long: `Drop the bodies of ledger entries behind the latest trusted checkpoint that
this node does not need: read claims, attestations, receipts, assignments,
grants, revokes and announcements about records it does not own. It keeps
everything about its own records (their audit history), membership, keys
and every other type, and the state itself: queries, the audit and the
digest are unchanged. ` + "`medmesh ledger verify`" + ` then replays from the checkpoint.
Exits 6 when there is no checkpoint yet.`,
		Example: `  medmesh ledger prune
  medmesh ledger prune --json | jq .pruned_count`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var r api.PruneResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/ledger/prune", nil, &r); err != nil {
				return err
			}
			return output(r, func() {
				say("pruned %d entries (%d bytes) behind checkpoint %s; kept %d this node needs", r.PrunedCount, r.Size, r.Checkpoint, r.KeptCount)
			})
		},
	}
	return []*cobra.Command{mk, list, prune}
}
