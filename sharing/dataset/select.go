package dataset

import (
	"fmt"
	"strings"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/storage/dicom"
)

func castCID(b []byte) (cid.Cid, error) { return cid.Cast(b) }

// RecordID returns the study's record ID.
func (s *Study) RecordID() (cid.Cid, error) { return cid.Cast(s.Record) }

// Query selects series by modality and body part; empty fields match all.
type Query struct {
	Modality string
	BodyPart string
}

// ParseQuery parses "modality=MR bodypart=LSPINE" (space or comma
// separated key=value pairs; keys modality and bodypart; values are
// upper-cased).
func ParseQuery(s string) (Query, error) {
	var q Query
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' })
	if len(f) == 0 {
		return q, fmt.Errorf("empty query: write e.g. 'modality=MR bodypart=LSPINE'")
	}
	for _, kv := range f {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			return q, fmt.Errorf("query term %q is not key=value", kv)
		}
		v = strings.ToUpper(v)
		if !validScope(v) {
			return q, fmt.Errorf("query value %q: up to 16 of A-Z, 0-9, _", v)
		}
		switch strings.ToLower(k) {
		case "modality":
			m, err := dicom.NormalizeModality(v)
			if err != nil {
				return q, err
			}
			q.Modality = m
		case "bodypart", "body_part", "body-part":
			q.BodyPart = v
		default:
			return q, fmt.Errorf("unknown query key %q: use modality or bodypart", k)
		}
	}
	return q, nil
}

// Matches reports whether a series of that modality and body part matches.
func (q Query) Matches(modality, bodyPart string) bool {
	return (q.Modality == "" || q.Modality == modality) && (q.BodyPart == "" || q.BodyPart == bodyPart)
}

// Exclusion reasons.
const (
	ReasonNoConsent   = "no-consent"
	ReasonRevoked     = "consent-revoked"
	ReasonExpired     = "consent-expired"
	ReasonOutOfScope  = "consent-out-of-scope"
	ReasonNoMatch     = "no-matching-series"
	ReasonNotDeidable = "all-instances-excluded-by-de-identification"
	ReasonNotOwned    = "not-owned"
	ReasonNotStudy    = "not-a-source-study"
)

// SeriesVerdict decides a series against the patient's research consents
// (all of them, for this author and patient: live, revoked or expired).
// It returns "" when some live consent covers the series, else the most
// specific reason it is left out.
func SeriesVerdict(cs []*Consent, modality, bodyPart string, live func(*Consent) bool) string {
	if len(cs) == 0 {
		return ReasonNoConsent
	}
	reason := ReasonOutOfScope
	for _, c := range cs {
		if !c.Covers(modality, bodyPart) {
			continue
		}
		if live(c) {
			return ""
		}
		if c.Revoked {
			reason = ReasonRevoked
		} else if reason != ReasonRevoked {
			reason = ReasonExpired
		}
	}
	return reason
}
