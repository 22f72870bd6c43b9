package dicom

import (
	"errors"
	"fmt"
)

// Sentinel reasons for rejecting a file. A *ParseError wraps exactly one of
// them, so callers can test with errors.Is(err, ErrTruncated) etc.
var (
	// ErrNotDICOM: no "DICM" magic at offset 128 or no File Meta Information
	// group (the file is not a DICOM Part 10 file).
	ErrNotDICOM = errors.New("not a DICOM Part 10 file")
	// ErrTruncated: the file ends inside an element header, a value or an
	// undefined-length sequence/item.
	ErrTruncated = errors.New("truncated")
	// ErrDeclaredLength: an element declares a value length beyond the bytes
	// that remain in the file (or its enclosing item).
	ErrDeclaredLength = errors.New("declared length beyond end of data")
	// ErrMissingUID: a required UID (SOP Class/Instance, Study, Series) is
	// absent or empty.
	ErrMissingUID = errors.New("missing required UID")
	// ErrBadUID: a UID that medmesh cannot store and read back (see
	// CheckUID): empty, too long, several values, or characters that
	// cannot be part of a file name or URL path.
	ErrBadUID = errors.New("unusable UID")
	// ErrMalformed: structurally invalid data (bad VR, bad delimiters,
	// nesting too deep, unparsable transfer syntax).
	ErrMalformed = errors.New("malformed")
	// ErrUnsupported: a transfer syntax whose dataset encoding cannot be read.
	ErrUnsupported = errors.New("unsupported transfer syntax")
	// ErrTooLarge: a non-pixel value or the whole file exceeds the safety caps.
	ErrTooLarge = errors.New("too large")
	// ErrDICOMDIR: the file is a DICOMDIR (Media Storage Directory), an
	// index, not an instance. Scan reports it as skipped.
	ErrDICOMDIR = errors.New("DICOMDIR (directory index, not an instance)")
)

// ParseError is the error returned for a file that cannot be accepted.
type ParseError struct {
	Path   string // file path ("" for readers)
	Offset int64  // byte offset in the (decoded) stream where the problem was found, -1 if unknown
	Reason error  // one of the Err* sentinels
	Detail string // human-readable detail
}

func (e *ParseError) Error() string {
	p := e.Path
	if p == "" {
		p = "<reader>"
	}
	if e.Offset >= 0 {
		return fmt.Sprintf("dicom: %s: %v at offset %d: %s", p, e.Reason, e.Offset, e.Detail)
	}
	return fmt.Sprintf("dicom: %s: %v: %s", p, e.Reason, e.Detail)
}

// Unwrap returns the sentinel reason.
func (e *ParseError) Unwrap() error { return e.Reason }

func perr(reason error, off int64, format string, args ...any) *ParseError {
	return &ParseError{Offset: off, Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// withPath sets the path on a *ParseError (or wraps any other error).
func withPath(err error, path string) error {
	if err == nil {
		return nil
	}
	var pe *ParseError
	if errors.As(err, &pe) {
		cp := *pe
		cp.Path = path
		return &cp
	}
	return &ParseError{Path: path, Offset: -1, Reason: ErrMalformed, Detail: err.Error()}
}
