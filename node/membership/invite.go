package membership

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/repo"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// Invite admits a peer (admin only) and returns its invite token.
func (s *Service) Invite(ctx context.Context, req api.InviteRequest) (*api.InviteResult, error) {
	pid, err := peer.Decode(req.Peer)
	if err != nil {
		return nil, fault.Invalidf("the new node prints its ID with `medmesh id`", "%q is not a peer ID", req.Peer)
	}
	if req.Org != "" {
		if err := ledger.CheckOrg(req.Org); err != nil {
			return nil, fault.Invalidf("", "%v", err)
		}
	}
	if !s.cfg.Ledger.IsAdmin(s.cfg.Self) {
		return nil, fault.Forbiddenf("run invite on the admin's node", "only the network admin admits members")
	}
	if !s.cfg.Ledger.IsMember(pid) {
		if _, err := s.cfg.Ledger.Append(ctx, ledger.TypeMemberAdd, ledger.MemberAddPayload{Peer: pid, Org: req.Org, Roles: req.Roles}); err != nil {
			return nil, err
		}
	}
	network, err := s.cfg.Repo.Network()
	if err != nil {
		return nil, err
	}
	inv := repo.Invite{Genesis: network.Genesis, PSK: network.PSK}
	for _, a := range s.net.SelfAddrs() {
		inv.Addrs = append(inv.Addrs, a.String()+"/p2p/"+s.cfg.Self.String())
	}
	tok, err := inv.Encode()
	if err != nil {
		return nil, err
	}
	res := &api.InviteResult{Peer: pid.String(), Token: tok}
	if m, ok := s.member(pid); ok {
		res.Org = m.Org // an existing member keeps its organisation
	}
	return res, nil
}
