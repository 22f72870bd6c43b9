package main

import (
	"fmt"
	"net/url"
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
		if ck.Scope == "global" {
			say("  signed by %v (the next needs %d of %v)", ck.Signatures, ck.Quorum, ck.Signers)
		} else {
			say("  signed by %v (needs %d of the owner's replica group %v)", ck.Signatures, ck.Quorum, ck.Signers)
		}
	}
	var cosign, scope string
	mk := &cobra.Command{
		Use:   "checkpoint",
		Short: "Sign a checkpoint of the ledger's state (admins; a scope's: the owner's replica group)",
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
a majority signed.

With --scope owner/<peer ID> or audit/<peer ID>, it signs a checkpoint of
that owner's records (announcements, grants, receipts) or of the reads of
them (claims, attestations): the scope's state alone, at its heads and the
global heads it depends on. Those are signed by a majority of the owner's
replica group (the nodes that follow the owner's scopes because the
membership puts them in its group, not the owner itself: an owner alone
could drop reads of its records or make up claims), computed from the
membership at those global heads; a group of fewer than two members makes
none. Each is trusted on its own. A node that starts following the scope
(it joined the owner's replica group) loads the latest one from a peer
instead of replaying the scope's history; nodes that hold the scope may
then prune what it covers. The group makes them by itself as the scope
grows, every ledger.scope_checkpoint_every entries (config; 10000 by default);
by hand, group members co-sign with --cosign and the same --scope: the
co-signer computes the checkpoint at the proposal's heads, so the scope
may move on meanwhile.

Exits 2 on a malformed scope or proposal, 5 on a node that may not sign
(not an admin; not in the owner's replica group), 6 if nothing was appended
since the latest, the proposal is of another state, or this node has not
caught up what the checkpoint depends on.`,
		Example: `  medmesh ledger checkpoint
  medmesh ledger checkpoint --json | jq -r .checkpoint
  # two admins: the first proposes, the second co-signs
  P=$(medmesh ledger checkpoint --json | jq -r .proposal)
  medmesh --repo ~/.medmesh-admin2 ledger checkpoint --cosign "$P"
  # an owner's scopes, on members of its replica group
  P=$(medmesh ledger checkpoint --scope owner/12D3KooW... --json | jq -r .proposal)
  medmesh --repo ~/.medmesh-lab2 ledger checkpoint --scope owner/12D3KooW... --cosign "$P"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var ck api.Checkpoint
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/ledger/checkpoint", api.CheckpointRequest{Scope: scope, Proposal: cosign}, &ck); err != nil {
				return err
			}
			return output(ck, func() {
				show(ck)
				if !ck.Trusted {
					flag := ""
					if ck.Scope != "global" {
						flag = " --scope " + ck.Scope
					}
					say("  not trusted yet: %d of %d signatures; another signer co-signs it with", len(ck.Signatures), ck.Quorum)
					say("  medmesh ledger checkpoint%s --cosign %s", flag, ck.Proposal)
				}
			})
		},
	}
	mk.Flags().StringVar(&cosign, "cosign", "", "co-sign this proposal (\"proposal\" of another signer's --json output)")
	mk.Flags().StringVar(&scope, "scope", "global", "the scope: global, owner/<peer ID> or audit/<peer ID>")
	var listScope string
	list := &cobra.Command{
		Use:   "checkpoints",
		Short: "List the ledger's trusted checkpoints, oldest first",
		Long: `List the trusted checkpoints of the global scope this node holds, oldest
first: the chain from the genesis to the latest; with --scope, those of an
owner or audit scope this node holds (each trusted on its own). "base"
marks the one this node's state of the scope started from (it never
replayed the entries behind it), "pruned" the one it pruned up to.
Exits 2 on a malformed scope.`,
		Example: `  medmesh ledger checkpoints
  medmesh ledger checkpoints --json | jq -r '.[-1].entry_count'
  medmesh ledger checkpoints --scope audit/12D3KooW... --json | jq '.[-1].base'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var cks []api.Checkpoint
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/ledger/checkpoints?scope="+url.QueryEscape(listScope), nil, &cks); err != nil {
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
	list.Flags().StringVar(&listScope, "scope", "global", "the scope: global, owner/<peer ID> or audit/<peer ID>")
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Drop ledger entries the latest checkpoint covers that this node does not need",
		Long: `Drop the bodies of ledger entries behind the latest trusted checkpoint of
each scope this node holds one of (the global scope's, and each owner or
audit scope's) that this node does not need: read claims, attestations,
receipts, assignments, grants, revokes and announcements about records it
does not own. It keeps everything about its own records (their audit
history), membership, keys and every other type, and the state itself:
queries, the audit and the digests are unchanged. ` + "`medmesh ledger verify`" + `
then replays from the checkpoints. In a network with scopes nothing of the
global scope is pruned: the bulk is in the owner and audit scopes, under
their own checkpoints (` + "`medmesh ledger checkpoint --scope`" + `).
Exits 6 when there is no checkpoint yet.`,
		Example: `  medmesh ledger prune
  medmesh ledger prune --json | jq .pruned_count
  medmesh ledger prune --json | jq '.scopes[] | {scope, pruned_count}'`,
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
				say("pruned %d entries (%d bytes); kept %d this node needs", r.PrunedCount, r.Size, r.KeptCount)
				for _, s := range r.Scopes {
					say("  %-60s pruned %d, kept %d behind checkpoint %s", s.Scope, s.PrunedCount, s.KeptCount, s.Checkpoint)
				}
			})
		},
	}
	return []*cobra.Command{mk, list, prune}
}
