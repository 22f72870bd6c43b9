package research

import (
	"context"
	"encoding/hex"
	"sort"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/dataset"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// pseudonym is the keyed pseudonym of one of this clinic's patients: the
// only form in which a patient ID reaches the ledger.
func (s *Service) pseudonym(patientID string) ([]byte, error) {
	if patientID == "" || len(patientID) > 64 {
		return nil, fault.Invalidf("", "a patient ID is 1 to 64 characters")
	}
	return dataset.ConsentPseudonym(s.ckey, patientID), nil
}

func checkPurpose(p string) error {
	if !dataset.ValidPurpose(p) {
		return fault.Invalidf("use research, treatment, operations or emergency", "unknown purpose %q", p)
	}
	return nil
}

// parseExpiry turns a consent's lifetime (a duration) into its expiry;
// zero for none.
func parseExpiry(now time.Time, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	dur, err := time.ParseDuration(s)
	if err != nil || dur <= 0 {
		return time.Time{}, fault.Invalidf("use a duration like 72h", "bad expiry %q", s)
	}
	return now.Add(dur), nil
}

// AddConsent writes a consent entry for one of this clinic's patients.
func (s *Service) AddConsent(ctx context.Context, req api.ConsentRequest) (*api.ConsentInfo, error) {
	if req.Purpose == "" {
		req.Purpose = ledger.PurposeResearch
	}
	if err := checkPurpose(req.Purpose); err != nil {
		return nil, err
	}
	pat, err := s.pseudonym(req.Patient)
	if err != nil {
		return nil, err
	}
	now := s.now()
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
	e, err := s.led.Append(ctx, dataset.TypeConsent, pl)
	if err != nil {
		return nil, err
	}
	c, err := dataset.DecodeConsent(e)
	if err != nil {
		return nil, err
	}
	return consentInfo(c, now), nil
}

// RevokeConsent revokes this clinic's consents of (patient, purpose).
func (s *Service) RevokeConsent(ctx context.Context, req api.ConsentRequest) (*api.ConsentRevokeResult, error) {
	if req.Purpose == "" {
		req.Purpose = ledger.PurposeResearch
	}
	if err := checkPurpose(req.Purpose); err != nil {
		return nil, err
	}
	pat, err := s.pseudonym(req.Patient)
	if err != nil {
		return nil, err
	}
	e, err := s.led.Append(ctx, dataset.TypeConsentRevoke, &dataset.RevokePayload{Patient: pat, Purpose: req.Purpose})
	if err != nil {
		return nil, err
	}
	return &api.ConsentRevokeResult{Entry: e.CID().String(), Patient: hex.EncodeToString(pat), Purpose: req.Purpose}, nil
}

func consentInfo(c *dataset.Consent, now time.Time) *api.ConsentInfo {
	return &api.ConsentInfo{Entry: c.Entry.String(), Author: c.Author.String(), Patient: hex.EncodeToString(c.Patient), Purpose: c.Purpose,
		Modality: c.Modality, BodyPart: c.BodyPart, Expires: api.Nullable(c.Expires), Revoked: c.Revoked,
		Expired: !c.Revoked && !c.Live(now, ledger.ClockSkew), Time: time.UnixMilli(int64(c.Clock.Wall)).UTC()}
}

// consentsBy returns the consents written by author, evaluated (revoked or
// not), grouped by patient pseudonym.
func (s *Service) consentsBy(ctx context.Context, author peer.ID) (map[string][]*dataset.Consent, error) {
	ces, err := s.led.Log(ctx, dataset.TypeConsent, 0)
	if err != nil {
		return nil, err
	}
	res, err := s.led.Log(ctx, dataset.TypeConsentRevoke, 0)
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
	if err := dataset.Evaluate(ctx, &dataset.LedgerAncestry{L: s.led}, cs, rs); err != nil {
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
func (s *Service) Consents(ctx context.Context, patientID, purpose string) ([]api.ConsentInfo, error) {
	by, err := s.consentsBy(ctx, s.self)
	if err != nil {
		return nil, err
	}
	var only []byte
	if patientID != "" {
		if only, err = s.pseudonym(patientID); err != nil {
			return nil, err
		}
	}
	now := s.now()
	out := []api.ConsentInfo{}
	for pat, cs := range by {
		if only != nil && pat != string(only) {
			continue
		}
		for _, c := range cs {
			if purpose == "" || c.Purpose == purpose {
				out = append(out, *consentInfo(c, now))
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
