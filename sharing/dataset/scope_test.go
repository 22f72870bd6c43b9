package dataset

import (
	"bytes"
	"testing"
)

// TestConsentModalityIsADefinedTerm: a consent's scope is on the ledger in
// clear, so its modality is one of DICOM's defined terms (in upper case),
// never free text; a query's modality is matched case-insensitively and an
// unknown one is an error, not an empty selection.
func TestConsentModalityIsADefinedTerm(t *testing.T) {
	pat := bytes.Repeat([]byte{1}, PseudonymSize)
	for m, ok := range map[string]bool{"": true, "MR": true, "CT": true, "SMITHJOHN": false, "mr": false, "MRI": false} {
		err := (&ConsentPayload{Patient: pat, Purpose: "research", Modality: m}).Check()
		if (err == nil) != ok {
			t.Errorf("modality %q: %v", m, err)
		}
	}
	if q, err := ParseQuery("modality=mr bodypart=lspine"); err != nil || q.Modality != "MR" || q.BodyPart != "LSPINE" {
		t.Errorf("query: %+v %v", q, err)
	}
	if _, err := ParseQuery("modality=MRI"); err == nil {
		t.Error("unknown modality in a query accepted")
	}
}
