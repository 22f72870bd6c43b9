package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/medmesh/medmesh/node/api"
	"github.com/spf13/cobra"
)

func newDeleteCmd() *cobra.Command {
	var version int
	cmd := &cobra.Command{
		Use:   "delete RECORD [--version N]",
		Short: "Erase a record you own, on every node (all versions, or one)",
		Long: `Erase a record this node owns: a signed record.erase entry on the ledger,
which only the record's owner may sign. Every node then stops serving and
reading it at once and deletes what it keeps of it: its blocks (the owner's
copy and every replica), its wrapped data key, its block index entries and,
for a DICOM study, its rows in the study index. ` + "`get`" + ` answers "erased"
everywhere (exit 4), ` + "`ls`" + ` no longer lists it and ` + "`status`" + ` shows no holders.
The ledger entries about the record stay: they are its audit.

Without --version every version is erased; with it, only that one.

What erasure cannot do: a node that kept a copy of the ciphertext together
with an envelope it could open (a grantee's node modified to keep what it
read, or the plaintext a reader saved) keeps what it has. Erasure removes the
record from every honest node; it cannot reach into a dishonest one. On disk,
deleted blocks are gone from the store at once; the storage engine rewrites
the space they took in the background.`,
		Example: `  medmesh delete bafkrei...
  medmesh delete bafkrei... --version 2 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRecord(args[0]); err != nil {
				return err
			}
			if version < 0 {
				return invalidf("versions are numbered from 1", "--version: bad version %d", version)
			}
			c, err := client()
			if err != nil {
				return err
			}
			path := api.Prefix + "/records/" + pathEscape(args[0])
			if version > 0 {
				path += "?version=" + strconv.Itoa(version)
			}
			var res api.DeleteResult
			if err := c.Do(ctxOf(cmd), "DELETE", path, nil, &res); err != nil {
				return err
			}
			return output(res, func() {
				vs := make([]string, len(res.Versions))
				for i, v := range res.Versions {
					vs[i] = strconv.Itoa(v)
				}
				say("erased record %s (versions %s) at %s; entry %s", res.ID, strings.Join(vs, ", "), res.Time.Format(time.RFC3339), res.Entry)
				say("every node deletes its copy as the entry reaches it")
			})
		},
	}
	cmd.Flags().IntVar(&version, "version", 0, "erase only this version (default: all)")
	return cmd
}
