package daemon

// Research datasets: consent entries, consent-checked de-identified cohorts
// published as "dataset" records, granted in one step and fetched in
// parallel by a researcher (see sharing/dataset for the rules).
//
// A dataset spanning several clinics is federated: each clinic publishes
// its own part under the same name (only the owner of a study can read it,
// check its patient's consent and de-identify it), grants it to the
// researcher, and `dataset fetch NAME` on the researcher's node fetches
// every readable dataset of that name into one folder and one manifest.csv.
// Clinics that want patient pseudonyms and UIDs to be linkable across parts
// share one project key file out of band (--project-key); by default each
// uses its own, so the parts are not linkable.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/records"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/sharing/dataset"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
)

// ---- consent ----

// consentKey is this clinic's secret pseudonym key, derived from its
// identity key: stable, never stored apart, never leaves the node.
func (d *Daemon) consentKey() ([]byte, error) {
	raw, err := d.ident.Raw()
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, raw)
	m.Write([]byte("medmesh consent pseudonym key v1"))
	return m.Sum(nil), nil
}

func (d *Daemon) consentPseudonym(patientID string) ([]byte, error) {
	if patientID == "" || len(patientID) > 64 {
		return nil, fault.Invalidf("", "a patient ID is 1 to 64 characters")
	}
	k, err := d.consentKey()
	if err != nil {
		return nil, err
	}
	return dataset.ConsentPseudonym(k, patientID), nil
}

func checkPurpose(p string) error {
	if !dataset.ValidPurpose(p) {
		return fault.Invalidf("use research, treatment, operations or emergency", "unknown purpose %q", p)
	}
	return nil
}

// AddConsent writes a consent entry for one of this clinic's patients.
func (d *Daemon) AddConsent(ctx context.Context, req api.ConsentRequest) (*api.ConsentInfo, error) {
	if req.Purpose == "" {
		req.Purpose = ledger.PurposeResearch
	}
	if err := checkPurpose(req.Purpose); err != nil {
		return nil, err
	}
	pat, err := d.consentPseudonym(req.Patient)
	if err != nil {
		return nil, err
	}
	now := d.opts.Now()
	exp, err := parseExpiry(now, req.Expires)
	if err != nil {
		return nil, err
	}
	pl := &dataset.ConsentPayload{Patient: pat, Purpose: req.Purpose, Modality: strings.ToUpper(req.Modality), BodyPart: strings.ToUpper(req.BodyPart)}
	if !exp.IsZero() {
		pl.Expires = exp.UnixMilli()
	}
	if err := pl.Check(); err != nil {
		return nil, fault.Invalidf("", "%v", err)
	}
	e, err := d.Ledger.Append(ctx, dataset.TypeConsent, pl)
	if err != nil {
		return nil, err
	}
	c, err := dataset.DecodeConsent(e)
	if err != nil {
		return nil, err
	}
	return d.consentInfo(c, now), nil
}

// RevokeConsent revokes this clinic's consents of (patient, purpose).
func (d *Daemon) RevokeConsent(ctx context.Context, req api.ConsentRequest) (*api.ConsentRevokeResult, error) {
	if req.Purpose == "" {
		req.Purpose = ledger.PurposeResearch
	}
	if err := checkPurpose(req.Purpose); err != nil {
		return nil, err
	}
	pat, err := d.consentPseudonym(req.Patient)
	if err != nil {
		return nil, err
	}
	e, err := d.Ledger.Append(ctx, dataset.TypeConsentRevoke, &dataset.RevokePayload{Patient: pat, Purpose: req.Purpose})
	if err != nil {
		return nil, err
	}
	return &api.ConsentRevokeResult{Entry: e.CID().String(), Patient: hex.EncodeToString(pat), Purpose: req.Purpose}, nil
}

