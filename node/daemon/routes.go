package daemon

import (
	"encoding/base64"
	"fmt"
	"github.com/medmesh/medmesh/internal/fault"
	"net/http"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/repo"
	"github.com/medmesh/medmesh/sharing/ledger"
)

const p = api.Prefix

func (d *Daemon) routes() {
	s := d.api
	s.HandleFunc("GET "+p+"/id", d.handleID)
	s.HandleFunc("POST "+p+"/network/invite", d.handleInvite)
	d.memberRoutes()
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		api.Fail(w, err)
		return
	}
	api.JSON(w, http.StatusOK, v)
}

func pathCID(r *http.Request, name string) (cid.Cid, error) {
	c, err := cid.Decode(r.PathValue(name))
	if err != nil {
		return cid.Undef, fault.Invalidf("record IDs look like bafkrei…", "%q is not a record ID: %v", r.PathValue(name), err)
	}
	return c, nil
}

func (d *Daemon) handleID(w http.ResponseWriter, r *http.Request) {
	info := api.IDInfo{
		Peer:         d.self.String(),
		KEMPublicKey: base64.StdEncoding.EncodeToString(d.kem.Public()),
		NetworkID:    d.Ledger.NetworkID().String(),
		Member:       d.Ledger.IsMember(d.self),
		Org:          d.Repo.Config.Org,
		Admin:        d.Ledger.IsAdmin(d.self),
		PeerCount:    len(d.P2P.Host.Network().Peers()),
	}
	if m, ok := d.member(d.self.String()); ok && m.Org != "" {
		info.Org = m.Org // the ledger's word, once there is one
	}
	for _, a := range d.P2P.Host.Addrs() {
		info.Addrs = append(info.Addrs, a.String()+"/p2p/"+d.self.String())
	}
	api.JSON(w, http.StatusOK, info)
}

func (d *Daemon) handleInvite(w http.ResponseWriter, r *http.Request) {
	var req api.InviteRequest
	if err := api.Decode(r, &req); err != nil {
		api.Fail(w, err)
		return
	}
	pid, err := peer.Decode(req.Peer)
	if err != nil {
		api.Fail(w, fault.Invalidf("the new node prints its ID with `medmesh id`", "%q is not a peer ID", req.Peer))
		return
	}
	if req.Org != "" {
		if err := ledger.CheckOrg(req.Org); err != nil {
			api.Fail(w, fault.Invalidf("", "%v", err))
			return
		}
	}
	if !d.Ledger.IsAdmin(d.self) {
		api.Fail(w, fault.Forbiddenf("run invite on the admin's node", "only the network admin admits members"))
		return
	}
	if !d.Ledger.IsMember(pid) {
		if _, err := d.Ledger.Append(r.Context(), ledger.TypeMemberAdd, ledger.MemberAddPayload{Peer: pid, Org: req.Org, Roles: req.Roles}); err != nil {
			api.Fail(w, err)
			return
		}
	}
	network, err := d.Repo.Network()
	if err != nil {
		api.Fail(w, err)
		return
	}
	inv := repo.Invite{Genesis: network.Genesis, PSK: network.PSK}
	for _, a := range d.P2P.Host.Addrs() {
		inv.Addrs = append(inv.Addrs, a.String()+"/p2p/"+d.self.String())
	}
	tok, err := inv.Encode()
	res := api.InviteResult{Peer: pid.String(), Token: tok}
	if m, ok := d.member(pid.String()); ok {
		res.Org = m.Org // an existing member keeps its organisation
	}
	reply(w, res, err)
}

var _ = fmt.Sprintf
