package main

import (
	"fmt"

	"github.com/medmesh/medmesh/node/api"
	"github.com/spf13/cobra"
)

func newRepoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "Inspect the node's repository (blocks, records, disk use)",
	}
	cmd.AddCommand(newRepoStatCmd())
	return cmd
}

func newRepoStatCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "stat",
		Short: "Count the blocks and records this node stores, and the orphan blocks gc would remove",
		Long: `Count what the node's blockstore holds: every block (record chunks, manifests,
block lists, ledger entries) and its size; the records whose blocks the node
keeps (owned, every version, and held as replicas); and the orphan blocks,
which belong to nothing the node keeps (for example the blocks of an add
whose daemon was killed): ` + "`medmesh gc`" + ` removes them. disk_size is what the
datastore occupies on disk; it stays above size until badger reclaims the
space of deleted blocks. Sizes are in bytes. Needs the running daemon.`,
		Example: `  medmesh repo stat
  medmesh repo stat --json | jq .orphan_block_count`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var st api.RepoStat
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/repo/stat", nil, &st); err != nil {
				return err
			}
			return output(st, func() {
				say("blocks:         %d (%s)", st.BlockCount, humanSize(st.Size))
				say("ledger entries: %d", st.LedgerEntryCount)
				say("records:        %d (%d owned, %d held as replicas)", st.RecordCount, st.OwnedRecordCount, st.HeldRecordCount)
				say("orphan blocks:  %d (%s)", st.OrphanBlockCount, humanSize(st.OrphanSize))
				if st.RunningAddCount > 0 {
					say("adds running:   %d", st.RunningAddCount)
				}
				say("on disk:        %s", humanSize(st.DiskSize))
				if st.OrphanBlockCount > 0 {
					say("run `medmesh gc` to remove the orphan blocks")
				}
			})
		},
	}
}

// humanSize renders bytes for people: "1.2 GiB (1288490188 bytes)".
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", float64(n)/float64(div), "KMGTPE"[exp], n)
}
