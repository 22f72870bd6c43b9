package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/medmesh/medmesh/internal/buildinfo"
	"github.com/medmesh/medmesh/node/api"
	"github.com/spf13/cobra"
)

func versionInfo() api.VersionInfo {
	bi := buildinfo.Get()
	return api.VersionInfo{Version: bi.Version, Commit: bi.Commit, Go: bi.Go, Platform: bi.Platform}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print medmesh's version, the commit it was built from and its Go toolchain",
		Long: `Print the version of this medmesh binary, the commit it was built from and the
Go toolchain that built it. A release build states its version and commit
(scripts/build.sh passes them to the linker); otherwise the version is "devel"
and the commit what the Go toolchain recorded ("unknown" if nothing). A running
daemon exports the same as the medmesh_build_info metric.`,
		Example: `  medmesh version
  medmesh version --json | jq -r .commit`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := versionInfo()
			return output(v, func() {
				say("medmesh %s", v.Version)
				say("commit:   %s", v.Commit)
				say("go:       %s", v.Go)
				say("platform: %s", v.Platform)
			})
		},
	}
}

func newHealthCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "health",
		Short: "This node's view of the network: members connected, records short of copies, ledger sync",
		Long: `Report this node's health as it sees the network:

  members      the other members of the network, how many are connected, and
               which are not
  records      the records this node owns (every version) and those with fewer
               reachable holders, itself included, than the replicas they want;
               the records it holds as replicas for others
  ledger       its heads and entries waiting for their parents; its heads are
               compared with up to 8 connected members' (a member whose entries
               this node still lacks after syncing with it is "ahead")

The node is unhealthy when it is not a member yet, is connected to none of the
other members, owns records that lack reachable copies, or its ledger stays
behind a connected member's after a sync. Members that are not connected and
entries waiting for parents are warnings only.

Exit codes: 0 healthy; 7 unhealthy (the report is still printed on stdout,
with --json too, and the problems on stderr); 3 no daemon runs on the repo.
Use it from monitoring (a systemd timer, Nagios, a Kubernetes probe).`,
		Example: `  medmesh health
  medmesh health --json | jq .ledger
  medmesh health >/dev/null || echo "medmesh needs attention"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var h api.Health
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/health", nil, &h); err != nil {
				return err
			}
			if err := output(h, func() { printHealth(h) }); err != nil {
				return err
			}
			if !h.Healthy {
				return withCode(exitUnavailable, errors.New("unhealthy: "+strings.Join(h.Problems, "; ")), "")
			}
			return nil
		},
	}
}

func printHealth(h api.Health) {
	state := "healthy"
	if !h.Healthy {
		state = "UNHEALTHY"
	}
	say("%s (peer %s)", state, h.Peer)
	say("members:   %d of %d others connected", h.ConnectedCount, h.MemberCount)
	for _, p := range h.Disconnected {
		say("           not connected: %s", p)
	}
	say("records:   %d owned, %d under-replicated; %d held for others", h.OwnedCount, h.UnderReplicatedCount, h.HeldCount)
	for _, id := range h.UnderReplicatedIDs {
		say("           under-replicated: %s", id)
	}
	sync := "in sync"
	if !h.Ledger.InSync {
		sync = fmt.Sprintf("behind %d members", len(h.Ledger.Ahead))
	}
	say("ledger:    %s; %d heads, same as %d of %d members asked; %d entries waiting for parents", sync, h.Ledger.HeadCount, h.Ledger.AgreeCount, h.Ledger.ComparedCount, h.Ledger.PendingCount)
	if n := len(h.Ledger.NoGossip); n > 0 || h.Ledger.GossipRepairs > 0 {
		say("gossip:    %d connected members without gossip now; GossipSub's streams repaired %d times since the daemon started", n, h.Ledger.GossipRepairs)
	}
	for _, p := range h.Problems {
		say("problem:   %s", p)
	}
	for _, w := range h.Warnings {
		say("warning:   %s", w)
	}
}
