package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/node/api"
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
so that several nodes can run on one machine.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := repo.Init(repoDir(), repo.InitOptions{Listen: listen, API: apiAddr, Org: org})
			if err != nil {
				return err
			}
			id, _ := r.PeerID()
			return output(map[string]string{"peer_id": id.String(), "repo": r.Dir}, func() {
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

func newIDCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "id",
		Short: "Print this node's peer ID, addresses and public keys (daemon not needed)",
		Args:  cobra.NoArgs,
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
				}
			}
			return output(info, func() {
				say("peer ID:        %s", info.Peer)
				for _, a := range info.Addrs {
					say("address:        %s", a)
				}
				say("KEM public key: %s…", info.KEMPublicKey[:32])
				if info.NetworkID != "" {
					say("network:        %s (member: %v, admin: %v, peers: %d)", info.NetworkID, info.Member, info.Admin, info.PeerCount)
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
	info := &api.IDInfo{Peer: id.String(), KEMPublicKey: base64.StdEncoding.EncodeToString(kem.Public())}
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
	}
	var name string
	create := &cobra.Command{
		Use:   "create --name NAME",
		Short: "Make this node the first member and admin of a new network (node stopped)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return errors.New("--name is required")
			}
			r, err := repo.Open(repoDir())
			if err != nil {
				return err
			}
			if r.HasNetwork() {
				return fmt.Errorf("%s already belongs to a network", r.Dir)
			}
			key, err := r.Identity()
			if err != nil {
				return err
			}
			gen, nid, err := ledger.NewGenesis(key, name, time.Now())
			if err != nil {
				return err
			}
			psk, err := repo.NewPSK()
			if err != nil {
				return err
			}
			if err := r.SetNetwork(&repo.Network{Genesis: gen, PSK: psk}); err != nil {
				return err
			}
			return output(map[string]string{"network_id": nid.String(), "name": name}, func() {
				say("created network %q (%s); this node is its admin", name, nid)
				say("next: `medmesh daemon --repo %s`, then `medmesh network invite --repo %s --peer PEERID` for each clinic", r.Dir, r.Dir)
			})
		},
	}
	create.Flags().StringVar(&name, "name", "", "network name")

	var peerID, org string
	var roles []string
	invite := &cobra.Command{
		Use:   "invite --peer PEERID",
		Short: "Admit a node as a member and print its invite token (admin, daemon running)",
		Long: `Admit a node as a member (a signed member.add entry on the ledger) and print a
one-line invite token as the last line. The token carries the network's
pre-shared key: hand it to the new member's operator over a trusted channel.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := peer.Decode(peerID); err != nil {
				return fmt.Errorf("--peer %q is not a peer ID (the new node prints it with `medmesh id`): %v", peerID, err)
			}
			c, err := client()
			if err != nil {
				return err
			}
			var res api.InviteResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/network/invite", api.InviteRequest{Peer: peerID, Org: org, Roles: roles}, &res); err != nil {
				return err
			}
			return output(res, func() {
				say("admitted %s; give its operator this token (it is secret):", res.Peer)
				say("%s", res.Token)
			})
		},
	}
	invite.Flags().StringVar(&peerID, "peer", "", "peer ID of the node to admit")
	invite.Flags().StringVar(&org, "org", "", "organisation label of the new member")
	invite.Flags().StringSliceVar(&roles, "role", nil, "extra roles: emergency (may grant emergency access)")

	join := &cobra.Command{
		Use:   "join TOKEN",
		Short: "Store an invite token; the next daemon start dials the inviter (node stopped)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inv, err := repo.DecodeInvite(args[0])
			if err != nil {
				return err
			}
			r, err := repo.Open(repoDir())
			if err != nil {
				return err
			}
			if _, err := ledger.NetworkIDOf(inv.Genesis); err != nil {
				return fmt.Errorf("invite carries an invalid network genesis: %w", err)
			}
			if err := r.SetNetwork(&repo.Network{Genesis: inv.Genesis, PSK: inv.PSK}); err != nil {
				return err
			}
			seen := map[string]bool{}
			for _, b := range r.Config.Bootstrap {
				seen[b] = true
			}
			for _, a := range inv.Addrs {
				if !seen[a] {
					r.Config.Bootstrap = append(r.Config.Bootstrap, a)
				}
			}
			if err := r.SaveConfig(); err != nil {
				return err
			}
			nid, _ := ledger.NetworkIDOf(inv.Genesis)
			return output(map[string]any{"network_id": nid.String(), "bootstrap": inv.Addrs}, func() {
				say("joined network %s; bootstrap: %s", nid, strings.Join(inv.Addrs, ", "))
				say("next: `medmesh daemon --repo %s`", r.Dir)
			})
		},
	}
	cmd.AddCommand(create, invite, join)
	return cmd
}

// pathEscape escapes one path segment.
func pathEscape(s string) string { return url.PathEscape(s) }
