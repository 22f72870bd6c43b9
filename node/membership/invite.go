package membership

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// Invitations, on the admin's node.
//
// `network invite` admits nobody: it records a pending invitation (the
// invitee, the org and roles to give it, an expiry, and the SHA-256 of a
// fresh secret) in the admin node's local datastore and seals the secret
// into the token. The invitee's daemon presents the secret once over the
// redeem protocol (redeem.go); the admin's node checks that the stream's
// authenticated peer is the invitee, that the invitation is unused and
// unexpired, and only then signs the member.add. So a token is useless to
// anyone but its invitee (sealed to it, and redeemed only by it), works
// once, and expires; an invitation never redeemed admits nobody.

// DefaultInviteLifetime is how long an invitation stays redeemable unless
// `network invite --expires` says otherwise; MaxInviteLifetime bounds it.
const (
	DefaultInviteLifetime = 72 * time.Hour
	MaxInviteLifetime     = 30 * 24 * time.Hour
)

var invitesPrefix = datastore.NewKey("/membership/invites")

// pending is one invitation as the admin's node keeps it (keyed by the
// SHA-256 of its secret: the secret itself is not kept).
type pending struct {
	Peer    []byte   `cbor:"1,keyasint"`
	Org     string   `cbor:"2,keyasint"`
	Roles   []string `cbor:"3,keyasint"`
	Expires int64    `cbor:"4,keyasint"` // unix ms
	Created int64    `cbor:"5,keyasint"`
	// Used is when it was redeemed (unix ms; 0: not yet).
	Used int64 `cbor:"6,keyasint"`
	// Entry is the member.add its redemption signed (none for a member
	// re-invited to get the current network key).
	Entry []byte `cbor:"7,keyasint"`
	// Cancelled: the invitee was removed before redeeming it.
	Cancelled bool `cbor:"8,keyasint"`
}

// invites are the admin node's invitations, in memory and in the local
// datastore.
type invites struct {
	mu  sync.Mutex
	all map[string]*pending // hex(sha256(secret)) -> invitation
}

func secretKey(secret []byte) string {
	h := sha256.Sum256(secret)
	return hex.EncodeToString(h[:])
}

func (s *Service) loadInvites(ctx context.Context) error {
	s.inv.all = map[string]*pending{}
	res, err := s.cfg.Local.Query(ctx, query.Query{Prefix: invitesPrefix.String()})
	if err != nil {
		return fmt.Errorf("membership: load invitations: %w", err)
	}
	defer res.Close()
	for r := range res.Next() {
		if r.Error != nil {
			return fmt.Errorf("membership: load invitations: %w", r.Error)
		}
		var p pending
		if err := tokenDec.Unmarshal(r.Value, &p); err != nil {
			return fmt.Errorf("membership: invitation %s is corrupt: %w", r.Key, err)
		}
		s.inv.all[strings.TrimPrefix(r.Key, invitesPrefix.String()+"/")] = &p
	}
	return nil
}

// storeInvite writes one invitation; called with inv.mu held.
func (s *Service) storeInvite(ctx context.Context, key string, p *pending) error {
	b, err := tokenEnc.Marshal(p)
	if err != nil {
		return err
	}
	if err := s.cfg.Local.Put(ctx, invitesPrefix.ChildString(key), b); err != nil {
		return fmt.Errorf("membership: store invitation: %w", err)
	}
	return s.cfg.Local.Sync(ctx, invitesPrefix)
}

// isGuest reports whether p may connect to redeem an invitation: on the
// admin's node, the invitee of a pending, unexpired invitation; on an
// invitee, its inviter, until the invitee is a member.
func (s *Service) isGuest(p peer.ID) bool {
	if s.joining.isInviter(p) {
		return true
	}
	now := s.cfg.Now().UnixMilli()
	s.inv.mu.Lock()
	defer s.inv.mu.Unlock()
	for _, inv := range s.inv.all {
		if inv.Used == 0 && !inv.Cancelled && now < inv.Expires && string(inv.Peer) == string(p) {
			return true
		}
	}
	return false
}

// Guests is p2p.Config.Guests: the peers that may connect to redeem an
// invitation (see isGuest).
func (s *Service) Guests(p peer.ID) bool { return s.isGuest(p) }

