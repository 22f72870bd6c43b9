package records

import (
	"context"
	"slices"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/record"
)

// Emergency (break-glass) access.
//
// A record's owner may be offline when a patient arrives unconscious at
// another hospital. The data key cannot be conjured without the owner, so the
// owner decides at add time: `add --emergency` wraps the key, in addition, to
// every member the admin made an emergency authority (role "emergency"),
// and publishes these escrow envelopes on the record's announcement. An
// authority can then issue a grant with purpose "emergency" for that record
// (never for others: the ledger checks the escrow), expiring within 24 h;
// every read under it is flagged in the owner's audit for review.

// escrowEnvelopes wraps key to every emergency authority with an announced key.
func (s *Service) escrowEnvelopes(id cid.Cid, key record.Key) ([]ledger.EscrowEnvelope, error) {
	var out []ledger.EscrowEnvelope
	for _, m := range s.ledger.Members() {
		if !slices.Contains(m.Roles, ledger.RoleEmergency) {
			continue
		}
		pub, ok := s.ledger.KEMKey(m.Peer)
		if !ok {
			continue
		}
		env, err := access.EscrowRecipient(id, m.Peer).Wrap(pub, key[:])
		if err != nil {
			return nil, err
		}
		out = append(out, ledger.EscrowEnvelope{Authority: m.Peer, Envelope: env})
		if len(out) == ledger.MaxEscrow {
			break
		}
	}
	if len(out) == 0 {
		return nil, fault.Conflictf("the admin names one with `medmesh network invite --peer ID --role emergency`", "the network has no emergency authority with an announced key")
	}
	return out, nil
}

// emergencyKey opens this node's escrow envelope of a record, for an
// emergency authority that does not own it.
func (s *Service) emergencyKey(info ledger.RecordInfo) (record.Key, error) {
	raw, ok := info.EscrowFor(s.self)
	if !ok {
		return record.Key{}, fault.Forbiddenf("its owner must add records with --emergency for break-glass access", "record %s was not escrowed to this emergency authority", info.ID)
	}
	return s.unwrap(access.EscrowRecipient(info.ID, s.self), raw)
}

// emergencyGrant: an emergency authority shares a record it does not own.
func (s *Service) emergencyGrant(ctx context.Context, id cid.Cid, grantee peer.ID, pub []byte, req api.GrantRequest) (*ledger.Entry, error) {
	if !s.hasRole(s.self, ledger.RoleEmergency) {
		return nil, fault.Forbiddenf("only the record's owner or an emergency authority (purpose emergency) can grant", "this node may not grant record %s", id)
	}
	info, ok := s.ledger.Record(id)
	if !ok {
		return nil, fault.NotFoundf("", "unknown record %s", id)
	}
	key, err := s.emergencyKey(info)
	if err != nil {
		return nil, err
	}
	expires, err := GrantExpiry(s.cfg.Now(), ledger.PurposeEmergency, req.Expires)
	if err != nil {
		return nil, err
	}
	s.log.Warn("emergency grant issued", "record", id, "grantee", grantee)
	return s.GrantVersion(ctx, id, key[:], grantee, pub, ledger.PurposeEmergency, expires)
}

func (s *Service) hasRole(p peer.ID, role string) bool {
	for _, m := range s.ledger.Members() {
		if m.Peer == p {
			return slices.Contains(m.Roles, role)
		}
	}
	return false
}
