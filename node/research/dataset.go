package research

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/dataset"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// maxManifest bounds a dataset manifest read into memory.
const maxManifest = 64 << 20

// datasetRef is one readable dataset version with its manifest.
type datasetRef struct {
	info ledger.RecordInfo
	g    *ledger.Grant
	man  *dataset.Manifest
}

// open reads and strictly decodes a dataset record's manifest.
func (s *Service) open(ctx context.Context, id cid.Cid, version int) (*datasetRef, error) {
	info, m, key, g, err := s.rec.OpenFor(ctx, id, version, "")
	if err != nil {
		return nil, err
	}
	if m.Kind != dataset.Kind || len(m.Files) != 1 {
		return nil, fault.Invalidf("", "record %s is not a dataset", info.ID)
	}
	if m.Files[0].Size > maxManifest {
		return nil, fmt.Errorf("dataset %s: manifest of %d bytes is too large", info.ID, m.Files[0].Size)
	}
	var buf bytes.Buffer
	if err := s.rec.ReadFiles(ctx, m, key, []int{0}, &buf); err != nil {
		return nil, err
	}
	man, err := dataset.Decode(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("dataset %s: %w", info.ID, err)
	}
	return &datasetRef{info: info, g: g, man: man}, nil
}

// mayRead reports whether this node may read some version of a chain: it
// owns it or holds a live grant of it (what the records service needs to
// find the version's key), decided from the ledger alone, so a listing
// does not try the keys of records it cannot read.
func (s *Service) mayRead(chain []ledger.RecordInfo, now time.Time) bool {
	for _, v := range chain {
		if v.Owner == s.self {
			return true
		}
		for _, g := range s.led.Grants(v.ID) {
			if g.Grantee == s.self && g.LiveAt(now) {
				return true
			}
		}
	}
	return false
}

// datasets returns the newest readable version of every dataset chain this
// node owns or may read (only those it owns if mine is set). Opening
// another node's dataset is a read the ledger records, so callers that
// need only their own say so.
func (s *Service) datasets(ctx context.Context, mine bool) []*datasetRef {
	seen := map[cid.Cid]bool{}
	var out []*datasetRef
	now := s.now()
	for _, r := range s.listable(ctx, mine) {
		if r.Class != dataset.Class || seen[r.ID] || mine && r.Owner != s.self {
			continue
		}
		chain := s.led.Versions(r.ID)
		if len(chain) == 0 {
			chain = []ledger.RecordInfo{r}
		}
		for _, v := range chain {
			seen[v.ID] = true
		}
		if !s.mayRead(chain, now) {
			continue
		}
		ref, err := s.open(ctx, r.ID, 0)
		if err != nil {
			s.log.Debug("dataset: cannot open", "record", r.ID, "err", err)
			continue
		}
		out = append(out, ref)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].man.Name != out[j].man.Name {
			return out[i].man.Name < out[j].man.Name
		}
		return out[i].info.ID.KeyString() < out[j].info.ID.KeyString()
	})
	return out
}

// listable are the records that may be datasets this node lists: its
// own, and (unless mine) those it has or had a grant on.
func (s *Service) listable(ctx context.Context, mine bool) []ledger.RecordInfo {
	out, err := s.led.OwnedRecords(ctx, s.self)
	if err != nil {
		s.log.Warn("dataset: list own records", "err", err)
	}
	if mine {
		return out
	}
	ids, err := s.led.GrantedIDs(ctx, s.self)
	if err != nil {
		s.log.Warn("dataset: list granted records", "err", err)
	}
	for _, id := range ids {
		if r, ok := s.led.Record(id); ok {
			out = append(out, r)
		}
	}
	return out
}

func (s *Service) refInfo(r *datasetRef) api.DatasetInfo {
	di := api.DatasetInfo{ID: r.info.ID.String(), Name: r.man.Name, Version: int(r.man.Version), Owner: r.info.Owner.String(),
		Mine: r.info.Owner == s.self, Studies: len(r.man.Studies), Created: r.info.Announced}
	if r.info.Prev.Defined() {
		di.Prev = r.info.Prev.String()
	}
	for _, st := range r.man.Studies {
		di.Instances += int(st.Instances)
		di.Size += int64(st.Size)
	}
	return di
}

