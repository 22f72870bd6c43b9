package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/daemon"
	"github.com/medmesh/medmesh/node/membership"
	"github.com/medmesh/medmesh/node/repo"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/spf13/cobra"
)

func newInitCmd() *cobra.Command {
	var listen []string
	var apiAddr, org string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a node repository: identity, key-wrapping key, config, datastore",
		Long: `Create a node repository. It holds the node's Ed25519 identity and its HPKE
(ML-KEM-768+X25519) key-wrapping key in 0600 files; they never leave it.

Defaults: libp2p on TCP 4101 on all interfaces, API on 127.0.0.1:5101.
Use --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:0 to let the OS pick ports,
so that several nodes can run on one machine.

--org is this node's organisation. Members see it on the ledger and
replication spreads copies across organisations. The admin's --org on
` + "`network invite`" + ` takes precedence; without one, the daemon states this one
on the ledger once it is a member.`,
		Example: `  medmesh init --repo /srv/medmesh --org "St Mary"
  medmesh init --repo /tmp/n1 --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:0 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if org != "" {
				if err := ledger.CheckOrg(org); err != nil {
					return invalidf("", "--org: %v", err)
				}
			}
			if err := repo.ValidateAPIAddr(apiAddr); err != nil {
				return invalidf("", "--api: %v", err)
			}
			r, err := repo.Init(repoDir(), repo.InitOptions{Listen: listen, API: apiAddr, Org: org})
			if err != nil {
				return err
			}
			id, _ := r.PeerID()
			return output(initResult{Peer: id.String(), Repo: r.Dir, Org: org}, func() {
				say("initialised medmesh repo %s", r.Dir)
				say("peer ID: %s", id)
				say("next: `medmesh network create --repo %s --name NAME` (first node) or `medmesh network join --repo %s TOKEN`", r.Dir, r.Dir)
			})
		},
	}
	cmd.Flags().StringSliceVar(&listen, "listen", nil, "libp2p listen multiaddr (repeatable; default "+repo.DefaultListen+")")
	cmd.Flags().StringVar(&apiAddr, "api", repo.DefaultAPI, "API address (loopback only)")
	cmd.Flags().StringVar(&org, "org", "", "organisation label (used to spread replicas across organisations)")
	return cmd
}

// initResult is what `init --json` prints.
type initResult struct {
	Peer string `json:"peer"`
	Repo string `json:"repo"`
	Org  string `json:"org"`
}

func newIDCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "id",
		Short: "Print this node's peer ID, addresses and public keys (daemon not needed)",
		Long: `Print this node's peer ID, listen addresses, key-wrapping public key and
organisation. With a daemon running it also says whether the node is a member
(and admin) of its network and how many peers it is connected to ("daemon":
true); without one, those come from the repo alone ("daemon": false) and
member, admin and peer_count are false and 0.`,
		Example: `  medmesh id
  medmesh id --json | jq -r .peer`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, err := localID()
			if err != nil {
				return err
			}
			// A running daemon knows its real addresses and network state.
			if c, err := api.ClientForRepo(repoDir()); err == nil {
				var live api.IDInfo
				if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/id", nil, &live); err == nil {
					info = &live
					info.Daemon = true
				}
			}
			if info.Addrs == nil {
				info.Addrs = []string{}
			}
			return output(info, func() {
				say("peer ID:        %s", info.Peer)
				for _, a := range info.Addrs {
					say("address:        %s", a)
				}
				say("KEM public key: %s…", info.KEMPublicKey[:32])
				if info.Org != "" {
					say("organisation:   %s", info.Org)
				}
				if info.Invitation != "" && info.Invitation != "admitted" {
					say("invitation:     %s", info.Invitation)
				}
				if info.NetworkID != "" && info.Daemon {
					say("network:        %s (member: %v, admin: %v, peers: %d)", info.NetworkID, info.Member, info.Admin, info.PeerCount)
				} else if info.NetworkID != "" {
					say("network:        %s (no daemon running)", info.NetworkID)
				}
			})
		},
	}
}

func localID() (*api.IDInfo, error) {
	r, err := repo.Open(repoDir())
	if err != nil {
		return nil, err
	}
	id, err := r.PeerID()
	if err != nil {
		return nil, err
	}
	kem, err := r.KEMKey()
	if err != nil {
		return nil, err
	}
	info := &api.IDInfo{Peer: id.String(), KEMPublicKey: base64.StdEncoding.EncodeToString(kem.Public()), Org: r.Config.Org}
	for _, a := range r.Config.Listen {
		info.Addrs = append(info.Addrs, a+"/p2p/"+id.String())
	}
	if r.HasNetwork() {
		if n, err := r.Network(); err == nil {
			if nid, err := ledger.NetworkIDOf(n.Genesis); err == nil {
				info.NetworkID = nid.String()
			}
		}
	}
	return info, nil
}

func newNetworkCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Create, invite to and join a private network",
		Long: `A network is private: its members are admitted on the ledger by its admin and
its traffic is encrypted with a pre-shared key that only invite tokens carry.
The first node creates it (and is its admin); the admin invites each other
node by peer ID; the invited node joins with the token.`,
		Example: `  # on the first node (stopped)
  medmesh network create --name regional-imaging --org "St Mary"
  # on the admin's node (running), for each clinic
  medmesh network invite --peer 12D3KooW... --org "Central Lab"
  # on the new node (stopped)
  medmesh network join medmesh-invite-1:...`,
	}
	var name, createOrg string
	var singleScope bool
	create := &cobra.Command{
		Use:   "create --name NAME [--org ORG]",
		Short: "Make this node the first member and admin of a new network (node stopped)",
		Long: `Make this node the first member and the admin of a new network: write the
network's genesis entry and a fresh pre-shared key into the repo. The node's
organisation (--org, else the one given to ` + "`init`" + `) is stated on the ledger by
the daemon when it starts.

The network is scoped: membership and keys go to every node, while the
entries about one clinic's records (announcements, grants, receipts) and the
reads of them go only to the nodes involved with them (see ` + "`medmesh ledger heads --help`" + `).
--single-scope founds a network as before scopes, where every entry goes to
every node (for comparison; ` + "`ledger prune`" + ` drops only such entries today).`,
		Example: `  medmesh network create --repo /srv/medmesh --name regional-imaging --org "St Mary"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return invalidf("e.g. --name regional-imaging", "--name is required")
			}
			if err := ledger.CheckNetworkName(name); err != nil {
				return invalidf("", "--name: %v", err)
			}
			if createOrg != "" {
				if err := ledger.CheckOrg(createOrg); err != nil {
					return invalidf("", "--org: %v", err)
				}
			}
			r, err := repo.Open(repoDir())
			if err != nil {
				return err
			}
			if r.HasNetwork() {
				return withCode(exitConflict, fmt.Errorf("%s already belongs to a network", r.Dir), "use a new repo for another network")
			}
			key, err := r.Identity()
			if err != nil {
				return err
			}
			var opts []ledger.GenesisOption
			if !singleScope {
				opts = append(opts, ledger.WithScopes())
			}
			gen, nid, err := ledger.NewGenesis(key, name, time.Now(), daemon.LedgerTypes(), opts...)
			if err != nil {
				return err
			}
			psk, err := repo.NewPSK()
			if err != nil {
				return err
			}
			if createOrg != "" && createOrg != r.Config.Org {
				r.Config.Org = createOrg
				if err := r.SaveConfig(); err != nil {
					return err
				}
			}
			if err := r.SetNetwork(&repo.Network{Genesis: gen, PSK: psk}); err != nil {
				return err
			}
			return output(networkResult{NetworkID: nid.String(), Name: name, Org: r.Config.Org, Bootstrap: []string{}}, func() {
				say("created network %q (%s); this node is its admin", name, nid)
				say("next: `medmesh daemon --repo %s`, then `medmesh network invite --repo %s --peer PEERID` for each clinic", r.Dir, r.Dir)
			})
		},
	}
	create.Flags().StringVar(&name, "name", "", "network name")
	create.Flags().StringVar(&createOrg, "org", "", "this node's organisation (default: the one given to init)")
	create.Flags().BoolVar(&singleScope, "single-scope", false, "every entry goes to every node, as before scopes (issue #16)")

	var peerID, org, expires string
	var roles []string
	invite := &cobra.Command{
		Use:   "invite --peer PEERID",
		Short: "Invite a node by its peer ID and print its invitation token (admin, daemon running)",
		Long: `Invite a node and print a one-line invitation token as the last line.

The token is sealed to the invited node: the peer ID carries the node's
Ed25519 public key, and only that node's identity key opens the token (as age
encrypts to an ssh-ed25519 key), so it is useless to anyone else who sees it.
It carries the network's current pre-shared key and a one-time secret. The
node joins with ` + "`network join TOKEN`" + `; when its daemon starts, it presents
the secret to this node, which then admits it (a signed member.add entry):
an invitation works once, only for that node, and only until it expires
(--expires, default 72h, at most 720h). Until then nobody is admitted.

--org sets the member's organisation on the ledger; without it, the member
states its own (from its ` + "`init --org`" + `) once admitted. --role emergency lets
the member issue short emergency grants for records added with --emergency.

Inviting a node that is already a member gives it the network's current key
(after it missed a key rotation while offline: ` + "`network remove`" + `); its
organisation and roles stay.`,
		Example: `  medmesh network invite --peer 12D3KooWAbc... --org "Central Lab"
  medmesh network invite --peer 12D3KooWAbc... --role emergency --expires 24h --json | jq -r .token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkPeer("--peer", peerID); err != nil {
				return err
			}
			if org != "" {
				if err := ledger.CheckOrg(org); err != nil {
					return invalidf("", "--org: %v", err)
				}
			}
			for _, r := range roles {
				if err := checkChoice("--role", r, []string{ledger.RoleEmergency}); err != nil {
					return err
				}
			}
			if expires != "" {
				if d, err := time.ParseDuration(expires); err != nil || d <= 0 || d > membership.MaxInviteLifetime {
					return invalidf("use a duration like 72h, at most 720h", "--expires: bad duration %q", expires)
				}
			}
			c, err := client()
			if err != nil {
				return err
			}
			var res api.InviteResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/network/invite", api.InviteRequest{Peer: peerID, Org: org, Roles: roles, Expires: expires}, &res); err != nil {
				return err
			}
			return output(res, func() {
				say("invited %s (until %s); give its operator this token, only that node can use it, once:", res.Peer, res.Expires.Format(time.RFC3339))
				say("%s", res.Token)
			})
		},
	}
	invite.Flags().StringVar(&peerID, "peer", "", "peer ID of the node to admit")
	invite.Flags().StringVar(&org, "org", "", "organisation label of the new member")
	invite.Flags().StringSliceVar(&roles, "role", nil, "extra roles: emergency (may grant emergency access)")
	invite.Flags().StringVar(&expires, "expires", "", "how long the invitation can be used (default 72h, at most 720h)")

	join := &cobra.Command{
		Use:   "join TOKEN",
		Short: "Store an invitation; the next daemon start redeems it with the inviter (node stopped)",
		Long: `Open an invitation token with this node's identity key and store what its
daemon needs: the network's genesis and pre-shared key, the inviter's
addresses (bootstrap peers) and the invitation's one-time secret. When the
daemon starts it presents the secret to the inviter, which admits the node;
` + "`medmesh id`" + ` shows "invitation": "pending", "admitted" or "refused: why".

A token for another node does not open (exit 5: ask the admin for one for
this node's ID, ` + "`medmesh id`" + `); an expired one is refused (exit 6).`,
		Example: `  medmesh network join medmesh-invite-2:omF...
  medmesh daemon`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := repo.Open(repoDir())
			if err != nil {
				return err
			}
			res, err := membership.Join(r, args[0], time.Now())
			switch {
			case errors.Is(err, membership.ErrNotForThisNode):
				return withCode(exitForbidden, err, "")
			case errors.Is(err, membership.ErrExpired):
				return withCode(exitConflict, err, "")
			case errors.Is(err, membership.ErrOtherNetwork):
				return withCode(exitConflict, err, "use a new repo to join a different one")
			case errors.Is(err, membership.ErrBadToken):
				return withCode(exitInvalid, err, "")
			case err != nil:
				return err
			}
			nid, err := ledger.NetworkIDOf(res.Genesis)
			if err != nil {
				return invalidf("", "invitation carries an invalid network genesis: %v", err)
			}
			name := ""
			if g, err := ledger.DecodeEntry(res.Genesis); err == nil {
				if d := ledger.Describe(g); d != nil {
					name, _ = d["name"].(string)
				}
			}
			return output(networkResult{NetworkID: nid.String(), Name: name, Org: r.Config.Org, Bootstrap: res.Addrs}, func() {
				say("joined network %s; bootstrap: %s", nid, strings.Join(res.Addrs, ", "))
				say("next: `medmesh daemon --repo %s` (it redeems the invitation, valid until %s)", r.Dir, res.Expires.Format(time.RFC3339))
			})
		},
	}
	var rmPeer, rmReason, rmOverlap string
	remove := &cobra.Command{
		Use:   "remove --peer PEERID [--reason TEXT]",
		Short: "Remove a member and rotate the network's key (admin, daemon running)",
		Long: `Remove a member: a signed member.remove entry on the ledger. Every node then
closes the member's connections at once and refuses new ones, stops serving it
(its grants are no longer current), and re-places the replicas it held.

The network's pre-shared key is rotated with it: a fresh key, wrapped (HPKE) to
each remaining member's current key-wrapping key, in a network.key entry. Every
node dials with the new key from "activate" (10 s after the removal) and
refuses the previous one from "retire" (--key-overlap later, default 10m): the
removed node then cannot even complete a connection's first bytes. Nodes keep
running across the switch; connections between members stay up. A member that
is offline past "retire" comes back with a new invitation: ` + "`network invite`" + `
(its organisation and roles stay). "unreached" lists members with no announced
key, which the new key could not reach.

--reason stays in this node's local log and the command's output: it never
reaches the ledger (nothing a user types does, in clear).

What removal cannot undo: whatever the member already read or fetched, and the
keys of records it was granted, stay with it. Its grants stop working, it gets
no new version of anything, and no node serves it a block, but a copy it made
is out of reach.`,
		Example: `  medmesh network remove --peer 12D3KooWAbc... --reason "contract ended"
  medmesh network remove --peer 12D3KooWAbc... --key-overlap 1h --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkPeer("--peer", rmPeer); err != nil {
				return err
			}
			if rmOverlap != "" {
				if d, err := time.ParseDuration(rmOverlap); err != nil || d < 0 || d > 720*time.Hour {
					return invalidf("use a duration like 10m, at most 720h", "--key-overlap: bad duration %q", rmOverlap)
				}
			}
			c, err := client()
			if err != nil {
				return err
			}
			var res api.RemoveResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/network/remove", api.RemoveRequest{Peer: rmPeer, Reason: rmReason, KeyOverlap: rmOverlap}, &res); err != nil {
				return err
			}
			return output(res, func() {
				say("removed %s (entry %s)", res.Peer, res.Entry)
				say("network key rotated to epoch %d: nodes switch at %s; the old key is refused from %s", res.Epoch, res.Activate.Format(time.RFC3339), res.Retire.Format(time.RFC3339))
				if len(res.Unreached) > 0 {
					say("not reached (no key announced; invite them again): %s", strings.Join(res.Unreached, ", "))
				}
			})
		},
	}
	remove.Flags().StringVar(&rmPeer, "peer", "", "peer ID of the member to remove")
	remove.Flags().StringVar(&rmReason, "reason", "", "why (kept in this node's local log only, never on the ledger)")
	remove.Flags().StringVar(&rmOverlap, "key-overlap", "", "how long the old network key stays accepted after the switch (default 10m)")
	cmd.AddCommand(create, invite, join, remove)
	return cmd
}

// networkResult is what `network create` and `network join` print.
type networkResult struct {
	NetworkID string   `json:"network_id"`
	Name      string   `json:"name"`
	Org       string   `json:"org"`       // this node's configured organisation
	Bootstrap []string `json:"bootstrap"` // addresses the daemon dials first
}

func newMembersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the network's members: organisation, role, when admitted, connection, last seen",
		Long: `List the members of the network as this node's ledger has them, with what this
node knows of each:

  peer       its peer ID ("self": this node)
  org        its organisation (set by the admin at invite, or stated by the
             member itself from its ` + "`init --org`" + `)
  role       its strongest role: admin, emergency or member (roles: all of them)
  joined     when its admission in force was signed on the ledger
  connected  whether this node has a live connection to it
  last_seen  when this node last had a connection to it (null: never)
  addrs      its addresses as this node knows them

A removed member is not listed (` + "`medmesh network remove`" + `).`,
		Example: `  medmesh members
  medmesh members --json | jq -r '.[] | [.peer, .org, .role] | @tsv'
  medmesh members --json | jq -r '.[] | select(.connected | not) | .peer'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			ms := []api.Member{}
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/members", nil, &ms); err != nil {
				return err
			}
			return output(ms, func() {
				tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "PEER\tORG\tROLE\tJOINED\tCONNECTED\tLAST SEEN")
				for _, m := range ms {
					org := m.Org
					if org == "" {
						org = "-"
					}
					conn, seen := "no", "never"
					if m.Connected {
						conn = "yes"
					}
					if m.Self {
						conn = "self"
					}
					if m.LastSeen != nil {
						seen = m.LastSeen.Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Peer, org, m.Role, m.Joined.Format(time.RFC3339), conn, seen)
				}
				tw.Flush()
			})
		},
	}
}

// pathEscape escapes one path segment.
func pathEscape(s string) string { return url.PathEscape(s) }
