package ledger

import (
	"fmt"
	"strings"
)

// Record classes. A record's class is the one word of its description that
// record.announce carries in clear (everything else — name, media type,
// patient, content — is in the encrypted manifest), so it comes from this
// fixed set and never from free text: a class typed by a user could carry a
// patient's name to every member. The set is coarse on purpose; it says what
// kind of document a record is, not whose.
//
// FHIR is a format, not a class: a FHIR resource takes the class of what it
// holds (DiagnosticReport: report, Observation: lab, MedicationRequest:
// prescription, ServiceRequest: referral, a discharge Composition:
// discharge, Consent: consent), its media type (in the manifest) says FHIR.
const (
	ClassDocument     = "document"     // any clinical document without a more specific class (the default)
	ClassReport       = "report"       // a diagnostic or clinical report (radiology, pathology, ...)
	ClassImaging      = "imaging"      // a DICOM study (dicom import, deidentify)
	ClassLab          = "lab"          // laboratory results
	ClassPrescription = "prescription" // medication orders and prescriptions
	ClassReferral     = "referral"     // a referral letter or request
	ClassDischarge    = "discharge"    // a discharge summary
	ClassConsent      = "consent"      // a signed consent form (the document; consents themselves are consent entries)
	ClassDataset      = "dataset"      // a research dataset's manifest (dataset create)
	ClassOther        = "other"        // none of the above
)

// Classes lists the record classes, in the order the CLI shows them.
func Classes() []string {
	return []string{ClassDocument, ClassReport, ClassImaging, ClassLab, ClassPrescription,
		ClassReferral, ClassDischarge, ClassConsent, ClassDataset, ClassOther}
}

// CheckClass returns an error, listing the classes, unless c is one of them.
func CheckClass(c string) error {
	for _, k := range Classes() {
		if c == k {
			return nil
		}
	}
	return fmt.Errorf("unknown record class %q: choose one of %s", c, strings.Join(Classes(), ", "))
}
