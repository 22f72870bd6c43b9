package records

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/record"
)

// List returns the records this node owns, holds or may read, newest
// first. It looks only at those records (the ledger's owner, holder and
// grantee indexes, and the records whose blocks this node indexes), never
// at every record on the ledger.
func (s *Service) List(ctx context.Context) ([]api.Record, error) {
	owned, others, err := s.involved(ctx)
	if err != nil {
		return nil, fmt.Errorf("list records: %w", err)
	}
	hidden, err := s.Hidden(ctx)
	if err != nil {
		return nil, err
	}
	owned = slices.DeleteFunc(owned, func(l ledger.Listing) bool { return hidden[l.ID] })
	others = slices.DeleteFunc(others, func(id cid.Cid) bool { return hidden[id] })
	names := peerNames{}
	out := make([]api.Record, 0, len(owned)+len(others))
	// Whether this node stores each record's blocks: its root block (the
	// manifest, whose CID is the record's ID) is in the blockstore. One
	// ordered pass for every record listed, not a lookup each.
	ids := make([]cid.Cid, 0, len(owned)+len(others))
	for _, l := range owned {
		ids = append(ids, l.ID)
	}
	ids = append(ids, others...)
	held, err := s.hasAll(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("list records: %w", err)
	}
	// Owned records come from the owner's indexes (ledger.OwnedListing):
	// two prefix scans, not a read of each record and its receipts.
	for i, l := range owned {
		rec := api.Record{
			ID: l.ID.String(), Size: int64(l.Size), Owner: names.of(l.Owner), Class: l.Class,
			Version: int(l.Version), Created: l.Announced, Mine: true, Held: held[i], Readable: true,
			Replicas: int(l.Replicas), Holders: names.all(l.Holders), Under: len(l.Holders) < int(l.Replicas),
		}
		if l.Prev.Defined() {
			rec.Prev = l.Prev.String()
		}
		out = append(out, rec)
	}
	now := s.cfg.Now()
	for i, id := range others {
		r, ok := s.ledger.Record(id)
		if !ok {
			continue // blocks indexed for a record not on the ledger (an add in progress)
		}
		mine := r.Owner == s.self
		held := held[len(owned)+i]
		readable := mine
		if !mine {
			for _, g := range s.ledger.Grants(r.ID) {
				if g.Grantee == s.self && g.LiveAt(now) {
					readable = true
				}
			}
		}
		if !mine && !held && !readable {
			continue
		}
		holders := s.Holders(r)
		rec := api.Record{
			ID: r.ID.String(), Size: int64(r.Size), Owner: names.of(r.Owner), Class: r.Class,
			Version: int(r.Version), Created: r.Announced, Mine: mine, Held: held, Readable: readable,
			Replicas: int(r.Replicas), Holders: names.all(holders), Under: len(holders) < int(r.Replicas),
		}
		if r.Prev.Defined() {
			rec.Prev = r.Prev.String()
		}
		out = append(out, rec)
	}
	// Newest first; records announced in the same millisecond by ID.
	slices.SortFunc(out, func(a, b api.Record) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// involved returns the records this node may list: the listing of those it
// owns (ledger.OwnedListing), and the IDs of those it holds or has or had
// a grant on (the ledger's indexes) or whose blocks it indexes (a replica
// being fetched, blocks kept from an earlier holding).
func (s *Service) involved(ctx context.Context) ([]ledger.Listing, []cid.Cid, error) {
	owned, err := s.ledger.OwnedListing(ctx, s.self)
	if err != nil {
		return nil, nil, err
	}
	held, err := s.ledger.HeldIDs(ctx, s.self)
	if err != nil {
		return nil, nil, err
	}
	granted, err := s.ledger.GrantedIDs(ctx, s.self)
	if err != nil {
		return nil, nil, err
	}
	set := make(map[cid.Cid]bool, len(owned))
	for _, r := range owned {
		set[r.ID] = true
	}
	var others []cid.Cid
	for _, ids := range [][]cid.Cid{held, granted, s.index.records()} {
		for _, c := range ids {
			if !set[c] {
				set[c] = true
				others = append(others, c)
			}
		}
	}
	return owned, others, nil
}

// hasAll reports which of ids have their blocks in the blockstore, as
// Blocks.Has answers for each (Config.HasAll).
func (s *Service) hasAll(ctx context.Context, ids []cid.Cid) ([]bool, error) {
	if s.cfg.HasAll != nil {
		return s.cfg.HasAll(ctx, ids)
	}
	out := make([]bool, len(ids))
	for i, id := range ids {
		var err error
		if out[i], err = s.blocks.Has(ctx, id); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// peerNames renders peer IDs for the API, each distinct peer once (a
// listing names the same few peers thousands of times).
type peerNames map[peer.ID]string

func (n peerNames) of(p peer.ID) string {
	s, ok := n[p]
	if !ok {
		s = p.String()
		n[p] = s
	}
	return s
}

// all renders a list of peers (an empty list, never nil).
func (n peerNames) all(ps []peer.ID) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = n.of(p)
	}
	return out
}

// OwnedChain returns every version of a record this node owns, oldest
// first.
func (s *Service) OwnedChain(id cid.Cid) ([]ledger.RecordInfo, error) {
	info, ok := s.ledger.Record(id)
	if !ok {
		return nil, fault.NotFoundf("", "unknown record %s", id)
	}
	if info.Owner != s.self {
		return nil, fault.Forbiddenf("only the record's owner can do this", "record %s belongs to %s", id, info.Owner)
	}
	chain := s.ledger.Versions(id)
	if len(chain) == 0 {
		chain = []ledger.RecordInfo{info}
	}
	sort.Slice(chain, func(i, j int) bool { return chain[i].Version < chain[j].Version })
	return chain, nil
}

// Grant shares every version of a record with a member: its data key is
// wrapped to the grantee's announced key and published in a grant entry.
// An emergency authority grants a record it does not own with purpose
// emergency, from its escrow envelope.
func (s *Service) Grant(ctx context.Context, id cid.Cid, req api.GrantRequest) (*api.Grant, error) {
	grantee, err := peer.Decode(req.To)
	if err != nil {
		return nil, fault.Invalidf("", "%q is not a peer ID", req.To)
	}
	if req.Purpose == "" {
		req.Purpose = ledger.PurposeTreatment
	}
	if !ledger.ValidPurpose(req.Purpose) {
		return nil, fault.Invalidf("use one of: "+strings.Join(ledger.Purposes(), ", "), "unknown purpose %q", req.Purpose)
	}
	now := s.cfg.Now()
	expires, err := GrantExpiry(now, req.Purpose, req.Expires)
	if err != nil {
		return nil, err
	}
	if !s.ledger.IsMember(grantee) {
		return nil, fault.Invalidf("the admin admits it with `medmesh network invite`", "%s is not a member of the network", grantee)
	}
	pub, ok := s.ledger.KEMKey(grantee)
	if !ok {
		return nil, fault.Conflictf("start the grantee's daemon so it announces its key, then retry", "%s has not announced a key-wrapping key yet", grantee)
	}
	if info, ok := s.ledger.Record(id); ok && info.Owner != s.self && req.Purpose == ledger.PurposeEmergency {
		e, err := s.emergencyGrant(ctx, id, grantee, pub, req)
		if err != nil {
			return nil, err
		}
		return &api.Grant{ID: id.String(), Grantee: grantee.String(), Purpose: req.Purpose, Expires: api.Nullable(expires), Granted: now.UTC(), Entry: e.CID().String()}, nil
	}
	chain, err := s.OwnedChain(id)
	if err != nil {
		return nil, err
	}
	var last *ledger.Entry
	for _, v := range chain {
		key, _, err := s.ReadKey(ctx, v)
		if err != nil {
			return nil, err
		}
		e, err := s.GrantVersion(ctx, v.ID, key[:], grantee, pub, req.Purpose, expires)
		if err != nil {
			return nil, err
		}
		last = e
	}
	return &api.Grant{ID: id.String(), Grantee: grantee.String(), Purpose: req.Purpose, Expires: api.Nullable(expires), Granted: now.UTC(), Entry: last.CID().String()}, nil
}

// GrantVersion wraps one record version's key to a grantee's public key
// (access.GrantRecipient) and publishes the grant, with the version's name
// and media type sealed for the grantee (access.SealLabel) when this node
// keeps its manifest: a share, a new version's re-grant, a grant
// re-issued to a rotated key, a dataset's.
func (s *Service) GrantVersion(ctx context.Context, rec cid.Cid, key []byte, grantee peer.ID, pub []byte, purpose string, expires time.Time) (*ledger.Entry, error) {
	env, err := access.GrantRecipient(rec, grantee, purpose).Wrap(pub, key)
	if err != nil {
		return nil, err
	}
	return s.ledger.Append(ctx, ledger.TypeGrant, ledger.GrantPayload{Record: rec, Grantee: grantee, Envelope: env, Expires: expires, Purpose: purpose,
		Label: s.sealLabel(ctx, rec, key, grantee, purpose)})
}

// sealLabel seals a record version's name and media type for a grant, or
// returns nil: a grant without a label is still a grant (an emergency
// authority's, whose node has no manifest), and the grantee learns the
// name when it reads.
func (s *Service) sealLabel(ctx context.Context, rec cid.Cid, key []byte, grantee peer.ID, purpose string) []byte {
	var k record.Key
	if len(key) != len(k) {
		return nil
	}
	copy(k[:], key)
	m, err := s.localManifest(ctx, rec, k)
	if err != nil {
		s.log.Debug("grant without a label: the record's manifest is not on this node", "record", rec, "err", err)
		return nil
	}
	sealed, err := access.SealLabel(key, rec, grantee, purpose, access.Label{Name: m.Name, MediaType: m.MediaType})
	if err != nil {
		s.log.Warn("grant without a label", "record", rec, "err", err)
		return nil
	}
	return sealed
}

// Label is what this node may show of a record version without reading
// it (no fetch, no claim on the ledger): for its owner, the name and
// media type in its manifest, which the owner keeps; for a grantee, the
// label sealed on its live grant. ok is false when there is none (a grant
// made without one, or no live grant).
func (s *Service) Label(ctx context.Context, info ledger.RecordInfo) (access.Label, bool) {
	if info.Owner == s.self {
		key, _, err := s.ReadKey(ctx, info)
		if err != nil {
			return access.Label{}, false
		}
		m, err := s.localManifest(ctx, info.ID, key)
		if err != nil {
			return access.Label{}, false
		}
		return access.Label{Name: m.Name, MediaType: m.MediaType}, true
	}
	for _, g := range access.ReadGrants(s.ledger, info.ID, s.self, s.cfg.Now()) {
		if len(g.Label) == 0 {
			continue
		}
		k, err := s.unwrap(access.GrantRecipient(info.ID, s.self, g.Purpose), g.Envelope)
		if err != nil {
			continue
		}
		if l, err := access.OpenLabel(k[:], info.ID, s.self, g.Purpose, g.Label); err == nil {
			return l, true
		}
	}
	return access.Label{}, false
}

// localManifest opens a record's manifest from this node's blockstore
// only: never a fetch, so never a read anybody attests.
func (s *Service) localManifest(ctx context.Context, id cid.Cid, key record.Key) (*record.Manifest, error) {
	return record.OpenManifest(ctx, s.blocks, id, key)
}

// ListGrants lists the current grants of a record (all versions).
func (s *Service) ListGrants(id cid.Cid) ([]api.Grant, error) {
	if _, ok := s.ledger.Record(id); !ok {
		return nil, fault.NotFoundf("", "unknown record %s", id)
	}
	now := s.cfg.Now()
	out := []api.Grant{}
	for _, g := range s.ledger.Grants(id) {
		out = append(out, api.Grant{
			ID: g.Record.String(), Grantee: g.Grantee.String(), Purpose: g.Purpose,
			Expires: api.Nullable(g.Expires), Granted: g.Time.UTC(), Entry: g.Entry.String(), Expired: !g.LiveAt(now),
		})
	}
	return out, nil
}

// Revoke cancels a peer's grants on every version of a record this node
// owns, and returns how many versions it revoked.
func (s *Service) Revoke(ctx context.Context, id cid.Cid, grantee peer.ID) (int, error) {
	chain, err := s.OwnedChain(id)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, v := range chain {
		has := false
		for _, g := range s.ledger.Grants(v.ID) {
			has = has || g.Grantee == grantee
		}
		if !has {
			continue
		}
		if _, err := s.ledger.Append(ctx, ledger.TypeRevoke, ledger.RevokePayload{Record: v.ID, Grantee: grantee}); err != nil {
			return n, err
		}
		n++
	}
	if n == 0 {
		return 0, fault.NotFoundf("`medmesh grants RECORD` lists them", "%s has no grant on %s", grantee, id)
	}
	return n, nil
}

// Audit is a record's accounting of disclosures (all versions), for its
// owner: the reads the nodes that served them attested, matched with what
// the readers' nodes claimed (sharing/access.Audit).
func (s *Service) Audit(id cid.Cid) ([]api.AccessEvent, error) {
	chain, err := s.OwnedChain(id)
	if err != nil {
		return nil, err
	}
	out := []api.AccessEvent{}
	for _, v := range chain {
		grants := s.ledger.GrantHistory(v.ID)
		for _, x := range access.Audit(s.ledger.Served(v.ID), s.ledger.Access(v.ID), grants) {
			ev := api.AccessEvent{
				ID: v.ID.String(), Version: int(v.Version), Reader: x.Reader.String(), Purpose: x.Purpose, StatedPurpose: x.Stated,
				Time: x.First.UTC(), Until: x.Last.UTC(), Count: x.Count, BlockCount: x.Blocks, AttestedBy: []string{},
				ReportedCount: x.Reported, Emergency: x.Emergency, Review: x.Review, Notes: x.Notes,
			}
			if x.Grant.Defined() {
				ev.Grant = x.Grant.String()
			}
			for _, p := range x.AttestedBy {
				ev.AttestedBy = append(ev.AttestedBy, p.String())
			}
			if ev.Notes == nil {
				ev.Notes = []string{}
			}
			out = append(out, ev)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}
