package imaging

import (
	"context"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/storage/dicom"
)

// Query searches the local study index (`medmesh dicom query`). Dates may
// be written YYYYMMDD or YYYY-MM-DD; a modality matches whatever its case,
// and any value is a query (archives hold modalities that are not defined
// terms).
func (s *Service) Query(ctx context.Context, f dicom.Filter) ([]api.DicomStudyHit, error) {
	var err error
	if f.From, err = NormDate(f.From); err != nil {
		return nil, err
	}
	if f.To, err = NormDate(f.To); err != nil {
		return nil, err
	}
	hits, err := s.idx.Query(ctx, f)
	if err != nil {
		return nil, err
	}
	out := []api.DicomStudyHit{}
	for _, h := range hits {
		mine := false
		if id, err := cid.Decode(h.RecordID); err == nil {
			mine = s.mine(id)
		}
		mods := h.Modalities
		if mods == nil {
			mods = []string{}
		}
		out = append(out, api.DicomStudyHit{ID: h.RecordID, StudyUID: h.StudyUID, PatientID: h.PatientID, PatientName: h.PatientName,
			Modality: strings.Join(mods, `\`), Modalities: mods, StudyDate: h.StudyDate, Description: h.Description,
			Instances: h.Instances, Mine: mine})
	}
	return out, nil
}

// Find returns the index's entries matching f as they are (study-level
// attributes, one per indexed record), for protocols that render them
// themselves (QIDO-RS, C-FIND). Dates must be YYYYMMDD.
func (s *Service) Find(ctx context.Context, f dicom.Filter) ([]dicom.Hit, error) {
	for _, d := range []string{f.From, f.To} {
		if _, err := time.Parse("20060102", d); d != "" && err != nil {
			return nil, fault.Invalidf("write dates as YYYYMMDD", "bad date %q: %v", d, err)
		}
	}
	return s.idx.Query(ctx, f)
}

// NormDate accepts a date as YYYYMMDD or YYYY-MM-DD and returns it as
// YYYYMMDD ("" stays "").
func NormDate(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	n := strings.ReplaceAll(s, "-", "")
	if len(n) != 8 || strings.Trim(n, "0123456789") != "" {
		return "", fault.Invalidf("write dates as YYYYMMDD or YYYY-MM-DD", "bad date %q", s)
	}
	return n, nil
}
