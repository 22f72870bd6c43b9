package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// seenKey holds when each peer was last connected: a JSON object of peer
// ID to RFC 3339 time, saved every minute and at Close.
var seenKey = datastore.NewKey("/membership/seen")

func loadSeen(ctx context.Context, ds datastore.Datastore) (map[peer.ID]time.Time, error) {
	out := map[peer.ID]time.Time{}
	raw, err := ds.Get(ctx, seenKey)
	if errors.Is(err, datastore.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("membership: load when members were last seen: %w", err)
	}
	var m map[string]time.Time
	if err := json.Unmarshal(raw, &m); err != nil {
		// Bookkeeping only: a damaged value costs the last-seen times,
		// nothing else.
		return out, nil
	}
	for k, t := range m {
		if p, err := peer.Decode(k); err == nil {
			out[p] = t
		}
	}
	return out, nil
}

func (s *Service) saveSeen(ctx context.Context) {
	s.seenMu.Lock()
	if !s.seenDirty {
		s.seenMu.Unlock()
		return
	}
	m := make(map[string]time.Time, len(s.seen))
	for p, t := range s.seen {
		m[p.String()] = t
	}
	s.seenDirty = false
	s.seenMu.Unlock()
	raw, err := json.Marshal(m)
	if err == nil {
		err = s.cfg.Local.Put(ctx, seenKey, raw)
	}
	if err != nil {
		s.log.Warn("save when members were last seen", "err", err)
	}
}

func (s *Service) connected(p peer.ID)    { s.sawNow(p) }
func (s *Service) disconnected(p peer.ID) { s.sawNow(p) }

func (s *Service) sawNow(p peer.ID) {
	s.seenMu.Lock()
	s.seen[p] = s.cfg.Now().UTC().Truncate(time.Second)
	s.seenDirty = true
	s.seenMu.Unlock()
}

// Members lists the network's members as this node's ledger has them,
// with what this node knows of each: when it was admitted, whether it is
// connected, when it was last seen and its addresses.
func (s *Service) Members(ctx context.Context) ([]api.Member, error) {
	now := s.cfg.Now().UTC().Truncate(time.Second)
	out := []api.Member{}
	for _, m := range s.cfg.Ledger.Members() {
		roles := slices.Clone(m.Roles)
		if roles == nil {
			roles = []string{}
		}
		am := api.Member{Peer: m.Peer.String(), Org: m.Org, Role: primaryRole(roles), Roles: roles, Addrs: []string{}, Self: m.Peer == s.cfg.Self}
		if e, err := s.cfg.Ledger.Entry(ctx, m.Entry); err == nil {
			am.Joined = time.UnixMilli(int64(e.Clock.Wall)).UTC()
		} else {
			return nil, fmt.Errorf("members: the admission of %s: %w", m.Peer, err)
		}
		switch {
		case am.Self:
			am.Connected = true
			am.LastSeen = &now
			for _, a := range s.net.SelfAddrs() {
				am.Addrs = append(am.Addrs, a.String())
			}
		default:
			am.Connected = s.net.Connected(m.Peer)
			if am.Connected {
				am.LastSeen = &now
			} else {
				s.seenMu.Lock()
				if t, ok := s.seen[m.Peer]; ok {
					am.LastSeen = &t
				}
				s.seenMu.Unlock()
			}
			for _, a := range s.net.PeerAddrs(m.Peer) {
				am.Addrs = append(am.Addrs, a.String())
			}
		}
		slices.Sort(am.Addrs)
		out = append(out, am)
	}
	return out, nil
}

// primaryRole names a member's strongest role: admin, emergency, or
// member.
func primaryRole(roles []string) string {
	switch {
	case slices.Contains(roles, ledger.RoleAdmin):
		return ledger.RoleAdmin
	case slices.Contains(roles, ledger.RoleEmergency):
		return ledger.RoleEmergency
	}
	return "member"
}
