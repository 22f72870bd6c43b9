package dicom

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	lib "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// MaxFileSize is the largest file ParseFile and Scan accept (8 GiB).
const MaxFileSize = 8 << 30

// MediaStorageDirectoryUID is the SOP class of a DICOMDIR.
const MediaStorageDirectoryUID = "1.2.840.10008.1.3.10"

// Instance is the header metadata of one DICOM Part 10 file. Pixel data is
// never held: it is length-checked and skipped.
type Instance struct {
	Path           string
	Size           int64
	TransferSyntax string

	SOPClassUID       string
	SOPInstanceUID    string
	StudyInstanceUID  string
	SeriesInstanceUID string

	PatientID        string
	PatientName      string
	PatientBirthDate string // YYYYMMDD as stored
	PatientSex       string

	StudyDate        string // YYYYMMDD as stored
	StudyTime        string
	StudyDescription string
	AccessionNumber  string
	// ReferringPhysician is (0008,0090), StudyID (0020,0010).
	ReferringPhysician string
	StudyID            string

	Modality          string
	BodyPartExamined  string
	SeriesNumber      int
	SeriesDescription string
	InstanceNumber    int

	// Image pixel attributes (0 when absent): Rows (0028,0010), Columns
	// (0028,0011), Bits Allocated (0028,0100), Number of Frames
	// (0028,0008).
	Rows, Columns, BitsAllocated, NumberOfFrames int

	// BurnedInAnnotation is the value of (0028,0301), "YES"/"NO"/"".
	BurnedInAnnotation string

	// Directory is true for a DICOMDIR (Media Storage Directory Storage).
	Directory bool

	// Warnings lists tolerated deviations (e.g. the strict library reader
	// failed where the bounded reader, like dcmtk, accepts the file).
	Warnings []string

	meta  []*element
	elems []*element
	ts    tsInfo
}

// ParseFile parses the header of the DICOM Part 10 file at path. Pixel data
// is checked and skipped, never loaded. Errors are *ParseError values that
// wrap one of the Err* reasons and carry the path.
func ParseFile(path string) (*Instance, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &ParseError{Path: path, Offset: -1, Reason: ErrMalformed, Detail: err.Error()}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, &ParseError{Path: path, Offset: -1, Reason: ErrMalformed, Detail: err.Error()}
	}
	if !st.Mode().IsRegular() {
		return nil, &ParseError{Path: path, Offset: -1, Reason: ErrNotDICOM, Detail: "not a regular file"}
	}
	in, err := ParseReader(f, st.Size())
	if err != nil {
		return nil, withPath(err, path)
	}
	in.Path = path
	return in, nil
}

// ParseReader parses the header of a DICOM Part 10 stream of size bytes.
//
// Two passes are made: a bounded pre-scan that walks every element (all
// nesting levels, pixel data fragments included) and checks each declared
// length against the bytes that exist before reading it; then, only if that
// succeeds, github.com/suyashkumar/dicom parses the header (pixel data
// skipped) under recover. If the library rejects what the pre-scan accepted
// (it is stricter than dcmtk, e.g. about character sets), the pre-scan
// values are used and a warning is recorded.
func ParseReader(r io.ReaderAt, size int64) (in *Instance, err error) {
	defer func() {
		if p := recover(); p != nil {
			in, err = nil, perr(ErrMalformed, -1, "internal error: %v", p)
		}
	}()
	if size < 0 || size > MaxFileSize {
		return nil, perr(ErrTooLarge, -1, "size %d outside 0..%d", size, int64(MaxFileSize))
	}
	f, err := readPart10(io.NewSectionReader(r, 0, size), size, nil, nil)
	if err != nil {
		return nil, err
	}
	in = &Instance{Size: size, TransferSyntax: f.TS.UID, meta: f.Meta, elems: f.Data, ts: f.TS}
	in.fill(f)
	if in.Directory {
		return in, nil
	}
	// The library reads the header only: the pixel data (checked by the
	// walker) and what follows it are cut off, so that it neither reads
	// nor allocates them.
	end := size
	if !f.TS.Deflate {
		for _, e := range f.Data {
			if e.Pixel {
				end = e.Off
				break
			}
		}
	}
	if lerr := in.fillFromLibrary(r, end); lerr != nil {
		in.Warnings = append(in.Warnings, "suyashkumar/dicom: "+lerr.Error())
	}
	if in.SOPClassUID == "" || in.SOPInstanceUID == "" {
		return nil, perr(ErrMissingUID, -1, "no SOP Class UID / SOP Instance UID in dataset or File Meta Information")
	}
	return in, nil
}

