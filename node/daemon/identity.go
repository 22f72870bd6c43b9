package daemon

import (
	"encoding/base64"

	"github.com/medmesh/medmesh/node/api"
)

// identity is what `medmesh id` shows: this node, its network, and whether
// it is a member yet.
func (d *Daemon) identity() api.IDInfo {
	info := api.IDInfo{
		Peer:         d.self.String(),
		KEMPublicKey: base64.StdEncoding.EncodeToString(d.kem.Public()),
		NetworkID:    d.Ledger.NetworkID().String(),
		Member:       d.Ledger.IsMember(d.self),
		Org:          d.members.Org(),
		Admin:        d.Ledger.IsAdmin(d.self),
		PeerCount:    len(d.P2P.Host.Network().Peers()),
		Invitation:   d.members.JoinState(),
	}
	for _, a := range d.P2P.Host.Addrs() {
		info.Addrs = append(info.Addrs, a.String()+"/p2p/"+d.self.String())
	}
	return info
}