// ListDatasets lists the datasets this node published or may read.
func (s *Service) ListDatasets(ctx context.Context) []api.DatasetInfo {
	out := []api.DatasetInfo{}
	for _, r := range s.datasets(ctx, false) {
		out = append(out, s.refInfo(r))
	}
	return out
}

// find resolves a dataset ID or name to the newest readable version of
// each matching dataset (a name may match one part per clinic).
func (s *Service) find(ctx context.Context, ref string) ([]*datasetRef, error) {
	if id, err := cid.Decode(ref); err == nil {
		r, err := s.open(ctx, id, 0)
		if err != nil {
			return nil, err
		}
		return []*datasetRef{r}, nil
	}
	var out []*datasetRef
	for _, r := range s.datasets(ctx, false) {
		if r.man.Name == ref {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil, fault.NotFoundf("`medmesh dataset ls` lists what this node may read", "no readable dataset named %q", ref)
	}
	return out, nil
}

// ---- grant ----

// GrantDatasets grants every dataset this node publishes under ref (an ID
// or a name) to a member, purpose research: the newest version of each,
// and every study in it.
func (s *Service) GrantDatasets(ctx context.Context, ref string, req api.DatasetGrantRequest) ([]*api.DatasetGrantResult, error) {
	refs, err := s.find(ctx, ref)
	if err != nil {
		return nil, err
	}
	var out []*api.DatasetGrantResult
	for _, r := range refs {
		if r.info.Owner != s.self {
			continue
		}
		g, err := s.grantOwned(ctx, r.info.ID, req)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	if len(out) == 0 {
		return nil, fault.Forbiddenf("only the publishing clinic grants its dataset", "this node publishes no dataset %q", ref)
	}
	return out, nil
}

// grantOwned grants the newest version of an owned dataset and every
// study in it to a member, purpose research.
func (s *Service) grantOwned(ctx context.Context, id cid.Cid, req api.DatasetGrantRequest) (*api.DatasetGrantResult, error) {
	grantee, err := peer.Decode(req.To)
	if err != nil {
		return nil, fault.Invalidf("", "%q is not a peer ID", req.To)
	}
	expires, err := records.GrantExpiry(s.now(), ledger.PurposeResearch, req.Expires)
	if err != nil {
		return nil, err
	}
	info, ok := s.led.Record(id)
	if !ok {
		return nil, fault.NotFoundf("", "unknown record %s", id)
	}
	if info.Owner != s.self {
		return nil, fault.Forbiddenf("only the record's owner can do this", "record %s belongs to %s", id, info.Owner)
	}
	latest := s.rec.LatestVersion(id)
	ref, err := s.open(ctx, latest.ID, int(latest.Version))
	if err != nil {
		return nil, err
	}
	return s.grantRef(ctx, ref, grantee, expires)
}

func (s *Service) grantRef(ctx context.Context, ref *datasetRef, grantee peer.ID, expires time.Time) (*api.DatasetGrantResult, error) {
	if !s.led.IsMember(grantee) {
		return nil, fault.Invalidf("the admin admits it with `medmesh network invite`", "%s is not a member of the network", grantee)
	}
	pub, ok := s.led.KEMKey(grantee)
	if !ok {
		return nil, fault.Conflictf("start the grantee's daemon so it announces its key, then retry", "%s has not announced a key-wrapping key yet", grantee)
	}
	recs := []ledger.RecordInfo{ref.info}
	for _, st := range ref.man.Studies {
		sid, _ := st.RecordID()
		info, ok := s.led.Record(sid)
		if !ok || info.Owner != s.self {
			return nil, fmt.Errorf("dataset %s: study record %s is not announced as this node's", ref.info.ID, sid)
		}
		recs = append(recs, info)
	}
	// Studies first, the manifest last: a grantee that can read the
	// manifest can read every study in it.
	recs = append(recs[1:], recs[0])
	for _, info := range recs {
		key, _, err := s.rec.ReadKey(ctx, info)
		if err != nil {
			return nil, err
		}
		if _, err := s.rec.GrantVersion(ctx, info.ID, key[:], grantee, pub, ledger.PurposeResearch, expires); err != nil {
			return nil, err
		}
	}
	return &api.DatasetGrantResult{Dataset: ref.info.ID.String(), Version: int(ref.man.Version), Grantee: grantee.String(), Records: len(recs)}, nil
}
