package main

import (
	"strings"

	"github.com/medmesh/medmesh/node/api"
	"github.com/spf13/cobra"
)

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Rotate this node's key-wrapping key",
		Long: `A node has two keys: its Ed25519 identity (its peer ID) and its HPKE
key-wrapping key (ML-KEM-768+X25519), to which the data keys of its own
records and of the records shared with it are sealed. ` + "`keys rotate`" + ` replaces
the key-wrapping key; the identity stays (see ` + "`medmesh help keys rotate`" + `).`,
		Example: `  medmesh keys rotate
  medmesh keys rotate --destroy-old --json`,
	}
	var destroyOld bool
	rotate := &cobra.Command{
		Use:   "rotate [--destroy-old]",
		Short: "Replace the key-wrapping key; grants keep working (daemon running)",
		Long: `Replace this node's key-wrapping (HPKE) key with a new one and announce it on
the ledger (key.announce). The node re-seals the data key it keeps of each
record it owns to the new key at once. The owners of the records shared with
it notice the announcement and re-issue each live grant (same record, purpose
and expiry) sealed to the new key, so grants keep working; an owner that is
offline does so when it comes back.

The previous key stays in the repo (kem.<id>.key, 0600) until nothing needs
it. --destroy-old marks every previous key to be destroyed: the daemon
destroys one once no owned record's key is sealed to it, every live grant to
this node has been re-issued to a key it keeps (or expired, or was revoked),
and no emergency escrow envelope is sealed to it. "old_keys" says what still
needs each. A backup taken before the rotation holds the old key.

The Ed25519 identity is not rotated: it is the node's peer ID, named by its
membership, its records' ownership, its grants and receipts on the ledger. A
new identity is a new node: invite it, have owners grant it, and remove the
old one (` + "`network remove`" + `).`,
		Example: `  medmesh keys rotate
  medmesh keys rotate --destroy-old --json | jq '.old_keys'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var res api.KeyRotateResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/keys/rotate", api.KeyRotateRequest{DestroyOld: destroyOld}, &res); err != nil {
				return err
			}
			return output(res, func() {
				say("new key-wrapping key %s announced (entry %s); %d owned records' keys re-sealed to it", res.KeyID, res.Entry, res.RewrappedCount)
				for _, k := range res.OldKeys {
					state := "kept"
					if k.Destroy {
						state = "to be destroyed"
					}
					if len(k.NeededBy) == 0 {
						say("previous key %s: %s; nothing needs it", k.KeyID, state)
					} else {
						say("previous key %s: %s once nothing needs it; still needed by: %s", k.KeyID, state, strings.Join(k.NeededBy, "; "))
					}
				}
			})
		},
	}
	rotate.Flags().BoolVar(&destroyOld, "destroy-old", false, "destroy the previous keys once nothing needs them")
	cmd.AddCommand(rotate)
	return cmd
}
