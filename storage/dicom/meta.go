package dicom

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/medmesh/medmesh/internal/strictcbor"
)

// studyMetaVersion is the version of the encoded study index.
const studyMetaVersion = 1

// Limits enforced when decoding study metadata.
const (
	maxMetaBytes     = 64 << 20
	maxMetaSeries    = 10000
	maxMetaInstances = 1 << 20
	maxMetaString    = 1024
)

// ErrBadStudyMeta is returned by DecodeStudyMeta for any invalid input.
var ErrBadStudyMeta = errors.New("dicom: invalid study metadata")

type wireStudy struct {
	Version          int          `cbor:"1,keyasint"`
	UID              string       `cbor:"2,keyasint"`
	PatientID        string       `cbor:"3,keyasint"`
	PatientName      string       `cbor:"4,keyasint"`
	PatientBirthDate string       `cbor:"5,keyasint"`
	PatientSex       string       `cbor:"6,keyasint"`
	StudyDate        string       `cbor:"7,keyasint"`
	StudyTime        string       `cbor:"8,keyasint"`
	Description      string       `cbor:"9,keyasint"`
	AccessionNumber  string       `cbor:"10,keyasint"`
	Series           []wireSeries `cbor:"11,keyasint"`
	// Added after the first version, omitted when empty so that studies
	// stored before still decode to their exact bytes.
	ReferringPhysician string `cbor:"12,keyasint,omitempty"`
	StudyID            string `cbor:"13,keyasint,omitempty"`
}

type wireSeries struct {
	UID         string         `cbor:"1,keyasint"`
	Modality    string         `cbor:"2,keyasint"`
	BodyPart    string         `cbor:"3,keyasint"`
	Number      int            `cbor:"4,keyasint"`
	Description string         `cbor:"5,keyasint"`
	Instances   []wireInstance `cbor:"6,keyasint"`
}

type wireInstance struct {
	SOPInstanceUID string `cbor:"1,keyasint"`
	SOPClassUID    string `cbor:"2,keyasint"`
	TransferSyntax string `cbor:"3,keyasint"`
	Number         int    `cbor:"4,keyasint"`
	Size           int64  `cbor:"5,keyasint"`
	FileIndex      int    `cbor:"6,keyasint"`
	// Added after the first version (omitted when 0).
	Rows          int `cbor:"7,keyasint,omitempty"`
	Columns       int `cbor:"8,keyasint,omitempty"`
	BitsAllocated int `cbor:"9,keyasint,omitempty"`
	Frames        int `cbor:"10,keyasint,omitempty"`
}

var (
	metaEnc = strictcbor.Enc
	metaDec = strictcbor.Dec(strictcbor.Limits{Nesting: 8, Array: maxMetaInstances, Map: 64})
)

// EncodeStudyMeta encodes a study's index (patient/study attributes, series,
// instances with their file index in the record) as canonical CBOR (RFC 8949
// core deterministic encoding), for the record manifest's encrypted Meta
// field. Local paths are not encoded. The same study always encodes to the
// same bytes.
func EncodeStudyMeta(s *Study) ([]byte, error) {
	if s == nil {
		return nil, errors.New("dicom: nil study")
	}
	w := wireStudy{Version: studyMetaVersion, UID: s.UID, PatientID: s.PatientID, PatientName: s.PatientName,
		PatientBirthDate: s.PatientBirthDate, PatientSex: s.PatientSex, StudyDate: s.StudyDate, StudyTime: s.StudyTime,
		Description: s.Description, AccessionNumber: s.AccessionNumber, ReferringPhysician: s.ReferringPhysician, StudyID: s.StudyID}
	for _, se := range s.Series {
		ws := wireSeries{UID: se.UID, Modality: se.Modality, BodyPart: se.BodyPart, Number: se.Number, Description: se.Description}
		for _, in := range se.Instances {
			ws.Instances = append(ws.Instances, wireInstance{SOPInstanceUID: in.SOPInstanceUID, SOPClassUID: in.SOPClassUID,
				TransferSyntax: in.TransferSyntax, Number: in.Number, Size: in.Size, FileIndex: in.FileIndex,
				Rows: in.Rows, Columns: in.Columns, BitsAllocated: in.BitsAllocated, Frames: in.Frames})
		}
		w.Series = append(w.Series, ws)
	}
	if err := validateWire(&w); err != nil {
		return nil, err
	}
	return metaEnc.Marshal(&w)
}

