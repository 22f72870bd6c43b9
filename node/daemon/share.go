package daemon

import (
	"context"
	"fmt"
	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/records"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/keywrap"
	"github.com/medmesh/medmesh/sharing/ledger"
)

func (d *Daemon) shareRoutes() {
	s := d.api
	s.HandleFunc("POST "+p+"/records/{id}/grants", func(w http.ResponseWriter, r *http.Request) {
		id, err := pathCID(r, "id")
		if err != nil {
			api.Fail(w, err)
			return
		}
		var req api.GrantRequest
		if err := api.Decode(r, &req); err != nil {
			api.Fail(w, err)
			return
		}
		g, err := d.Grant(r.Context(), id, req)
		reply(w, g, err)
	})
	s.HandleFunc("GET "+p+"/records/{id}/grants", func(w http.ResponseWriter, r *http.Request) {
		id, err := pathCID(r, "id")
		if err != nil {
			api.Fail(w, err)
			return
		}
		gs, err := d.ListGrants(id)
		reply(w, gs, err)
	})
	s.HandleFunc("DELETE "+p+"/records/{id}/grants/{peer}", func(w http.ResponseWriter, r *http.Request) {
		id, err := pathCID(r, "id")
		if err != nil {
			api.Fail(w, err)
			return
		}
		pid, err := peer.Decode(r.PathValue("peer"))
		if err != nil {
			api.Fail(w, fault.Invalidf("", "%q is not a peer ID", r.PathValue("peer")))
			return
		}
		n, err := d.Revoke(r.Context(), id, pid)
		reply(w, api.RevokeResult{ID: id.String(), Grantee: pid.String(), VersionCount: n}, err)
	})
	s.HandleFunc("GET "+p+"/records/{id}/audit", func(w http.ResponseWriter, r *http.Request) {
		id, err := pathCID(r, "id")
		if err != nil {
			api.Fail(w, err)
			return
		}
		evs, err := d.Audit(id)
		reply(w, evs, err)
	})
}

// ownedChain returns every version of a record this node owns.
func (d *Daemon) ownedChain(id cid.Cid) ([]ledger.RecordInfo, error) {
	info, ok := d.Ledger.Record(id)
	if !ok {
		return nil, fault.NotFoundf("", "unknown record %s", id)
	}
	if info.Owner != d.self {
		return nil, fault.Forbiddenf("only the record's owner can do this", "record %s belongs to %s", id, info.Owner)
	}
	chain := d.Ledger.Versions(id)
	if len(chain) == 0 {
		chain = []ledger.RecordInfo{info}
	}
	sort.Slice(chain, func(i, j int) bool { return chain[i].Version < chain[j].Version })
	return chain, nil
}

// Grant shares every version of a record with a member: its data key is
// wrapped to the grantee's announced key and published in a grant entry.
func (d *Daemon) Grant(ctx context.Context, id cid.Cid, req api.GrantRequest) (*api.Grant, error) {
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
	now := d.opts.Now()
	expires, err := grantExpiry(now, req.Purpose, req.Expires)
	if err != nil {
		return nil, err
	}
	if !d.Ledger.IsMember(grantee) {
		return nil, fault.Invalidf("the admin admits it with `medmesh network invite`", "%s is not a member of the network", grantee)
	}
	pub, ok := d.Ledger.KEMKey(grantee)
	if !ok {
		return nil, fault.Conflictf("start the grantee's daemon so it announces its key, then retry", "%s has not announced a key-wrapping key yet", grantee)
	}
	if info, ok := d.Ledger.Record(id); ok && info.Owner != d.self && req.Purpose == ledger.PurposeEmergency {
		e, err := d.emergencyGrant(ctx, id, grantee, pub, req)
		if err != nil {
			return nil, err
		}
		return &api.Grant{ID: id.String(), Grantee: grantee.String(), Purpose: req.Purpose, Expires: api.Nullable(expires), Granted: now.UTC(), Entry: e.CID().String()}, nil
	}
	chain, err := d.ownedChain(id)
	if err != nil {
		return nil, err
	}
	var last *ledger.Entry
	for _, v := range chain {
		key, _, err := d.readKey(ctx, v)
		if err != nil {
			return nil, err
		}
		e, err := d.grantVersion(ctx, v.ID, key[:], grantee, pub, req.Purpose, expires)
		if err != nil {
			return nil, err
		}
		last = e
	}
	return &api.Grant{ID: id.String(), Grantee: grantee.String(), Purpose: req.Purpose, Expires: api.Nullable(expires), Granted: now.UTC(), Entry: last.CID().String()}, nil
}

func (d *Daemon) grantVersion(ctx context.Context, rec cid.Cid, key []byte, grantee peer.ID, pub []byte, purpose string, expires time.Time) (*ledger.Entry, error) {
	env, err := keywrap.Wrap(pub, key, grantInfo(rec, grantee, purpose))
	if err != nil {
		return nil, err
	}
	b, _ := env.MarshalBinary()
	return d.Ledger.Append(ctx, ledger.TypeGrant, ledger.GrantPayload{Record: rec, Grantee: grantee, Envelope: b, Expires: expires, Purpose: purpose})
}

