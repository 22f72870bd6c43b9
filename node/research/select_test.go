package research

import (
	"strings"
	"testing"
	"time"

	"github.com/medmesh/medmesh/sharing/dataset"
	"github.com/medmesh/medmesh/storage/dicom"
)

// TestSelectSeries: which series of a study a dataset keeps, how many it
// leaves out and the reason it reports: a consent's verdict wins over a
// query mismatch.
func TestSelectSeries(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	mrSpine := &dataset.Consent{Purpose: "research", Modality: "MR", BodyPart: "LSPINE"}
	any := &dataset.Consent{Purpose: "research"}
	revoked := &dataset.Consent{Purpose: "research", Revoked: true}
	expired := &dataset.Consent{Purpose: "research", Expires: now.Add(-time.Hour)}
	study := []*dicom.Series{{UID: "1", Modality: "MR", BodyPart: "LSPINE"}, {UID: "2", Modality: "CT", BodyPart: "LSPINE"}, {UID: "3", Modality: "MR", BodyPart: "KNEE"}}
	for _, c := range []struct {
		name     string
		query    string
		consents []*dataset.Consent
		keep     string
		left     int
		reason   string
	}{
		{"no consent", "", nil, "", 3, dataset.ReasonNoConsent},
		{"all covered", "", []*dataset.Consent{any}, "1,2,3", 0, ""},
		{"scoped consent", "", []*dataset.Consent{mrSpine}, "1", 2, dataset.ReasonOutOfScope},
		{"query only", "modality=MR", []*dataset.Consent{any}, "1,3", 1, dataset.ReasonNoMatch},
		{"verdict over mismatch", "bodypart=LSPINE", []*dataset.Consent{mrSpine}, "1", 2, dataset.ReasonOutOfScope},
		{"revoked", "", []*dataset.Consent{revoked}, "", 3, dataset.ReasonRevoked},
		{"expired", "modality=MR", []*dataset.Consent{expired}, "", 3, dataset.ReasonExpired},
		{"revoked and a live one", "", []*dataset.Consent{revoked, mrSpine}, "1", 2, dataset.ReasonRevoked},
	} {
		q, err := dataset.ParseQuery(c.query)
		if c.query == "" {
			q, err = dataset.Query{}, nil
		}
		if err != nil {
			t.Fatal(err)
		}
		keep, left, reason := selectSeries(study, q, c.consents, now)
		var kept []string
		for _, se := range study {
			if keep[se.UID] {
				kept = append(kept, se.UID)
			}
		}
		if strings.Join(kept, ",") != c.keep || left != c.left || reason != c.reason {
			t.Errorf("%s: kept %v, left %d (%q); want %s, %d (%q)", c.name, kept, left, reason, c.keep, c.left, c.reason)
		}
	}
}
