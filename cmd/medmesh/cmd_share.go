package main

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/daemon"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/spf13/cobra"
)

func newGrantCmd() *cobra.Command {
	var to, purpose, expires string
	cmd := &cobra.Command{
		Use:   "grant RECORD --to PEERID [--purpose P] [--expires DURATION]",
		Short: "Share a record: wrap its key to the grantee's public key, on the ledger",
		Long: `Wrap the data key of every version of the record to the grantee's announced
HPKE public key and publish a signed grant entry per version (owner only).
Purposes: ` + strings.Join(ledger.Purposes(), ", ") + `.

--expires takes a positive duration (at most 87600h, ten years); without it
the grant lasts until revoked. An emergency grant may be issued by an
emergency authority for a record added with --emergency: it lasts 24h unless
asked for less (longer is refused), and every read under it is flagged for
review in the owner's audit.`,
		Example: `  medmesh grant bafkrei... --to 12D3KooW... --purpose treatment --expires 720h
  medmesh grant bafkrei... --to 12D3KooW... --purpose emergency   # on an emergency authority's node
  medmesh grant bafkrei... --to 12D3KooW... --json | jq -r .entry`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRecord(args[0]); err != nil {
				return err
			}
			if err := checkPeer("--to", to); err != nil {
				return err
			}
			if err := checkChoice("--purpose", purpose, ledger.Purposes()); err != nil {
				return err
			}
			if cmd.Flags().Changed("expires") {
				if d, err := time.ParseDuration(expires); err != nil || d <= 0 {
					return invalidf("give a positive duration such as 72h; leave --expires out for a grant that does not expire", "--expires %q: a grant's lifetime must be positive", expires)
				}
			}
			c, err := client()
			if err != nil {
				return err
			}
			// The lifetime goes to the daemon as typed, which checks it
			// again (and its upper bounds).
			req := api.GrantRequest{To: to, Purpose: purpose, Expires: expires}
			var gr api.Grant
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/records/"+pathEscape(args[0])+"/grants", req, &gr); err != nil {
				return err
			}
			return output(gr, func() {
				until := "until revoked"
				if !gr.Expires.IsZero() {
					until = "until " + gr.Expires.Local().Format(time.RFC1123)
					if gr.Purpose == ledger.PurposeEmergency && expires == "" {
						until += " (24h: the longest an emergency grant may last)"
					}
				}
				say("granted %s to %s for %s, %s (entry %s)", gr.ID, gr.Grantee, gr.Purpose, until, gr.Entry)
			})
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "grantee peer ID")
	cmd.Flags().StringVar(&purpose, "purpose", ledger.PurposeTreatment, strings.Join(ledger.Purposes(), ", "))
	cmd.Flags().StringVar(&expires, "expires", "", "grant lifetime, a positive duration such as 720h (default: until revoked; emergency: 24h)")
	cmd.MarkFlagRequired("to")
	return cmd
}

func newGrantsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "grants RECORD",
		Short: "List a record's current grants",
		Long: `List the current grants of every version of a record: grantee, purpose and
expiry ("expires": null when the grant does not expire; "expired": true once
it has).`,
		Example: `  medmesh grants bafkrei...
  medmesh grants bafkrei... --json | jq -r '.[] | select(.expired | not) | .grantee'`,
		Args: cobra.ExactArgs(1),
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
		Example: `  medmesh revoke bafkrei... --from 12D3KooW...
  medmesh revoke bafkrei... --from 12D3KooW... --json`,
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
	cmd := &cobra.Command{
		Use:   "audit RECORD",
		Short: "List who read a record, when and for what purpose (accounting of disclosures)",
		Example: `  medmesh audit bafkrei...
  medmesh audit bafkrei... --json`,
		Args: cobra.ExactArgs(1),
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
				fmt.Fprintln(tw, "TIME\tREADER\tVER\tPURPOSE\tREADS\tATTESTED BY\tREVIEW")
				for _, e := range evs {
					p := e.Purpose
					if e.StatedPurpose != "" {
						p += " (stated: " + e.StatedPurpose + ")"
					}
					if e.Emergency {
						p = "EMERGENCY " + p
					}
					by := "nobody (reader's report only)"
					if len(e.AttestedBy) > 0 {
						var short []string
						for _, a := range e.AttestedBy {
							short = append(short, shortPeer(a))
						}
						by = strings.Join(short, ",")
					}
					review := ""
					if e.Review {
						review = "REVIEW: " + strings.Join(e.Notes, "; ")
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\n", e.Time.Local().Format(time.RFC3339), e.Reader, e.Version, p, e.Count, by, review)
				}
				tw.Flush()
			})
		},
	}
	addAuditLogCmds(cmd)
	return cmd
}

func newStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status RECORD",
		Short: "Show a record's replication: wanted replicas, holders, reachable, providers",
		Long: `Show a record's replication as this node sees it: the wanted number of
replicas (owner included), the holders (the owner and peers with a "held"
receipt on the ledger), which of them this node is connected to, the
providers the DHT returns within 2 s, and when this node last verified a
holder's copy ("last_verified": null if never).`,
		Example: `  medmesh status bafkrei...
  medmesh status bafkrei... --json | jq '.holders | length'`,
		Args: cobra.ExactArgs(1),
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
				if st.Erased {
					say("record:        %s: erased by its owner; no node keeps it", st.ID)
					return
				}
				say("record:        %s", st.ID)
				say("replicas:      %d wanted", st.Replicas)
				say("holders:       %d %v", len(st.Holders), st.Holders)
				say("reachable:     %d %v", len(st.Reachable), st.Reachable)
				say("providers:     %d", len(st.Providers))
				if st.LastVerified.IsZero() {
					say("last verified: never")
				} else {
					say("last verified: %s", st.LastVerified.UTC().Format(time.RFC3339))
				}
			})
		},
	}
}

func newLedgerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Inspect and verify the gossip ledger",
		Long: `The ledger is the network's signed, hash-linked log: membership, keys, record
announcements, grants, revocations, the audit trail, replica receipts,
consents. Every node replays it to the same state.`,
		Example: `  medmesh ledger log --type member.add
  medmesh ledger heads
  medmesh ledger stat
  medmesh ledger verify`,
	}
	var typ string
	var limit int
	logCmd := &cobra.Command{
		Use:   "log",
		Short: "List ledger entries, newest first",
		Long: `List ledger entries, newest first: entry CID, type, author, time, parents.
For membership and record announcements the payload's clear-text fields are
shown too (--json "payload": the member's peer, org and roles; a record's id,
class, version, size, replicas) — exactly what every member can read.
Types: ` + strings.Join(ledger.Names(daemon.LedgerTypes()), ", ") + `.`,
		Example: `  medmesh ledger log --limit 20
  medmesh ledger log --type member.org --json | jq -r '.[].payload.org'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if typ != "" {
				if err := checkChoice("--type", typ, ledger.Names(daemon.LedgerTypes())); err != nil {
					return err
				}
			}
			if limit < 0 {
				return invalidf("", "--limit must be 0 (all) or more")
			}
			c, err := client()
			if err != nil {
				return err
			}
			var es []api.LedgerEntry
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if typ != "" {
				q.Set("type", typ)
			}
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/ledger/log?"+q.Encode(), nil, &es); err != nil {
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
	logCmd.Flags().StringVar(&typ, "type", "", "only entries of this type: "+strings.Join(ledger.Names(daemon.LedgerTypes()), ", "))
	logCmd.Flags().IntVar(&limit, "limit", 100, "at most this many entries (0: all)")
	var scope string
	heads := &cobra.Command{
		Use:   "heads",
		Short: "Print the ledger's heads and state digest (equal on nodes in the same state)",
		Long: `Print the heads (the newest entries) of a ledger scope and the digest of its
state. Without --scope: the global scope (membership, keys, roles, network
keys, implants), which every node follows, so its heads and digest are the
same on every node in the same state. --scope owner/<peer ID> shows the
scope of that member's records (announcements, grants, revocations,
receipts, erasures), --scope audit/<peer ID> the reads of them (claims,
attestations), as this node holds them; their digest is replayed from the
scope's entries and is the same on every node that follows the scope.`,
		Example: `  medmesh ledger heads --json | jq -r .state
  medmesh ledger heads --scope owner/$(medmesh id --json | jq -r .peer)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, _, err := ledger.ParseScope(scope); err != nil {
				return invalidf("a scope is global, owner/<peer ID> or audit/<peer ID>", "--scope: %v", err)
			}
			c, err := client()
			if err != nil {
				return err
			}
			var h api.Heads
			path := api.Prefix + "/ledger/heads"
			if scope != "" && scope != ledger.ScopeGlobal {
				path += "?" + url.Values{"scope": {scope}}.Encode()
			}
			if err := c.Do(ctxOf(cmd), "GET", path, nil, &h); err != nil {
				return err
			}
			return output(h, func() {
				say("scope %s", h.Scope)
				for _, x := range h.Heads {
					say("head  %s", x)
				}
				say("state %s", h.State)
			})
		},
	}
	heads.Flags().StringVar(&scope, "scope", ledger.ScopeGlobal, "the scope: global, owner/<peer ID> or audit/<peer ID>")
	var byScope bool
	stat := &cobra.Command{
		Use:   "stat",
		Short: "Print how many ledger entries this node stores, the scopes it follows, and whether it is caught up",
		Long: `Print what this node's ledger holds and whether it has caught up:
  entries  the entries stored on this node (--json: entry_count)
  bytes    their encoded size (--json: size, in bytes; the indexes and state
           derived from them are not counted)
  scopes   the scopes this node follows: "global" (membership, keys, roles;
           every node follows it), its own owner/<peer> and audit/<peer>
           scopes, and those of the owners it is involved with (see
           ` + "`medmesh ledger heads --help`" + `)
  synced   true once this node has caught up with every followed scope: no
           entry waits for missing parents, and the last catch-up sync of each
           scope with each connected peer that follows it left nothing that
           peer had missing here (another owner's scope with no follower
           connected: the last sync with its owner). A node alone in its
           network is synced; one with no peer reachable is not.
  behind   (--json) the followed scopes not caught up yet: [] when synced