// ListGrants lists the current grants of a record (all versions).
func (d *Daemon) ListGrants(id cid.Cid) ([]api.Grant, error) {
	if _, ok := d.Ledger.Record(id); !ok {
		return nil, fault.NotFoundf("", "unknown record %s", id)
	}
	now := d.opts.Now()
	out := []api.Grant{}
	for _, g := range d.Ledger.Grants(id) {
		out = append(out, api.Grant{
			ID: g.Record.String(), Grantee: g.Grantee.String(), Purpose: g.Purpose,
			Expires: api.Nullable(g.Expires), Granted: g.Time.UTC(), Entry: g.Entry.String(), Expired: !grantLive(g, now),
		})
	}
	return out, nil
}

// Revoke cancels a peer's grants on every version of a record.
func (d *Daemon) Revoke(ctx context.Context, id cid.Cid, grantee peer.ID) (int, error) {
	chain, err := d.ownedChain(id)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, v := range chain {
		has := false
		for _, g := range d.Ledger.Grants(v.ID) {
			has = has || g.Grantee == grantee
		}
		if !has {
			continue
		}
		if _, err := d.Ledger.Append(ctx, ledger.TypeRevoke, ledger.RevokePayload{Record: v.ID, Grantee: grantee}); err != nil {
			return n, err
		}
		n++
	}
	if n == 0 {
		return 0, fault.NotFoundf("`medmesh grants RECORD` lists them", "%s has no grant on %s", grantee, id)
	}
	return n, nil
}

// Update stores a new version of a record under a fresh key, wrapped to the
// owner and the current grantees only: a revoked peer never gets it.
func (d *Daemon) Update(ctx context.Context, req records.AddRequest) (*records.AddResult, error) {
	chain, err := d.ownedChain(req.Prev)
	if err != nil {
		return nil, err
	}
	latest := chain[len(chain)-1]
	prevInfo, _ := d.Ledger.Record(latest.ID)
	if req.Class == "" {
		req.Class = prevInfo.Class
	}
	if req.Replicas == 0 {
		req.Replicas = int(prevInfo.Replicas)
	}
	// A record opted into break-glass access stays opted in.
	req.Emergency = req.Emergency || len(prevInfo.Escrow) > 0
	grants := d.Ledger.Grants(latest.ID)
	res, err := d.Add(ctx, req)
	if err != nil {
		return nil, err
	}
	key, _, err := d.readKey(ctx, ledger.RecordInfo{ID: res.ID, Owner: d.self})
	if err != nil {
		return nil, err
	}
	now := d.opts.Now()
	for _, g := range grants {
		if !grantLive(g, now) {
			continue
		}
		pub, ok := d.Ledger.KEMKey(g.Grantee)
		if !ok {
			continue
		}
		if _, err := d.grantVersion(ctx, res.ID, key[:], g.Grantee, pub, g.Purpose, g.Expires); err != nil {
			return nil, fmt.Errorf("re-grant new version to %s: %w", g.Grantee, err)
		}
	}
	return res, nil
}

// grantExpiry turns a grant request's lifetime into its expiry: none for
// an empty lifetime (24 h for an emergency grant, the longest it may last);
// a lifetime that is not positive, longer than ledger.MaxGrantLifetime, or
// (emergency) longer than 24 h is refused rather than changed.
func grantExpiry(now time.Time, purpose, lifetime string) (time.Time, error) {
	if lifetime == "" {
		if purpose == ledger.PurposeEmergency {
			return now.Add(ledger.MaxEmergencyGrant), nil
		}
		return time.Time{}, nil
	}
	dur, err := time.ParseDuration(lifetime)
	switch {
	case err != nil:
		return time.Time{}, fault.Invalidf("give a duration such as 72h or 30m", "bad grant lifetime %q", lifetime)
	case dur <= 0:
		return time.Time{}, fault.Invalidf("give a positive duration such as 72h; leave --expires out for a grant that does not expire", "a grant cannot expire %s from now", lifetime)
	case purpose == ledger.PurposeEmergency && dur > ledger.MaxEmergencyGrant:
		return time.Time{}, fault.Invalidf("ask for --expires 24h or less (the default for emergency grants is 24h)", "an emergency grant lasts at most %s, not %s", ledger.MaxEmergencyGrant, lifetime)
	case dur > ledger.MaxGrantLifetime:
		return time.Time{}, fault.Invalidf(fmt.Sprintf("ask for at most %s (10 years), or leave --expires out for a grant that does not expire", ledger.MaxGrantLifetime), "a grant lifetime of %s is too long", lifetime)
	}
	return now.Add(dur), nil
}

// Audit is a record's accounting of disclosures (all versions), for its
// owner: the reads the nodes that served them attested, matched with what
// the readers' nodes claimed (sharing/access.Audit).
func (d *Daemon) Audit(id cid.Cid) ([]api.AccessEvent, error) {
	chain, err := d.ownedChain(id)
	if err != nil {
		return nil, err
	}
	out := []api.AccessEvent{}
	for _, v := range chain {
		grants := d.Ledger.GrantHistory(v.ID)
		for _, x := range access.Audit(d.Ledger.Served(v.ID), d.Ledger.Access(v.ID), grants) {
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
