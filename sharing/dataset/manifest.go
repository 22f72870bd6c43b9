package dataset

import (
	"errors"
	"fmt"
	"strings"
)

// Record kind, ledger class and file of a dataset manifest record.
const (
	Kind      = "dataset"
	Class     = "dataset"
	FileName  = "dataset.cbor"
	MediaType = "application/cbor"
	// Profile names the de-identification applied to every study.
	Profile = "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile"
	// FormatVersion is the manifest encoding version.
	FormatVersion = 1
)

// Limits of a decoded manifest.
const (
	MaxStudies   = 20000
	MaxSeries    = 1000 // per study
	MaxNameLen   = 128
	maxUIDLen    = 128
	maxPseudoLen = 64
)

// Options are the de-identification options applied to the dataset.
type Options struct {
	RetainPatientCharacteristics bool `cbor:"1,keyasint,omitempty" json:"retain_patient_characteristics,omitempty"`
	ShiftDates                   bool `cbor:"2,keyasint,omitempty" json:"shift_dates,omitempty"`
}

// Series is one series of a study in the dataset (remapped UID).
type Series struct {
	UID       string `cbor:"1,keyasint" json:"uid"`
	Modality  string `cbor:"2,keyasint,omitempty" json:"modality,omitempty"`
	BodyPart  string `cbor:"3,keyasint,omitempty" json:"body_part,omitempty"`
	Instances uint32 `cbor:"4,keyasint" json:"instances"`
	Size      uint64 `cbor:"5,keyasint" json:"size"`
}

// Study is one de-identified study record of the dataset.
type Study struct {
	Record    []byte   `cbor:"1,keyasint" json:"-"`       // CID bytes of the de-identified study record
	Patient   string   `cbor:"2,keyasint" json:"patient"` // project-key pseudonym (ANON-...)
	StudyUID  string   `cbor:"3,keyasint" json:"study_uid"`
	Series    []Series `cbor:"4,keyasint" json:"series"`
	Instances uint32   `cbor:"5,keyasint" json:"instances"`
	Size      uint64   `cbor:"6,keyasint" json:"size"`
}

// Manifest is a dataset's description, stored as the dataset record's file.
type Manifest struct {
	Format  uint32  `cbor:"1,keyasint" json:"format"`
	Name    string  `cbor:"2,keyasint" json:"name"`
	Version uint32  `cbor:"3,keyasint" json:"version"`
	Profile string  `cbor:"4,keyasint" json:"profile"`
	Options Options `cbor:"5,keyasint" json:"options"`
	Studies []Study `cbor:"6,keyasint" json:"studies"`
}

// Encode checks m and returns its canonical CBOR.
func (m *Manifest) Encode() ([]byte, error) {
	if err := m.Check(); err != nil {
		return nil, err
	}
	return Marshal(m)
}

// Decode parses a manifest strictly (canonical CBOR only) and checks it.
func Decode(b []byte) (*Manifest, error) {
	if len(b) > 64<<20 {
		return nil, errors.New("dataset: manifest too large")
	}
	var m Manifest
	if err := Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if err := m.Check(); err != nil {
		return nil, err
	}
	return &m, nil
}

// ValidName reports whether s is a usable dataset name: 1 to 128 printable
// ASCII characters without slashes or commas.
func ValidName(s string) bool {
	if s == "" || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e || s[i] == '/' || s[i] == ',' || s[i] == '\\' {
			return false
		}
	}
	return true
}

// ValidUID: digits and dots, not starting with a dot, at most 128 bytes
// (UIDs become file names).
func ValidUID(s string) bool {
	if s == "" || len(s) > maxUIDLen || s[0] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}

func validPseudonym(s string) bool {
	if !strings.HasPrefix(s, "ANON-") || len(s) > maxPseudoLen {
		return false
	}
	for i := 5; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return len(s) > 5
}

// Check validates the manifest's fields and limits.
func (m *Manifest) Check() error {
	if m.Format != FormatVersion {
		return fmt.Errorf("dataset: unknown manifest format %d", m.Format)
	}
	if !ValidName(m.Name) {
		return fmt.Errorf("dataset: invalid name %q", m.Name)
	}
	if m.Version == 0 {
		return errors.New("dataset: version must be at least 1")
	}
	if m.Profile != Profile {
		return fmt.Errorf("dataset: unknown de-identification profile %q", m.Profile)
	}
	if len(m.Studies) > MaxStudies {
		return fmt.Errorf("dataset: %d studies, limit %d", len(m.Studies), MaxStudies)
	}
	seen := map[string]bool{}
	for i := range m.Studies {
		s := &m.Studies[i]
		if len(s.Record) == 0 || len(s.Record) > 128 {
			return fmt.Errorf("dataset: study %d: bad record ID", i)
		}
		if _, err := castCID(s.Record); err != nil {
			return fmt.Errorf("dataset: study %d: %w", i, err)
		}
		if !validPseudonym(s.Patient) {
			return fmt.Errorf("dataset: study %d: patient is not a pseudonym", i)
		}
		if !ValidUID(s.StudyUID) {
			return fmt.Errorf("dataset: study %d: bad study UID", i)
		}
		if seen[s.StudyUID] {
			return fmt.Errorf("dataset: study UID listed twice (study %d)", i)
		}
		seen[s.StudyUID] = true
		if len(s.Series) == 0 || len(s.Series) > MaxSeries {
			return fmt.Errorf("dataset: study %d: %d series", i, len(s.Series))
		}
		var n uint64
		for j := range s.Series {
			se := &s.Series[j]
			if !ValidUID(se.UID) || !validScope(se.Modality) || !validScope(se.BodyPart) {
				return fmt.Errorf("dataset: study %d series %d: bad UID, modality or body part", i, j)
			}
			n += uint64(se.Instances)
		}
		if n != uint64(s.Instances) {
			return fmt.Errorf("dataset: study %d: series list %d instances, study says %d", i, n, s.Instances)
		}
	}
	return nil
}
