package dimse

import (
	"errors"
	"fmt"
	"syscall"
)

// Status codes used by this package (PS3.7 Annex C, PS3.4 B.2.3, C.4).
const (
	StatusSuccess = 0x0000
	// Pending: more C-FIND matches or C-MOVE/C-GET sub-operations follow.
	StatusPending = 0xFF00
	// StatusPendingWarning: a C-FIND match, optional keys not supported.
	StatusPendingWarning = 0xFF01
	StatusCancel         = 0xFE00

	// Warnings.
	StatusSubOpsWarning     = 0xB000 // C-MOVE/C-GET: one or more sub-operations failed or warned
	StatusCoercion          = 0xB000 // C-STORE: coercion of data elements
	StatusElementsDiscarded = 0xB006 // C-STORE
	StatusDataSetMismatchW  = 0xB007 // C-STORE: data set does not match SOP class

	// Failures.
	StatusOutOfResources         = 0xA700 // refused: out of resources
	StatusOutOfResourcesMatches  = 0xA701 // C-MOVE/C-GET: unable to calculate number of matches
	StatusOutOfResourcesSubOps   = 0xA702 // C-MOVE/C-GET: unable to perform sub-operations
	StatusMoveDestinationUnknown = 0xA801
	StatusIdentifierMismatch     = 0xA900 // identifier / data set does not match SOP class
	StatusUnableToProcess        = 0xC000 // C-FIND/C-MOVE/C-GET: unable to process; C-STORE: cannot understand
	StatusProcessingFailure      = 0x0110
	StatusDuplicateSOPInstance   = 0x0111
	StatusSOPClassNotSupported   = 0x0122
	StatusNotAuthorized          = 0x0124
	StatusUnrecognizedOperation  = 0x0211
	StatusMistypedArgument       = 0x0212
	StatusDuplicateInvocation    = 0x0210
)

// Category is the class of a status code.
type Category int

const (
	Success Category = iota
	Pending
	Cancel
	Warning
	Failure
)

func (c Category) String() string {
	switch c {
	case Success:
		return "success"
	case Pending:
		return "pending"
	case Cancel:
		return "cancel"
	case Warning:
		return "warning"
	}
	return "failure"
}

// CategoryOf classifies a status code (PS3.7 C.1).
func CategoryOf(code uint16) Category {
	switch {
	case code == StatusSuccess:
		return Success
	case code == StatusPending || code == StatusPendingWarning:
		return Pending
	case code == StatusCancel:
		return Cancel
	case code == 0x0001 || code == 0x0107 || code == 0x0116 || code&0xF000 == 0xB000:
		return Warning
	}
	return Failure
}

// Status is a DIMSE status: a code and an optional error comment. As an
// error, it is what a handler returns to answer with that status; the
// client returns it for a failed or cancelled operation.
type Status struct {
	Code    uint16
	Comment string // Error Comment (0000,0902), at most 64 characters
	// Offending lists attribute tags (group<<16|element) in error.
	Offending []uint32
}

func (s *Status) Error() string {
	if s.Comment != "" {
		return fmt.Sprintf("DIMSE status 0x%04X (%s): %s", s.Code, CategoryOf(s.Code), s.Comment)
	}
	return fmt.Sprintf("DIMSE status 0x%04X (%s)", s.Code, CategoryOf(s.Code))
}

// Category returns the status's category.
func (s *Status) Category() Category { return CategoryOf(s.Code) }

// NewStatus returns a *Status with the code and a comment; the comment is
// cut to 64 characters (and control characters replaced) so that it can be
// sent.
func NewStatus(code uint16, comment string) *Status {
	return &Status{Code: code, Comment: sanitizeComment(comment)}
}

func sanitizeComment(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			b[i] = '?'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// statusFromError maps a handler's error to the status to send: a *Status
// as returned, ENOSPC as out of resources, anything else as fallback.
func statusFromError(err error, fallback uint16) *Status {
	if err == nil {
		return &Status{Code: StatusSuccess}
	}
	var s *Status
	if errors.As(err, &s) {
		cp := *s
		cp.Comment = sanitizeComment(cp.Comment)
		return &cp
	}
	if errors.Is(err, syscall.ENOSPC) {
		return NewStatus(StatusOutOfResources, "out of storage space")
	}
	return NewStatus(fallback, err.Error())
}

func (s *Status) apply(c *Command) {
	c.SetUS(tStatus, s.Code)
	if s.Comment != "" {
		c.SetString(tErrorComment, sanitizeComment(s.Comment))
	}
	if len(s.Offending) > 0 {
		c.SetAT(tOffendingElement, s.Offending)
	}
}

func statusOf(c *Command) *Status {
	return &Status{Code: c.Status, Comment: c.ErrorComment, Offending: c.OffendingElement}
}
