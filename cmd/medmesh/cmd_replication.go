package main

import (
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/daemon"
	"github.com/spf13/cobra"
)

func newGCCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "gc",
		Short: "Remove blocks of records this node no longer owns, holds a replica of, or may read",
		Long: `Delete from the local blockstore the blocks of records this node neither owns,
pins as a replica holder, nor holds a current grant for. Pinned blocks and
blocks of records being fetched or added are never removed; ledger entries
are never touched.`,
		Example: `  medmesh gc
  medmesh gc --json | jq .removed_size`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var res daemon.GCResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/gc", nil, &res); err != nil {
				return err
			}
			return output(res, func() {
				say("removed %d blocks (%d bytes); kept %d records", res.RemovedBlocks, res.RemovedBytes, res.KeptRecords)
				if res.SkippedInProgress > 0 {
					say("skipped %d blocks of records being fetched or added", res.SkippedInProgress)
				}
			})
		},
	}
}

func newReprovideCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reprovide",
		Short: "Re-announce every block this node owns or holds on the DHT now",
		Long: `Announce every block of the records this node owns or holds a replica of on
the DHT now, instead of waiting for the periodic reprovide, so that peers find
this node as a provider (after a network change, say).`,
		Example: `  medmesh reprovide
  medmesh reprovide --json | jq .blocks_per_second`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var res daemon.ReprovideResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/reprovide", nil, &res); err != nil {
				return err
			}
			return output(res, func() {
				say("reprovided %d blocks (%d failed) at %.0f blocks/s", res.Blocks, res.Failed, res.PerSec)
			})
		},
	}
}
