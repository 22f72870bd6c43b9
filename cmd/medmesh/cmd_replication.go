package main

import (
	"github.com/medmesh/medmesh/node/api"
	"github.com/spf13/cobra"
)

func newGCCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "gc",
		Short: "Remove the blocks that belong to nothing this node keeps",
		Long: `Delete from the local blockstore every block that no record this node keeps
references: kept are the records it owns (every version), holds as a replica,
may read under a current grant, or is fetching or adding now, and every
ledger entry. What goes: the blocks of adds whose daemon was killed, of
replicas this node released, of fetches that did not finish. Then badger is
asked to give the disk space back. ` + "`medmesh repo stat`" + ` shows what gc would remove.
A daemon that starts after an add was interrupted does the same by itself.`,
		Example: `  medmesh gc
  medmesh gc --json | jq .removed_size`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var res api.GCResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/gc", nil, &res); err != nil {
				return err
			}
			return output(res, func() {
				say("removed %d blocks (%s); kept %d blocks of %d records", res.RemovedBlockCount, humanSize(res.RemovedSize), res.KeptBlockCount, res.KeptRecordCount)
				if res.InterruptedAddCount > 0 {
					say("cleaned up after %d interrupted adds", res.InterruptedAddCount)
				}
				if res.SkippedBlockCount > 0 {
					say("skipped %d blocks of records being fetched or added", res.SkippedBlockCount)
				}
				say("datastore on disk: %s", humanSize(res.DiskSize))
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
			var res api.ReprovideResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/reprovide", nil, &res); err != nil {
				return err
			}
			return output(res, func() {
				say("reprovided %d blocks (%d failed) at %.0f blocks/s", res.Blocks, res.Failed, res.PerSec)
			})
		},
	}
}