func (in *Instance) fill(f *file) {
	s := func(t uint32) string { return decodeText(find(f.Data, t)) }
	in.SOPClassUID = s(0x00080016)
	in.SOPInstanceUID = s(0x00080018)
	if in.SOPClassUID == "" {
		in.SOPClassUID = find(f.Meta, 0x00020002).str()
	}
	if in.SOPInstanceUID == "" {
		in.SOPInstanceUID = find(f.Meta, 0x00020003).str()
	}
	in.Directory = find(f.Meta, 0x00020002).str() == MediaStorageDirectoryUID
	in.StudyInstanceUID = s(0x0020000D)
	in.SeriesInstanceUID = s(0x0020000E)
	in.PatientID = s(0x00100020)
	in.PatientName = s(0x00100010)
	in.PatientBirthDate = s(0x00100030)
	in.PatientSex = s(0x00100040)
	in.StudyDate = s(0x00080020)
	in.StudyTime = s(0x00080030)
	in.StudyDescription = s(0x00081030)
	in.AccessionNumber = s(0x00080050)
	in.ReferringPhysician = s(0x00080090)
	in.StudyID = s(0x00200010)
	in.Modality = s(0x00080060)
	in.BodyPartExamined = s(0x00180015)
	in.SeriesNumber = atoi(s(0x00200011))
	in.SeriesDescription = s(0x0008103E)
	in.InstanceNumber = atoi(s(0x00200013))
	in.BurnedInAnnotation = strings.ToUpper(s(0x00280301))
	us := func(t uint32) int {
		if e := find(f.Data, t); e != nil && len(e.Value) >= 2 && (e.VR == "US" || e.VR == "") {
			return int(f.TS.BO.Uint16(e.Value))
		}
		return 0
	}
	in.Rows, in.Columns, in.BitsAllocated = us(0x00280010), us(0x00280011), us(0x00280100)
	in.NumberOfFrames = atoi(s(0x00280008))
}

// fillFromLibrary parses the header with suyashkumar/dicom and, on success,
// prefers its (character-set decoded) values.
func (in *Instance) fillFromLibrary(r io.ReaderAt, size int64) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	ds, err := lib.Parse(io.NewSectionReader(r, 0, size), size, nil,
		lib.SkipPixelData(), lib.AllowUnknownSpecificCharacterSet(), lib.AllowMissingMetaElementGroupLength())
	if err != nil {
		return err
	}
	get := func(t tag.Tag) string {
		e, err := ds.FindElementByTag(t)
		if err != nil || e.Value == nil || e.Value.ValueType() != lib.Strings {
			return ""
		}
		ss, _ := e.Value.GetValue().([]string)
		return strings.TrimRight(strings.Join(ss, `\`), " \x00")
	}
	set := func(dst *string, t tag.Tag) {
		if v := get(t); v != "" {
			*dst = v
		}
	}
	set(&in.PatientName, tag.PatientName)
	set(&in.PatientID, tag.PatientID)
	set(&in.ReferringPhysician, tag.ReferringPhysicianName)
	set(&in.StudyDescription, tag.StudyDescription)
	set(&in.SeriesDescription, tag.SeriesDescription)
	set(&in.BodyPartExamined, tag.BodyPartExamined)
	return nil
}

func atoi(s string) int {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\\'); i >= 0 {
		s = s[:i]
	}
	n, err := strconv.Atoi(strings.TrimPrefix(s, "+"))
	if err != nil {
		return 0
	}
	return n
}

// decodeText returns a text value with padding trimmed; bytes that are not
// valid UTF-8 are read as ISO 8859-1 (the common legacy single-byte set).
func decodeText(e *element) string {
	if e == nil {
		return ""
	}
	s := e.str()
	if isUTF8(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteRune(rune(s[i]))
	}
	return b.String()
}

func isUTF8(s string) bool {
	for _, r := range s {
		if r == '\uFFFD' {
			return false
		}
	}
	return true
}

// IsReject reports whether err is a rejection of the input (a *ParseError)
// rather than an I/O failure of the caller's environment.
func IsReject(err error) bool {
	var pe *ParseError
	return errors.As(err, &pe)
}
