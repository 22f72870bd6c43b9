package daemon

import (
	"encoding/base64"
	"fmt"
	"github.com/medmesh/medmesh/internal/fault"
	"net/http"

	"github.com/ipfs/go-cid"
	"github.com/medmesh/medmesh/node/api"
)

const p = api.Prefix

func (d *Daemon) routes() {
	s := d.api
	s.HandleFunc("GET "+p+"/id", d.handleID)
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
		Org:          d.members.Org(),
		Admin:        d.Ledger.IsAdmin(d.self),
		PeerCount:    len(d.P2P.Host.Network().Peers()),
		Invitation:   d.members.JoinState(),
	}
	for _, a := range d.P2P.Host.Addrs() {
		info.Addrs = append(info.Addrs, a.String()+"/p2p/"+d.self.String())
	}
	api.JSON(w, http.StatusOK, info)
}

var _ = fmt.Sprintf