// DecodeStudyMeta decodes what EncodeStudyMeta produced. It is strict: the
// input must be exactly the canonical encoding of a valid study (known
// fields only, no duplicates, no trailing bytes, UIDs present and accepted
// by CheckUID, file indexes a permutation of 0..n-1, SOP Instance UIDs
// unique).
func DecodeStudyMeta(b []byte) (*Study, error) {
	if len(b) > maxMetaBytes {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadStudyMeta, len(b))
	}
	var w wireStudy
	if err := metaDec.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadStudyMeta, err)
	}
	if err := validateWire(&w); err != nil {
		return nil, err
	}
	again, err := metaEnc.Marshal(&w)
	if err != nil || !bytes.Equal(again, b) {
		return nil, fmt.Errorf("%w: not canonical", ErrBadStudyMeta)
	}
	s := &Study{UID: w.UID, PatientID: w.PatientID, PatientName: w.PatientName, PatientBirthDate: w.PatientBirthDate,
		PatientSex: w.PatientSex, StudyDate: w.StudyDate, StudyTime: w.StudyTime, Description: w.Description,
		AccessionNumber: w.AccessionNumber, ReferringPhysician: w.ReferringPhysician, StudyID: w.StudyID}
	for _, ws := range w.Series {
		se := &Series{UID: ws.UID, Modality: ws.Modality, BodyPart: ws.BodyPart, Number: ws.Number, Description: ws.Description}
		for _, wi := range ws.Instances {
			se.Instances = append(se.Instances, &InstanceRef{SOPInstanceUID: wi.SOPInstanceUID, SOPClassUID: wi.SOPClassUID,
				TransferSyntax: wi.TransferSyntax, Number: wi.Number, Size: wi.Size, FileIndex: wi.FileIndex,
				Rows: wi.Rows, Columns: wi.Columns, BitsAllocated: wi.BitsAllocated, Frames: wi.Frames})
		}
		s.Series = append(s.Series, se)
	}
	return s, nil
}

func validateWire(w *wireStudy) error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: %s", ErrBadStudyMeta, fmt.Sprintf(f, a...)) }
	if w.Version != studyMetaVersion {
		return bad("version %d", w.Version)
	}
	// The one UID rule (CheckUID) on both sides: what is encoded decodes,
	// and a UID read back can be a file name and a URL path.
	uid := func(what, u string) error {
		if _, err := CheckUID(u); err != nil {
			return bad("%s %q: %v", what, u, err)
		}
		return nil
	}
	if err := uid("study UID", w.UID); err != nil {
		return err
	}
	if len(w.Series) > maxMetaSeries {
		return bad("%d series", len(w.Series))
	}
	for _, s := range []string{w.UID, w.PatientID, w.PatientName, w.PatientBirthDate, w.PatientSex, w.StudyDate, w.StudyTime, w.Description, w.AccessionNumber, w.ReferringPhysician, w.StudyID} {
		if len(s) > maxMetaString {
			return bad("string of %d bytes", len(s))
		}
	}
	n := 0
	for _, s := range w.Series {
		n += len(s.Instances)
	}
	if n > maxMetaInstances {
		return bad("%d instances", n)
	}
	idx := make([]bool, n)
	sops := make(map[string]bool, n)
	series := map[string]bool{}
	for _, s := range w.Series {
		if err := uid("series UID", s.UID); err != nil {
			return err
		}
		if series[s.UID] {
			return bad("repeated series UID %q", s.UID)
		}
		series[s.UID] = true
		for _, str := range []string{s.UID, s.Modality, s.BodyPart, s.Description} {
			if len(str) > maxMetaString {
				return bad("string of %d bytes", len(str))
			}
		}
		for _, in := range s.Instances {
			if err := uid("SOP Instance UID", in.SOPInstanceUID); err != nil {
				return err
			}
			if sops[in.SOPInstanceUID] {
				return bad("repeated SOP Instance UID %q", in.SOPInstanceUID)
			}
			sops[in.SOPInstanceUID] = true
			if in.SOPClassUID != "" {
				if err := uid("SOP Class UID", in.SOPClassUID); err != nil {
					return err
				}
			}
			if in.TransferSyntax != "" {
				if err := uid("transfer syntax UID", in.TransferSyntax); err != nil {
					return err
				}
			}
			if in.FileIndex < 0 || in.FileIndex >= n || idx[in.FileIndex] {
				return bad("file index %d out of range or repeated", in.FileIndex)
			}
			idx[in.FileIndex] = true
			if in.Size < 0 {
				return bad("negative size")
			}
			if in.Rows < 0 || in.Rows > 0xFFFF || in.Columns < 0 || in.Columns > 0xFFFF || in.BitsAllocated < 0 || in.BitsAllocated > 64 || in.Frames < 0 {
				return bad("image attributes out of range")
			}
		}
	}
	return nil
}
