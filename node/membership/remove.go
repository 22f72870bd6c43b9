package membership

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/p2p"
	"github.com/medmesh/medmesh/node/repo"
	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/sharing/netkey"
)

// Removal and the network key rotation that follows it.
//
// `network remove` signs a member.remove (every node's connection gater,
// which reads the ledger's member table, then refuses the member and each
// node closes its connections at once; grants to non-members are not
// current, so no holder serves it a block; placement re-plans without it),
// then rotates the network's pre-shared key (a network.key entry,
// sharing/netkey): a fresh key wrapped to each remaining member's current
// key, dialed from Activate, the previous one accepted until Retire.
//
// The reason the admin gives is not on the ledger: nothing a user types
// reaches the ledger in clear. It stays in the admin node's local removal
// log (/membership/removals) and its daemon's log.

// Defaults of a rotation's timing: every node dials with the new key
// DefaultSwitchAfter after the removal (time for the entry to reach every
// member), and accepts the previous one DefaultKeyOverlap longer (nodes
// whose clocks lag, or that restart meanwhile, still connect). A member
// offline beyond that needs a new invitation (which carries the current
// key): `network invite --peer ID`.
const (
	DefaultSwitchAfter = 10 * time.Second
	DefaultKeyOverlap  = 10 * time.Minute
	maxReason          = 512
)

var removalsPrefix = datastore.NewKey("/membership/removals")

// removal is one entry of the admin node's local removal log.
type removal struct {
	Peer   string    `json:"peer"`
	Reason string    `json:"reason,omitempty"`
	Entry  string    `json:"entry"`
	Time   time.Time `json:"time"`
}

// Remove removes a member (admin only) and rotates the network key.
func (s *Service) Remove(ctx context.Context, req api.RemoveRequest) (*api.RemoveResult, error) {
	pid, err := peer.Decode(req.Peer)
	if err != nil {
		return nil, fault.Invalidf("`medmesh members` lists the members' peer IDs", "%q is not a peer ID", req.Peer)
	}
	if len(req.Reason) > maxReason {
		return nil, fault.Invalidf("", "the reason is %d bytes, at most %d", len(req.Reason), maxReason)
	}
	overlap := DefaultKeyOverlap
	if req.KeyOverlap != "" {
		d, err := time.ParseDuration(req.KeyOverlap)
		if err != nil || d < 0 || d > netkey.MaxOverlap {
			return nil, fault.Invalidf("use a duration like 10m, at most 720h", "bad key overlap %q", req.KeyOverlap)
		}
		overlap = d
	}
	if !s.cfg.Ledger.IsAdmin(s.cfg.Self) {
		return nil, fault.Forbiddenf("run remove on the admin's node", "only the network admin removes members")
	}
	if pid == s.cfg.Self {
		return nil, fault.Invalidf("another admin can remove this node", "a node does not remove itself")
	}
	if !s.cfg.Ledger.IsMember(pid) {
		return nil, fault.NotFoundf("`medmesh members` lists the members", "%s is not a member of the network", pid)
	}
	e, err := s.cfg.Ledger.Append(ctx, ledger.TypeMemberRemove, ledger.MemberRemovePayload{Peer: pid})
	if err != nil {
		return nil, fmt.Errorf("sign the removal: %w", err)
	}
	s.cancelInvites(ctx, pid)
	now := s.cfg.Now().UTC()
	s.logRemoval(ctx, removal{Peer: pid.String(), Reason: req.Reason, Entry: e.CID().String(), Time: now})
	s.log.Info("removed a member", "peer", pid.String(), "reason", req.Reason, "entry", e.CID().String())
	res := &api.RemoveResult{Peer: pid.String(), Entry: e.CID().String(), Reason: req.Reason, Unreached: []string{}}
	rot, unreached, err := s.rotate(ctx, pid, now.Add(DefaultSwitchAfter), overlap)
	if err != nil {
		// The removal stands (the gater and every rule act on it); only
		// the key is unchanged. Saying so lets the admin retry.
		return res, fault.Wrap(fault.Unavailable, "run `medmesh network remove` again to rotate the key", fmt.Errorf("removed %s, but the network key was not rotated: %w", pid, err))
	}
	res.KeyEntry, res.Epoch = rot.Entry.String(), int(rot.Payload.Epoch)
	res.Activate, res.Retire = rot.Payload.ActivateAt(), rot.Payload.RetireAt()
	for _, p := range unreached {
		res.Unreached = append(res.Unreached, p.String())
	}
	return res, nil
}

func (s *Service) logRemoval(ctx context.Context, r removal) {
	b, _ := json.Marshal(r)
	if err := s.cfg.Local.Put(ctx, removalsPrefix.ChildString(r.Time.Format("20060102T150405.000000000Z")+"-"+r.Peer), b); err != nil {
		s.log.Warn("log the removal locally", "err", err)
	}
}