It reads counters: it costs the same with ten entries or ten million.

--by-scope adds, for each scope this node follows or stores entries of,
its entries and bytes and why this node has them (--json: by_scope, a list
of {scope, followed, why, entry_count, size}):
  global   the global scope, which every node follows
  own      this node's own records (owner/) and the reads of them (audit/)
  group    the owner's replica group has this node: it keeps the owner's
           records and audit trail alive if the owner's disk fails
  grantee  the owner granted this node one of its records: it follows the
           owner's scope while a grant is live
  holder   this node holds one of the owner's records outside its group
  escrow   one of the owner's records is escrowed to this node (emergency)
  leaving  followed, but none of the above any more: this node leaves it
           within the hour (what it stored stays)
  reads    not followed: this node's own claims of its reads of the owner's
           records, written to the owner's audit scope
  left     not followed any more; what this node stored of it stays
The global scope comes first, then the scopes with the most entries. Why
costs what this node was granted or holds, not the ledger's size. The
table sums the reads scopes (and the left ones) in one row each when there
are more than three (a node that read from a hundred owners); --json lists
every scope.`,
		Example: `  medmesh ledger stat
  medmesh ledger stat --json | jq .entry_count
  medmesh ledger stat --json | jq -r '.behind[]'
  until medmesh ledger stat --json | jq -e .synced >/dev/null; do sleep 1; done
  medmesh ledger stat --by-scope
  medmesh ledger stat --by-scope --json | jq -r '.by_scope[] | select(.why=="grantee") | .scope'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var st api.LedgerStat
			path := api.Prefix + "/ledger/stat"
			if byScope {
				path += "?by_scope=1"
			}
			if err := c.Do(ctxOf(cmd), "GET", path, nil, &st); err != nil {
				return err
			}
			if byScope && st.ByScope == nil {
				st.ByScope = []api.LedgerScope{}
			}
			if st.Scopes == nil {
				st.Scopes = []string{}
			}
			if st.Behind == nil {
				st.Behind = []string{}
			}
			return output(st, func() {
				say("entries  %d", st.Entries)
				say("bytes    %s", humanSize(st.Size))
				say("scopes   %s", strings.Join(st.Scopes, ", "))
				if st.Synced {
					say("synced   yes")
				} else {
					say("synced   no: catching up with %s (from the peers that follow it, or none reachable)", strings.Join(st.Behind, ", "))
				}
				if byScope {
					say("")
					tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "SCOPE\tWHY\tFOLLOWED\tENTRIES\tBYTES")
					for _, x := range foldScopes(st.ByScope, foldScopesOver) {
						followed := "no"
						if x.Followed {
							followed = "yes"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", x.Scope, x.Why, followed, x.Entries, humanSize(x.Size))
					}
					tw.Flush()
				}
			})
		},
	}
	stat.Flags().BoolVar(&byScope, "by-scope", false, "also split the entries by scope, with why this node stores each")
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Re-check every signature, hash link and authority from genesis",
		Long: `Rebuild the ledger's state from its entries alone, re-checking every
signature, hash link and authority, and compare it with the stored state.
Exits 8 if they differ (see ` + "`medmesh help exit-codes`" + `).`,
		Example: `  medmesh ledger verify`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var v api.VerifyResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/ledger/verify", nil, &v); err != nil {
				return err
			}
			if !v.OK {
				return withCode(exitVerify, fmt.Errorf("ledger verification failed after %d entries: %s", v.Entries, v.Error), "")
			}
			return output(v, func() {
				say("ledger verified: %d entries, all signatures, links and authorities valid", v.Entries)
			})
		},
	}
	cmd.AddCommand(logCmd, heads, stat, verify)
	cmd.AddCommand(newCheckpointCmds()...)
	return cmd
}

// foldScopesOver is how many reads (or left) scopes `ledger stat
// --by-scope` lists one by one in its table before it sums them in a row.
const foldScopesOver = 3

// foldScopes returns rows with the reads scopes, and the left ones, summed
// in one row each ("N scopes") at the end when there are more than over of
// them; the other rows keep their order.
func foldScopes(rows []api.LedgerScope, over int) []api.LedgerScope {
	count := map[string]int{}
	for _, x := range rows {
		count[x.Why]++
	}
	out := make([]api.LedgerScope, 0, len(rows))
	var sums []api.LedgerScope
	for _, why := range []string{"reads", "left"} {
		if count[why] > over {
			sums = append(sums, api.LedgerScope{Scope: fmt.Sprintf("(%d scopes)", count[why]), Why: why})
		}
	}
	for _, x := range rows {
		folded := false
		for i := range sums {
			if sums[i].Why == x.Why {
				sums[i].Entries += x.Entries
				sums[i].Size += x.Size
				folded = true
			}
		}
		if !folded {
			out = append(out, x)
		}
	}
	return append(out, sums...)
}
