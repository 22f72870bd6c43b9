package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/medmesh/medmesh/node/api"
	"github.com/spf13/cobra"
)

func newGrantCmd() *cobra.Command {
	var to, purpose string
	var expires time.Duration
	cmd := &cobra.Command{
		Use:   "grant RECORD --to PEERID [--purpose P] [--expires DURATION]",
		Short: "Share a record: wrap its key to the grantee's public key, on the ledger",
		Long: `Wrap the record's data key to the grantee's announced HPKE public key and publish
a signed grant entry. Purposes: treatment, research, operations, emergency.
An emergency grant may be issued by an emergency authority for a record added
with --emergency; it expires within 24h and is flagged in the audit.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRecord(args[0]); err != nil {
				return err
			}
			if err := checkPeer("--to", to); err != nil {
				return err
			}
			c, err := client()
			if err != nil {
				return err
			}
			req := api.GrantRequest{To: to, Purpose: purpose}
			if expires > 0 {
				req.Expires = expires.String()
			}
			var gr api.Grant
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/records/"+pathEscape(args[0])+"/grants", req, &gr); err != nil {
				return err
			}
			return output(gr, func() { say("granted %s to %s for %s (entry %s)", gr.ID, gr.Grantee, gr.Purpose, gr.Entry) })
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "grantee peer ID")
	cmd.Flags().StringVar(&purpose, "purpose", "treatment", "treatment, research, operations or emergency")
	cmd.Flags().DurationVar(&expires, "expires", 0, "grant lifetime, e.g. 720h (default: no expiry; emergency: 24h)")
	cmd.MarkFlagRequired("to")
	return cmd
}

func newGrantsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "grants RECORD",
		Short: "List a record's current grants",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRecord(args[0]); err != nil {
				return err
			}
			c, err := client()
			if err != nil {
				return err
			}
			var gs []api.Grant
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/records/"+pathEscape(args[0])+"/grants", nil, &gs); err != nil {
				return err
			}
			if gs == nil {
				gs = []api.Grant{}
			}
			return output(gs, func() {
				tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "GRANTEE\tPURPOSE\tEXPIRES")
				for _, g := range gs {
					exp := "never"
					if !g.Expires.IsZero() {
						exp = g.Expires.Format(time.RFC3339)
					}
					if g.Expired {
						exp += " (expired)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", g.Grantee, g.Purpose, exp)
				}
				tw.Flush()
			})
		},
	}
}

func newRevokeCmd() *cobra.Command {
	var from string
	cmd := &cobra.Command{
		Use:   "revoke RECORD --from PEERID",
		Short: "Revoke a grant: the grantee's node stops decrypting and holders stop serving it",
		Long: `Publish a revoke entry. From then on the grantee's node refuses to decrypt the
record and every holder refuses its block requests. Revocation cannot take back
what the grantee already decrypted: to protect future changes, store them with
` + "`medmesh update`" + `, which uses a fresh key the revoked peer never receives.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRecord(args[0]); err != nil {
				return err
			}
			if err := checkPeer("--from", from); err != nil {
				return err
			}
			c, err := client()
			if err != nil {
				return err
			}
			var res api.RevokeResult
			if err := c.Do(ctxOf(cmd), "DELETE", api.Prefix+"/records/"+pathEscape(args[0])+"/grants/"+pathEscape(from), nil, &res); err != nil {
				return err
			}
			return output(res, func() { say("revoked %s's access to %s", from, args[0]) })
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "peer ID whose grant to revoke")
	cmd.MarkFlagRequired("from")
	return cmd
}

func newAuditCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "audit RECORD",
		Short: "List who read a record, when and for what purpose (accounting of disclosures)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRecord(args[0]); err != nil {
				return err
			}
			c, err := client()
			if err != nil {
				return err
			}
			var evs []api.AccessEvent
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/records/"+pathEscape(args[0])+"/audit", nil, &evs); err != nil {
				return err
			}
			if evs == nil {
				evs = []api.AccessEvent{}
			}
			return output(evs, func() {
				tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tREADER\tVERSION\tPURPOSE")
				for _, e := range evs {
					p := e.Purpose
					if e.Emergency {
						p += " (EMERGENCY: review)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", e.Time.Format(time.RFC3339), e.Reader, e.Version, p)
				}
				tw.Flush()
			})
		},
	}
}

func newStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status RECORD",
		Short: "Show a record's replication: wanted, holders with receipts, reachable, providers",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRecord(args[0]); err != nil {
				return err
			}
			c, err := client()
			if err != nil {
				return err
			}
			var st api.Status
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/records/"+pathEscape(args[0])+"/status", nil, &st); err != nil {
				return err
			}
			return output(st, func() {
				say("record:    %s", st.ID)
				say("replicas:  %d", st.Replicas)
				say("holders:   %d %v", len(st.Holders), st.Holders)
				say("reachable: %d %v", len(st.Reachable), st.Reachable)
				say("providers: %d", len(st.Providers))
			})
		},
	}
}

func newLedgerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ledger", Short: "Inspect and verify the gossip ledger"}
	var typ string
	var limit int
	logCmd := &cobra.Command{
		Use:   "log",
		Short: "List ledger entries, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var es []api.LedgerEntry
			if err := c.Do(ctxOf(cmd), "GET", fmt.Sprintf("%s/ledger/log?type=%s&limit=%d", api.Prefix, typ, limit), nil, &es); err != nil {
				return err
			}
			if es == nil {
				es = []api.LedgerEntry{}
			}
			return output(es, func() {
				tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tTYPE\tAUTHOR\tCID")
				for _, e := range es {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Time.Format(time.RFC3339), e.Type, shortPeer(e.Author), e.Entry)
				}
				tw.Flush()
			})
		},
	}
	logCmd.Flags().StringVar(&typ, "type", "", "only entries of this type (e.g. grant, member.add)")
	logCmd.Flags().IntVar(&limit, "limit", 100, "at most this many entries (0: all)")
	heads := &cobra.Command{
		Use:   "heads",
		Short: "Print the ledger's heads and state digest (equal on nodes in the same state)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var h api.Heads
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/ledger/heads", nil, &h); err != nil {
				return err
			}
			return output(h, func() {
				for _, x := range h.Heads {
					say("head  %s", x)
				}
				say("state %s", h.State)
			})
		},
	}
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Re-check every signature, hash link and authority from genesis",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var v api.VerifyResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/ledger/verify", nil, &v); err != nil {
				return err
			}
			if err := output(v, func() {
				if v.OK {
					say("ledger verified: %d entries, all signatures, links and authorities valid", v.Entries)
				}
			}); err != nil {
				return err
			}
			if !v.OK {
				return fmt.Errorf("ledger verification failed: %s", v.Error)
			}
			return nil
		},
	}
	cmd.AddCommand(logCmd, heads, verify)
	return cmd
}
