package main

import (
	"github.com/medmesh/medmesh/node/api"
	"github.com/spf13/cobra"
)

// gcResult mirrors daemon.GCResult (the CLI does not import the daemon).
type gcResult struct {
	RemovedBlocks     int   `json:"removed_blocks"`
	RemovedBytes      int64 `json:"removed_bytes"`
	KeptRecords       int   `json:"kept_records"`
	SkippedInProgress int   `json:"skipped_in_progress"`
}

type reprovideResult struct {
	Blocks int     `json:"blocks"`
	Failed int     `json:"failed"`
	PerSec float64 `json:"blocks_per_second"`
}

func newGCCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "gc",
		Short: "Remove blocks of records this node no longer owns, holds a replica of, or may read",
		Long: `Delete from the local blockstore the blocks of records this node neither owns,
pins as a replica holder, nor holds a current grant for. Pinned blocks and
blocks of records being fetched or added are never removed; ledger entries
are never touched.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var res gcResult
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
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var res reprovideResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/reprovide", nil, &res); err != nil {
				return err
			}
			return output(res, func() {
				say("reprovided %d blocks (%d failed) at %.0f blocks/s", res.Blocks, res.Failed, res.PerSec)
			})
		},
	}
}