// rotate hands a fresh network key to every member with an announced key
// (a network.key entry) and installs it here. It returns the members it
// could not reach (no key announced yet: they need a new invitation).
func (s *Service) rotate(ctx context.Context, removed peer.ID, activate time.Time, overlap time.Duration) (*netkey.Rotation, []peer.ID, error) {
	psk, err := repo.NewPSK()
	if err != nil {
		return nil, nil, err
	}
	epoch := s.keyEpoch() + 1
	if rs, err := netkey.Rotations(s.cfg.Ledger); err == nil && len(rs) > 0 && rs[len(rs)-1].Payload.Epoch >= epoch {
		epoch = rs[len(rs)-1].Payload.Epoch + 1
	}
	p := netkey.Payload{Epoch: epoch, Activate: activate.UnixMilli(), Retire: activate.Add(overlap).UnixMilli()}
	if removed != "" {
		p.Removed = []byte(removed)
	}
	var unreached []peer.ID
	for _, m := range s.cfg.Ledger.Members() {
		pub, ok := s.cfg.Ledger.KEMKey(m.Peer)
		if !ok {
			unreached = append(unreached, m.Peer)
			continue
		}
		env, err := access.NetworkKeyRecipient(s.cfg.Ledger.NetworkID(), epoch, m.Peer).Wrap(pub, psk)
		if err != nil {
			return nil, nil, err
		}
		p.Envelopes = append(p.Envelopes, netkey.Envelope{Member: []byte(m.Peer), Envelope: env})
	}
	sort.Slice(p.Envelopes, func(i, j int) bool { return bytes.Compare(p.Envelopes[i].Member, p.Envelopes[j].Member) < 0 })
	e, err := s.cfg.Ledger.Append(ctx, netkey.Type, &p)
	if err != nil {
		return nil, nil, err
	}
	rot := &netkey.Rotation{Entry: e.CID(), Payload: p}
	s.installRotations()
	s.log.Info("rotated the network key", "epoch", epoch, "activate", activate, "retire", p.RetireAt(), "unreached", len(unreached))
	return rot, unreached, nil
}

// installRotations installs, in epoch order, every rotation newer than
// the newest key this node knows that carries an envelope for it, saves
// the schedule in the repo and hands it to the host.
func (s *Service) installRotations() {
	rs, err := netkey.Rotations(s.cfg.Ledger)
	if err != nil {
		s.log.Error("read the network key rotations", "err", err)
		return
	}
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	changed := false
	for _, r := range rs {
		last := s.keys[len(s.keys)-1]
		if r.Payload.Epoch <= last.Epoch {
			continue
		}
		env, ok := r.Payload.EnvelopeFor(s.cfg.Self)
		if !ok {
			continue // not for this node (or a concurrent rotation of the same epoch)
		}
		psk, err := s.cfg.Unwrap(access.NetworkKeyRecipient(s.cfg.Ledger.NetworkID(), r.Payload.Epoch, s.cfg.Self), env)
		if err != nil {
			s.log.Error("a network key rotation does not open with this node's key", "epoch", r.Payload.Epoch, "entry", r.Entry, "err", err)
			continue
		}
		s.keys[len(s.keys)-1].Retire = r.Payload.Retire
		s.keys = append(s.keys, NetKey{Epoch: r.Payload.Epoch, PSK: psk, Activate: r.Payload.Activate})
		changed = true
		s.log.Info("installed a new network key", "epoch", r.Payload.Epoch, "activate", r.Payload.ActivateAt(), "previous_retires", r.Payload.RetireAt())
	}
	if !changed {
		return
	}
	s.keys = pruneKeys(s.keys, s.cfg.Now())
	if err := saveNetKeys(s.cfg.Repo, s.keys); err != nil {
		s.log.Error("save the network key schedule", "err", err)
	}
	if s.net != nil {
		if err := s.net.SetNetworkKeys(schedule(s.keys)); err != nil {
			s.log.Error("apply the network key schedule", "err", err)
		}
	}
}

// pruneKeys drops keys retired more than a day ago (the newest stays).
func pruneKeys(ks []NetKey, now time.Time) []NetKey {
	out := ks[:0]
	for i, k := range ks {
		if i == len(ks)-1 || k.Retire == 0 || now.Before(k.RetireAt().Add(24*time.Hour)) {
			out = append(out, k)
		}
	}
	return out
}

// schedule is the key schedule as the p2p host takes it.
func schedule(ks []NetKey) []p2p.NetworkKey {
	out := make([]p2p.NetworkKey, 0, len(ks))
	for _, k := range ks {
		out = append(out, p2p.NetworkKey{PSK: k.PSK, From: k.ActivateAt(), Until: k.RetireAt()})
	}
	return out
}

// NetworkKeys is the key schedule the host starts with.
func (s *Service) NetworkKeys() []p2p.NetworkKey {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	return schedule(s.keys)
}

// KeyEpoch is the epoch of the newest network key this node knows.
func (s *Service) KeyEpoch() int { return int(s.keyEpoch()) }
