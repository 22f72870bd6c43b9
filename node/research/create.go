package research

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/dataset"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
)

// candidates returns the owned source study records to consider, newest
// version of each, deduplicated, in a stable order.
func (s *Service) candidates(ctx context.Context, req api.DatasetCreateRequest, q dataset.Query, res *api.DatasetCreateResult) ([]ledger.RecordInfo, error) {
	var ids []cid.Cid
	if len(req.Records) > 0 {
		for _, r := range req.Records {
			id, err := cid.Decode(strings.TrimSpace(r))
			if err != nil {
				return nil, fault.Invalidf("", "%q is not a record ID", r)
			}
			ids = append(ids, id)
		}
	} else {
		hits, err := s.img.Find(ctx, dicom.Filter{Modality: q.Modality})
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
		info, ok := s.led.Record(id)
		if !ok || info.Owner != s.self {
			if len(req.Records) > 0 {
				exclude(res, id.String(), 0, dataset.ReasonNotOwned)
			}
			continue
		}
		latest := s.rec.LatestVersion(id)
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
func (s *Service) CreateDataset(ctx context.Context, req api.DatasetCreateRequest) (*api.DatasetCreateResult, error) {
	if !dataset.ValidName(req.Name) {
		return nil, fault.Invalidf("1 to 128 printable characters, no / , or \\", "bad dataset name %q", req.Name)
	}
	if (len(req.Records) == 0) == (req.Query == "") {
		return nil, fault.Invalidf("", "give either records or a query")
	}
	sel := selection{explicit: len(req.Records) > 0}
	if req.Query != "" {
		var err error
		if sel.q, err = dataset.ParseQuery(req.Query); err != nil {
			return nil, fault.Invalidf("", "%v", err)
		}
	}
	pkey, err := s.img.ProjectKey(req.ProjectKeyFile)
	if err != nil {
		return nil, err
	}
	sel.opts = dicom.DeidOptions{ProjectKey: pkey, RetainPatientCharacteristics: req.RetainPatientCharacteristics, ShiftDates: req.ShiftDates}
	s.createMu.Lock()
	defer s.createMu.Unlock()

	res := &api.DatasetCreateResult{Name: req.Name, Studies: []api.DatasetStudy{}, Excluded: []api.DatasetExcluded{}, Counts: map[string]int{}}
	var prev *datasetRef
	for _, r := range s.datasets(ctx, true) {
		if r.man.Name == req.Name && (prev == nil || r.man.Version > prev.man.Version) {
			prev = r
		}
	}
	if sel.consents, err = s.consentsBy(ctx, s.self); err != nil {
		return nil, err
	}
	sel.now = s.now()
	cands, err := s.candidates(ctx, req, sel.q, res)
	if err != nil {
		return nil, err
	}
	man := &dataset.Manifest{Format: dataset.FormatVersion, Name: req.Name, Version: 1, Profile: dataset.Profile,
		Options: dataset.Options{RetainPatientCharacteristics: req.RetainPatientCharacteristics, ShiftDates: req.ShiftDates}}
	if prev != nil {
		man.Version = prev.man.Version + 1
	}
	for _, info := range cands {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ds, reused, err := s.include(ctx, info, &sel, res)
		if err != nil {
			return nil, err
		}
		if ds == nil {
			continue
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
	return s.publish(ctx, man, prev, res)
}

// publish stores the manifest as the dataset's record (a new version of
// prev, if any) and carries prev's research grants over to it.
func (s *Service) publish(ctx context.Context, man *dataset.Manifest, prev *datasetRef, res *api.DatasetCreateResult) (*api.DatasetCreateResult, error) {
	sort.Slice(man.Studies, func(i, j int) bool { return man.Studies[i].StudyUID < man.Studies[j].StudyUID })
	body, err := man.Encode()
	if err != nil {
		return nil, err
	}
	areq := records.AddRequest{Name: man.Name, MediaType: dataset.MediaType, Kind: dataset.Kind, Class: dataset.Class,
		Files: []records.FileSource{{Path: dataset.FileName, Open: func() (io.Reader, error) { return bytes.NewReader(body), nil }}}}
	if prev != nil {
		areq.Prev = prev.info.ID
		res.Prev = prev.info.ID.String()
	}
	ar, err := s.rec.Add(ctx, areq)
	if err != nil {
		return nil, err
	}
	res.ID, res.Version = ar.ID.String(), ar.Version
	if prev != nil {
		if err := s.carryGrants(ctx, prev, ar.ID, man, res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// selection is what a create keeps: the query, this clinic's consents
// (by patient pseudonym) evaluated at now, and the de-identification
// options. explicit is set when the user named the records, so every one
// left out is reported.
type selection struct {
	q        dataset.Query
	consents map[string][]*dataset.Consent
	now      time.Time
	opts     dicom.DeidOptions
	explicit bool
}

// include opens a candidate and de-identifies the series sel keeps, or
// records in res why it is left out (nil study).
func (s *Service) include(ctx context.Context, info ledger.RecordInfo, sel *selection, res *api.DatasetCreateResult) (*dataset.Study, bool, error) {
	o, err := s.img.Open(ctx, info.ID, int(info.Version), "")
	if err != nil {
		// Invalid: a record of another kind, not a DICOM study.
		if !fault.Is(err, fault.Invalid) {
			return nil, false, err
		}
		if sel.explicit {
			exclude(res, info.ID.String(), 0, dataset.ReasonNotStudy)
		}
		return nil, false, nil
	}
	// De-identified studies are never sources of a dataset.
	if o.Manifest.Name == imaging.DeidStudyName || strings.HasPrefix(o.Study.PatientID, "ANON-") {
		if sel.explicit {
			exclude(res, info.ID.String(), len(o.Study.Series), dataset.ReasonNotStudy)
		}
		return nil, false, nil
	}
	var research []*dataset.Consent
	for _, c := range sel.consents[string(dataset.ConsentPseudonym(s.ckey, o.Study.PatientID))] {
		if c.Purpose == ledger.PurposeResearch {
			research = append(research, c)
		}
	}
	keep, left, reason := selectSeries(o.Study.Series, sel.q, research, sel.now)
	if len(keep) == 0 {
		exclude(res, info.ID.String(), left, reason)
		return nil, false, nil
	}
	if left > 0 {
		exclude(res, info.ID.String(), left, reason)
	}
	ds, reused, err := s.deid(ctx, o, keep, sel.opts)
	if errors.Is(err, imaging.ErrAllExcluded) {
		exclude(res, info.ID.String(), len(keep), dataset.ReasonNotDeidable)
		return nil, false, nil
	}
	return ds, reused, err
}

// selectSeries keeps (by UID) the series that match q and that one of
// the patient's research consents, live at now, covers. left counts the
// others; reason is why they are left out: a consent's verdict
// (dataset.SeriesVerdict) before a query mismatch, the first of each.
func selectSeries(series []*dicom.Series, q dataset.Query, research []*dataset.Consent, now time.Time) (keep map[string]bool, left int, reason string) {
	live := func(c *dataset.Consent) bool { return c.Live(now, 0) }
	keep = map[string]bool{}
	for _, se := range series {
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
	return keep, left, reason
}

// carryGrants grants the new version to the live research grantees of the
// previous one and revokes their grants of studies the new one dropped
// (a consent revoked since, for instance).
func (s *Service) carryGrants(ctx context.Context, prev *datasetRef, id cid.Cid, man *dataset.Manifest, res *api.DatasetCreateResult) error {
	now := s.now()
	grantees := map[peer.ID]time.Time{}
	for _, g := range s.led.Grants(prev.info.ID) {
		if g.Purpose == ledger.PurposeResearch && g.LiveAt(now) && g.Grantee != s.self {
			grantees[g.Grantee] = g.Expires
		}
	}
	if len(grantees) == 0 {
		return nil
	}
	info, ok := s.led.Record(id)
	if !ok {
		return fmt.Errorf("dataset %s: not on the ledger after add", id)
	}
	ref := &datasetRef{info: info, man: man}
	kept := map[string]bool{}
	for _, st := range man.Studies {
		kept[string(st.Record)] = true
	}
	ps := make([]peer.ID, 0, len(grantees))
	for p := range grantees {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	for _, p := range ps {
		for _, st := range prev.man.Studies {
			if kept[string(st.Record)] {
				continue
			}
			sid, _ := st.RecordID()
			n, err := s.rec.Revoke(ctx, sid, p)
			if err != nil {
				return err
			}
			res.Revoked += n
		}
		if _, err := s.grantRef(ctx, ref, p, grantees[p]); err != nil {
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

// deid de-identifies the kept series of a source study (the imaging
// service's de-identification: two passes, streamed) into a new study
// record, or reuses an earlier identical output.
func (s *Service) deid(ctx context.Context, src *imaging.Opened, keep map[string]bool, opts dicom.DeidOptions) (*dataset.Study, bool, error) {
	ck := deidCacheKey(src.Info.ID, keep, opts)
	if raw, err := s.local.Get(ctx, ck); err == nil {
		var st dataset.Study
		if dataset.Unmarshal(raw, &st) == nil {
			if sid, err := st.RecordID(); err == nil {
				if ri, ok := s.led.Record(sid); ok && ri.Owner == s.self {
					return &st, true, nil
				}
			}
		}
	}
	dd, err := s.img.Deidentify(ctx, src, opts, func(se *dicom.Series) bool { return keep[se.UID] })
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
		if err := s.local.Put(ctx, ck, raw); err != nil {
			s.log.Warn("dataset: remember de-identified study", "record", dd.ID, "err", err)
		}
	}
	return out, false, nil
}