func (d *Daemon) consentInfo(c *dataset.Consent, now time.Time) *api.ConsentInfo {
	return &api.ConsentInfo{Entry: c.Entry.String(), Author: c.Author.String(), Patient: hex.EncodeToString(c.Patient), Purpose: c.Purpose,
		Modality: c.Modality, BodyPart: c.BodyPart, Expires: api.Nullable(c.Expires), Revoked: c.Revoked,
		Expired: !c.Revoked && !c.Live(now, ClockSkew), Time: time.UnixMilli(int64(c.Clock.Wall)).UTC()}
}

// consentsBy returns the consents written by author, evaluated (revoked or
// not), grouped by patient pseudonym.
func (d *Daemon) consentsBy(ctx context.Context, author peer.ID) (map[string][]*dataset.Consent, error) {
	ces, err := d.Ledger.Log(ctx, dataset.TypeConsent, 0)
	if err != nil {
		return nil, err
	}
	res, err := d.Ledger.Log(ctx, dataset.TypeConsentRevoke, 0)
	if err != nil {
		return nil, err
	}
	var cs []*dataset.Consent
	var rs []*dataset.Revocation
	for _, e := range ces {
		if e.Author != author {
			continue
		}
		c, err := dataset.DecodeConsent(e)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	for _, e := range res {
		if e.Author != author {
			continue
		}
		r, err := dataset.DecodeRevocation(e)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	if err := dataset.Evaluate(ctx, &dataset.LedgerAncestry{L: d.Ledger}, cs, rs); err != nil {
		return nil, err
	}
	out := map[string][]*dataset.Consent{}
	for _, c := range cs {
		out[string(c.Patient)] = append(out[string(c.Patient)], c)
	}
	return out, nil
}

// Consents lists this clinic's consents, for one patient if patientID is
// set, and of one purpose if purpose is set.
func (d *Daemon) Consents(ctx context.Context, patientID, purpose string) ([]api.ConsentInfo, error) {
	by, err := d.consentsBy(ctx, d.self)
	if err != nil {
		return nil, err
	}
	var only []byte
	if patientID != "" {
		if only, err = d.consentPseudonym(patientID); err != nil {
			return nil, err
		}
	}
	now := d.opts.Now()
	out := []api.ConsentInfo{}
	for pat, cs := range by {
		if only != nil && pat != string(only) {
			continue
		}
		for _, c := range cs {
			if purpose == "" || c.Purpose == purpose {
				out = append(out, *d.consentInfo(c, now))
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].Entry < out[j].Entry
	})
	return out, nil
}

// ---- dataset records ----

// datasetRef is one readable dataset version with its manifest.
type datasetRef struct {
	info ledger.RecordInfo
	g    *ledger.Grant
	man  *dataset.Manifest
}

// openDataset reads and strictly decodes a dataset record's manifest.
func (d *Daemon) openDataset(ctx context.Context, id cid.Cid, version int) (*datasetRef, error) {
	info, m, key, g, err := d.Open(ctx, id, version)
	if err != nil {
		return nil, err
	}
	if m.Kind != dataset.Kind || len(m.Files) != 1 {
		return nil, fault.Invalidf("", "record %s is not a dataset", info.ID)
	}
	if m.Files[0].Size > 64<<20 {
		return nil, fmt.Errorf("dataset %s: manifest of %d bytes is too large", info.ID, m.Files[0].Size)
	}
	var buf bytes.Buffer
	if err := d.ReadFiles(ctx, m, key, []int{0}, &buf); err != nil {
		return nil, err
	}
	man, err := dataset.Decode(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("dataset %s: %w", info.ID, err)
	}
	return &datasetRef{info: info, g: g, man: man}, nil
}

// datasets returns the newest readable version of every dataset chain this
// node owns or may read.
func (d *Daemon) datasets(ctx context.Context) []*datasetRef {
	seen := map[cid.Cid]bool{}
	var out []*datasetRef
	for _, r := range d.Ledger.Records() {
		if r.Class != dataset.Class || seen[r.ID] {
			continue
		}
		chain := d.Ledger.Versions(r.ID)
		if len(chain) == 0 {
			chain = []ledger.RecordInfo{r}
		}
		for _, v := range chain {
			seen[v.ID] = true
		}
		if _, _, _, err := d.resolve(ctx, r.ID, 0); err != nil {
			continue // not readable here
		}
		ref, err := d.openDataset(ctx, r.ID, 0)
		if err != nil {
			d.log.Debug("dataset: cannot open", "record", r.ID, "err", err)
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

func refInfo(d *Daemon, r *datasetRef) api.DatasetInfo {
	di := api.DatasetInfo{ID: r.info.ID.String(), Name: r.man.Name, Version: int(r.man.Version), Owner: r.info.Owner.String(),
		Mine: r.info.Owner == d.self, Studies: len(r.man.Studies), Created: r.info.Announced}
	if r.info.Prev.Defined() {
		di.Prev = r.info.Prev.String()
	}
	for _, s := range r.man.Studies {
		di.Instances += int(s.Instances)
		di.Size += int64(s.Size)
	}
	return di
}

// ListDatasets lists the datasets this node published or may read.
func (d *Daemon) ListDatasets(ctx context.Context) []api.DatasetInfo {
	out := []api.DatasetInfo{}
	for _, r := range d.datasets(ctx) {
		out = append(out, refInfo(d, r))
	}
	return out
}

// findDatasets resolves a dataset ID or name to the newest readable
// version of each matching dataset (a name may match one part per clinic).
func (d *Daemon) findDatasets(ctx context.Context, ref string) ([]*datasetRef, error) {
	if id, err := cid.Decode(ref); err == nil {
		r, err := d.openDataset(ctx, id, 0)
		if err != nil {
			return nil, err
		}
		return []*datasetRef{r}, nil
	}
	var out []*datasetRef
	for _, r := range d.datasets(ctx) {
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

// GrantDataset grants the newest version of an owned dataset and every
// study in it to a member, purpose research.
func (d *Daemon) GrantDataset(ctx context.Context, id cid.Cid, req api.DatasetGrantRequest) (*api.DatasetGrantResult, error) {
	grantee, err := peer.Decode(req.To)
	if err != nil {
		return nil, fault.Invalidf("", "%q is not a peer ID", req.To)
	}
	expires, err := grantExpiry(d.opts.Now(), ledger.PurposeResearch, req.Expires)
	if err != nil {
		return nil, err
	}
	if _, err := d.ownedChain(id); err != nil {
		return nil, err
	}
	latest := d.latestVersion(id)
	ref, err := d.openDataset(ctx, latest.ID, int(latest.Version))
	if err != nil {
		return nil, err
	}
	return d.grantRef(ctx, ref, grantee, expires)
}

func (d *Daemon) grantRef(ctx context.Context, ref *datasetRef, grantee peer.ID, expires time.Time) (*api.DatasetGrantResult, error) {
	if !d.Ledger.IsMember(grantee) {
		return nil, fault.Invalidf("the admin admits it with `medmesh network invite`", "%s is not a member of the network", grantee)
	}
	pub, ok := d.Ledger.KEMKey(grantee)
	if !ok {
		return nil, fault.Conflictf("start the grantee's daemon so it announces its key, then retry", "%s has not announced a key-wrapping key yet", grantee)
	}
	recs := []ledger.RecordInfo{ref.info}
	for _, s := range ref.man.Studies {
		sid, _ := s.RecordID()
		info, ok := d.Ledger.Record(sid)
		if !ok || info.Owner != d.self {
			return nil, fmt.Errorf("dataset %s: study record %s is not announced as this node's", ref.info.ID, sid)
		}
		recs = append(recs, info)
	}
	// Studies first, the manifest last: a grantee that can read the
	// manifest can read every study in it.
	recs = append(recs[1:], recs[0])
	for _, info := range recs {
		key, _, err := d.readKey(ctx, info)
		if err != nil {
			return nil, err
		}
		if _, err := d.grantVersion(ctx, info.ID, key[:], grantee, pub, ledger.PurposeResearch, expires); err != nil {
			return nil, err
		}
	}
	return &api.DatasetGrantResult{Dataset: ref.info.ID.String(), Version: int(ref.man.Version), Grantee: grantee.String(), Records: len(recs)}, nil
}

// ---- create ----

// candidates returns the owned source study records to consider, newest
// version of each, deduplicated, in a stable order.
func (d *Daemon) datasetCandidates(ctx context.Context, req api.DatasetCreateRequest, q dataset.Query, res *api.DatasetCreateResult) ([]ledger.RecordInfo, error) {
	var ids []cid.Cid
	if len(req.Records) > 0 {
		for _, s := range req.Records {
			id, err := cid.Decode(strings.TrimSpace(s))
			if err != nil {
				return nil, fault.Invalidf("", "%q is not a record ID", s)
			}
			ids = append(ids, id)
		}
	} else {
		hits, err := d.imaging.Find(ctx, dicom.Filter{Modality: q.Modality})
		if err != nil {
			return nil, err
		}
		for _, h := range hits {
			if id, err := cid.Decode(h.RecordID); err == nil {
				ids = append(ids, id)
			}
		}
	}
	seen := map[cid.Cid]bool{}
	var out []ledger.RecordInfo
	for _, id := range ids {
		info, ok := d.Ledger.Record(id)
		if !ok || info.Owner != d.self {
			if len(req.Records) > 0 {
				exclude(res, id.String(), 0, dataset.ReasonNotOwned)
			}
			continue
		}
		latest := d.latestVersion(id)
		if seen[latest.ID] {
			continue
		}
		seen[latest.ID] = true
		out = append(out, latest)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID.KeyString() < out[j].ID.KeyString() })
	return out, nil
}

// exclude records that a study's series (or the whole study, series 0) is
// left out of a dataset, and why.
func exclude(r *api.DatasetCreateResult, rec string, series int, reason string) {
	r.Excluded = append(r.Excluded, api.DatasetExcluded{Record: rec, Series: series, Reason: reason})
	r.Counts[reason]++
}

// CreateDataset selects owned studies, keeps the series whose patient has
// a live research consent covering them, de-identifies each kept study
// with one project key, stores the outputs as records and publishes a
// dataset manifest record. Grants of the previous version are carried to
// the new one, and studies it drops have those grants revoked.
func (d *Daemon) CreateDataset(ctx context.Context, req api.DatasetCreateRequest) (*api.DatasetCreateResult, error) {
	if !dataset.ValidName(req.Name) {
		return nil, fault.Invalidf("1 to 128 printable characters, no / , or \\", "bad dataset name %q", req.Name)
	}
	if (len(req.Records) == 0) == (req.Query == "") {
		return nil, fault.Invalidf("", "give either records or a query")
	}
	var q dataset.Query
	if req.Query != "" {
		var err error
		if q, err = dataset.ParseQuery(req.Query); err != nil {
			return nil, fault.Invalidf("", "%v", err)
		}
	}
	pkey, err := d.imaging.ProjectKey(req.ProjectKeyFile)
	if err != nil {
		return nil, err
	}
	opts := dicom.DeidOptions{ProjectKey: pkey, RetainPatientCharacteristics: req.RetainPatientCharacteristics, ShiftDates: req.ShiftDates}
	ckey, err := d.consentKey()
	if err != nil {
		return nil, err
	}
	// One create at a time per node: versions of a name must not race.
	d.datasetMu.Lock()
	defer d.datasetMu.Unlock()

	res := &api.DatasetCreateResult{Name: req.Name, Studies: []api.DatasetStudy{}, Excluded: []api.DatasetExcluded{}, Counts: map[string]int{}}
	var prev *datasetRef
	for _, r := range d.datasets(ctx) {
		if r.info.Owner == d.self && r.man.Name == req.Name && (prev == nil || r.man.Version > prev.man.Version) {
			prev = r
		}
	}
	consents, err := d.consentsBy(ctx, d.self)
	if err != nil {
		return nil, err
	}
	now := d.opts.Now()
	live := func(c *dataset.Consent) bool { return c.Live(now, 0) }
	cands, err := d.datasetCandidates(ctx, req, q, res)
	if err != nil {
		return nil, err
	}
	man := &dataset.Manifest{Format: dataset.FormatVersion, Name: req.Name, Version: 1, Profile: dataset.Profile,
		Options: dataset.Options{RetainPatientCharacteristics: opts.RetainPatientCharacteristics, ShiftDates: opts.ShiftDates}}
	if prev != nil {
		man.Version = prev.man.Version + 1
	}
	for _, info := range cands {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		o, err := d.imaging.Open(ctx, info.ID, int(info.Version), "")
		if err != nil {
			// Invalid: a record of another kind, not a DICOM study.
			if fault.Is(err, fault.Invalid) && len(req.Records) > 0 {
				exclude(res, info.ID.String(), 0, dataset.ReasonNotStudy)
				continue
			}
			if fault.Is(err, fault.Invalid) {
				continue
			}
			return nil, err
		}
		src := o.Study
		// De-identified studies are never sources of a dataset.
		if o.Manifest.Name == imaging.DeidStudyName || strings.HasPrefix(src.PatientID, "ANON-") {
			if len(req.Records) > 0 {
				exclude(res, info.ID.String(), len(src.Series), dataset.ReasonNotStudy)
			}
			continue
		}
		var research []*dataset.Consent
		for _, c := range consents[string(dataset.ConsentPseudonym(ckey, src.PatientID))] {
			if c.Purpose == ledger.PurposeResearch {
				research = append(research, c)
			}
		}
		keep := map[string]bool{}
		var reason string
		var left int
		for _, se := range src.Series {
			if !q.Matches(se.Modality, se.BodyPart) {
				left++
				if reason == "" {
					reason = dataset.ReasonNoMatch
				}
				continue
			}
			if v := dataset.SeriesVerdict(research, se.Modality, se.BodyPart, live); v != "" {
				left++
				if reason == "" || reason == dataset.ReasonNoMatch {
					reason = v
				}
				continue
			}
			keep[se.UID] = true
		}
		if len(keep) == 0 {
			exclude(res, info.ID.String(), left, reason)
			continue
		}
		if left > 0 {
			exclude(res, info.ID.String(), left, reason)
		}
		ds, reused, err := d.datasetDeid(ctx, o, keep, opts)
		if err != nil {
			if errors.Is(err, imaging.ErrAllExcluded) {
				exclude(res, info.ID.String(), len(keep), dataset.ReasonNotDeidable)
				continue
			}
			return nil, err
		}
		man.Studies = append(man.Studies, *ds)
		sid, _ := ds.RecordID()
		res.Studies = append(res.Studies, api.DatasetStudy{Record: sid.String(), Patient: ds.Patient, StudyUID: ds.StudyUID,
			Instances: int(ds.Instances), Size: int64(ds.Size), Reused: reused})
	}
	if len(man.Studies) == 0 {
		return res, fault.Invalidf("check the selection and the patients' research consents (`medmesh consent ls`)",
			"no study qualifies for dataset %q (%d left out)", req.Name, len(res.Excluded))
	}
	sort.Slice(man.Studies, func(i, j int) bool { return man.Studies[i].StudyUID < man.Studies[j].StudyUID })
	body, err := man.Encode()
	if err != nil {
		return nil, err
	}
	areq := records.AddRequest{Name: req.Name, MediaType: dataset.MediaType, Kind: dataset.Kind, Class: dataset.Class,
		Files: []records.FileSource{{Path: dataset.FileName, Open: func() (io.Reader, error) { return bytes.NewReader(body), nil }}}}
	if prev != nil {
		areq.Prev = prev.info.ID
		res.Prev = prev.info.ID.String()
	}
	ar, err := d.Add(ctx, areq)
	if err != nil {
		return nil, err
	}
	res.ID, res.Version = ar.ID.String(), ar.Version
	if prev != nil {
		if err := d.carryGrants(ctx, prev, ar.ID, man, res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// carryGrants grants the new version to the live research grantees of the
// previous one and revokes their grants of studies the new one dropped
// (a consent revoked since, for instance).
func (d *Daemon) carryGrants(ctx context.Context, prev *datasetRef, id cid.Cid, man *dataset.Manifest, res *api.DatasetCreateResult) error {
	now := d.opts.Now()
	grantees := map[peer.ID]time.Time{}
	for _, g := range d.Ledger.Grants(prev.info.ID) {
		if g.Purpose == ledger.PurposeResearch && grantLive(g, now) && g.Grantee != d.self {
			grantees[g.Grantee] = g.Expires
		}
	}
	if len(grantees) == 0 {
		return nil
	}
	info, ok := d.Ledger.Record(id)
	if !ok {
		return fmt.Errorf("dataset %s: not on the ledger after add", id)
	}
	ref := &datasetRef{info: info, man: man}
	kept := map[string]bool{}
	for _, s := range man.Studies {
		kept[string(s.Record)] = true
	}
	ps := make([]peer.ID, 0, len(grantees))
	for p := range grantees {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	for _, p := range ps {
		for _, s := range prev.man.Studies {
			if kept[string(s.Record)] {
				continue
			}
			sid, _ := s.RecordID()
			n, err := d.Revoke(ctx, sid, p)
			if err != nil {
				return err
			}
			res.Revoked += n
		}
		if _, err := d.grantRef(ctx, ref, p, grantees[p]); err != nil {
			return err
		}
		res.Regranted = append(res.Regranted, p.String())
	}
	return nil
}

// deidCacheKey names a de-identified output in node-local bookkeeping: the
// same source version, kept series and options give the same output, so a
// new dataset version reuses it instead of storing the study again.
func deidCacheKey(src cid.Cid, keep map[string]bool, opts dicom.DeidOptions) datastore.Key {
	h := sha256.New()
	h.Write([]byte("medmesh dataset deid v1\x00"))
	kh := sha256.Sum256(opts.ProjectKey)
	h.Write(kh[:])
	fmt.Fprintf(h, "%s\x00%v\x00%v\x00", src, opts.RetainPatientCharacteristics, opts.ShiftDates)
	uids := make([]string, 0, len(keep))
	for u := range keep {
		uids = append(uids, u)
	}
	sort.Strings(uids)
	for _, u := range uids {
		h.Write([]byte(u + "\x00"))
	}
	return datastore.NewKey("/dataset/deid/" + hex.EncodeToString(h.Sum(nil)))
}

// datasetDeid de-identifies the kept series of a source study (the
// imaging service's de-identification: two passes, streamed) into a new
// study record, or reuses an earlier identical output.
func (d *Daemon) datasetDeid(ctx context.Context, src *imaging.Opened, keep map[string]bool, opts dicom.DeidOptions) (*dataset.Study, bool, error) {
	ck := deidCacheKey(src.Info.ID, keep, opts)
	if raw, err := d.local.Get(ctx, ck); err == nil {
		var s dataset.Study
		if dataset.Unmarshal(raw, &s) == nil {
			if sid, err := s.RecordID(); err == nil {
				if ri, ok := d.Ledger.Record(sid); ok && ri.Owner == d.self {
					return &s, true, nil
				}
			}
		}
	}
	dd, err := d.imaging.Deidentify(ctx, src, opts, func(se *dicom.Series) bool { return keep[se.UID] })
	if err != nil {
		return nil, false, err
	}
	out := &dataset.Study{Record: dd.ID.Bytes(), Patient: dd.Study.PatientID, StudyUID: dd.Study.UID}
	for _, se := range dd.Study.Series {
		ds := dataset.Series{UID: se.UID, Modality: se.Modality, BodyPart: se.BodyPart}
		for _, ni := range se.Instances {
			ds.Instances++
			ds.Size += uint64(ni.Size)
		}
		out.Series = append(out.Series, ds)
		out.Instances += ds.Instances
		out.Size += ds.Size
	}
	if raw, err := dataset.Marshal(out); err == nil {
		if err := d.local.Put(ctx, ck, raw); err != nil {
			d.log.Warn("dataset: remember de-identified study", "record", dd.ID, "err", err)
		}
	}
	return out, false, nil
}