// Invite records an invitation for a peer (admin only) and returns its
// token, sealed to that peer. The member.add is signed when the invitee
// redeems it.
func (s *Service) Invite(ctx context.Context, req api.InviteRequest) (*api.InviteResult, error) {
	pid, err := peer.Decode(req.Peer)
	if err != nil {
		return nil, fault.Invalidf("the new node prints its ID with `medmesh id`", "%q is not a peer ID", req.Peer)
	}
	if _, err := pid.ExtractPublicKey(); err != nil {
		return nil, fault.Invalidf("the new node prints its ID with `medmesh id`", "%s carries no Ed25519 public key to seal the invitation to", pid)
	}
	if req.Org != "" {
		if err := ledger.CheckOrg(req.Org); err != nil {
			return nil, fault.Invalidf("", "%v", err)
		}
	}
	lifetime := DefaultInviteLifetime
	if req.Expires != "" {
		d, err := time.ParseDuration(req.Expires)
		if err != nil || d <= 0 || d > MaxInviteLifetime {
			return nil, fault.Invalidf("use a duration like 72h, at most 720h", "bad invitation lifetime %q", req.Expires)
		}
		lifetime = d
	}
	if !s.cfg.Ledger.IsAdmin(s.cfg.Self) {
		return nil, fault.Forbiddenf("run invite on the admin's node", "only the network admin admits members")
	}
	if pid == s.cfg.Self {
		return nil, fault.Invalidf("", "this node is already a member")
	}
	network, err := s.cfg.Repo.Network()
	if err != nil {
		return nil, err
	}
	addrs := s.net.SelfAddrs()
	if len(addrs) == 0 {
		return nil, fault.Conflictf("give the node a listen address (`medmesh config`)", "this node listens on no address the invitee could dial")
	}
	secret := make([]byte, SecretSize)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	exp := now.Add(lifetime)
	inv := &Invitation{
		Genesis: network.Genesis, PSK: network.PSK, Epoch: s.keyEpoch(), Secret: secret,
		Expires: exp.UnixMilli(), Inviter: []byte(s.cfg.Self),
	}
	for _, a := range addrs {
		inv.Addrs = append(inv.Addrs, a.String()+"/p2p/"+s.cfg.Self.String())
	}
	tok, err := SealToken(pid, inv)
	if err != nil {
		return nil, fault.Invalidf("", "cannot seal an invitation to %s: %v", pid, err)
	}
	p := &pending{Peer: []byte(pid), Org: req.Org, Roles: req.Roles, Expires: exp.UnixMilli(), Created: now.UnixMilli()}
	key := secretKey(secret)
	s.inv.mu.Lock()
	err = s.storeInvite(ctx, key, p)
	if err == nil {
		s.inv.all[key] = p
	}
	s.inv.mu.Unlock()
	if err != nil {
		return nil, err
	}
	res := &api.InviteResult{Peer: pid.String(), Org: req.Org, Roles: req.Roles, Token: tok, Expires: exp.UTC()}
	if res.Roles == nil {
		res.Roles = []string{}
	}
	if m, ok := s.member(pid); ok {
		// An existing member keeps its organisation and roles: its
		// invitation only brings it the network's current key.
		res.Org, res.Roles, res.Member = m.Org, m.Roles, true
	}
	return res, nil
}

// Redemption outcomes the inviter answers.
const (
	redeemAdmitted = "admitted" // the member.add is signed
	redeemMember   = "member"   // already a member: nothing to sign
	redeemRefused  = "refused"
)

// redeem admits the invitee of the invitation whose secret from presents.
// It returns the outcome and, when refused, why.
func (s *Service) redeem(ctx context.Context, from peer.ID, secret []byte) (string, cid.Cid, error) {
	key := secretKey(secret)
	s.inv.mu.Lock()
	defer s.inv.mu.Unlock() // one redemption at a time: single use
	p, ok := s.inv.all[key]
	now := s.cfg.Now()
	switch {
	case !ok:
		return redeemRefused, cid.Undef, errors.New("this node issued no such invitation")
	case string(p.Peer) != string(from):
		s.log.Warn("an invitation was presented by a node it was not issued to", "invitee", peer.ID(p.Peer), "from", from)
		return redeemRefused, cid.Undef, errors.New("this invitation was issued to another node")
	case p.Cancelled:
		return redeemRefused, cid.Undef, errors.New("this invitation was cancelled: the node was removed from the network")
	case p.Used != 0:
		return redeemRefused, cid.Undef, fmt.Errorf("this invitation was already used (at %s); ask the admin for a new one", time.UnixMilli(p.Used).UTC().Format(time.RFC3339))
	case !now.Before(time.UnixMilli(p.Expires)):
		return redeemRefused, cid.Undef, fmt.Errorf("this invitation expired at %s; ask the admin for a new one", time.UnixMilli(p.Expires).UTC().Format(time.RFC3339))
	case !s.cfg.Ledger.IsAdmin(s.cfg.Self):
		return redeemRefused, cid.Undef, errors.New("the inviting node is no longer an admin")
	}
	outcome, entry := redeemMember, cid.Undef
	if !s.cfg.Ledger.IsMember(from) {
		e, err := s.cfg.Ledger.Append(ctx, ledger.TypeMemberAdd, ledger.MemberAddPayload{Peer: from, Org: p.Org, Roles: p.Roles})
		if err != nil {
			return redeemRefused, cid.Undef, fmt.Errorf("the inviter could not sign the admission: %w", err)
		}
		outcome, entry = redeemAdmitted, e.CID()
		if entry.Defined() {
			p.Entry = entry.Bytes()
		}
	}
	p.Used = now.UnixMilli()
	if err := s.storeInvite(ctx, key, p); err != nil {
		s.log.Error("invitation redeemed but not marked used", "invitee", from, "err", err)
	}
	s.log.Info("invitation redeemed", "invitee", from.String(), "outcome", outcome)
	return outcome, entry, nil
}

// cancelInvites cancels the pending invitations of a removed peer.
func (s *Service) cancelInvites(ctx context.Context, p peer.ID) {
	s.inv.mu.Lock()
	defer s.inv.mu.Unlock()
	for k, inv := range s.inv.all {
		if string(inv.Peer) == string(p) && inv.Used == 0 && !inv.Cancelled {
			inv.Cancelled = true
			if err := s.storeInvite(ctx, k, inv); err != nil {
				s.log.Warn("cancel invitation", "peer", p, "err", err)
			}
		}
	}
}
