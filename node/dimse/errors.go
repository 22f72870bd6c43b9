package dimse

import (
	"errors"
	"fmt"
	"time"
)

// Errors of an association's life.
var (
	// ErrReleased: the association was released normally.
	ErrReleased = errors.New("dimse: association released")
	// ErrClosed: the transport connection closed without a release or abort.
	ErrClosed = errors.New("dimse: connection closed by peer without release or abort")
	// ErrTimeout: a timer expired (ARTIM, idle, or DIMSE timeout).
	ErrTimeout = errors.New("dimse: timed out")
)

// AbortError reports an aborted association.
type AbortError struct {
	Source byte
	Reason byte
	Local  bool   // we aborted
	Detail string // why, when we know
}

func (e *AbortError) Error() string {
	who := "peer"
	if e.Local {
		who = "we"
	}
	src := "service-user"
	if e.Source == AbortSourceProvider {
		src = fmt.Sprintf("service-provider, reason %d", e.Reason)
	}
	s := fmt.Sprintf("dimse: association aborted (%s aborted, source %s)", who, src)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// RejectError reports an A-ASSOCIATE-RJ.
type RejectError struct {
	AssociateRJ
}

func (e *RejectError) Error() string {
	kind := "permanently"
	if e.Result == RejectTransient {
		kind = "transiently"
	}
	return fmt.Sprintf("dimse: association %s rejected: %s", kind, rejectReason(e.Source, e.Reason))
}

func rejectReason(source, reason byte) string {
	switch {
	case source == RejectSourceUser && reason == RejectApplicationContextNotSupp:
		return "application context name not supported"
	case source == RejectSourceUser && reason == RejectCallingAENotRecognized:
		return "calling AE title not recognized (ask the peer's operator to allow our AE title and address)"
	case source == RejectSourceUser && reason == RejectCalledAENotRecognized:
		return "called AE title not recognized (check the peer's AE title)"
	case source == RejectSourceACSE && reason == RejectACSEProtocolVersionNotSupp:
		return "protocol version not supported"
	case source == RejectSourcePresentation && reason == RejectTemporaryCongestion:
		return "temporary congestion"
	case source == RejectSourcePresentation && reason == RejectLocalLimitExceeded:
		return "local limit exceeded (too many associations; retry later)"
	}
	return fmt.Sprintf("source %d, reason %d", source, reason)
}

// Timeouts of an association. Zero values take the defaults.
type Timeouts struct {
	// ARTIM bounds the wait for an A-ASSOCIATE-RQ after a connection is
	// accepted, for an A-ASSOCIATE-AC/RJ after a request (the ACSE
	// timeout), for an A-RELEASE-RP, and for the peer to close the
	// connection after a release, reject or abort. Default 30 s.
	ARTIM time.Duration
	// DIMSE bounds every wait inside an operation: the next PDU of a
	// message being received, a response, and each write. Default 60 s.
	DIMSE time.Duration
	// Idle bounds the silence between messages: a server aborts an
	// association idle that long. Default 5 minutes for a server, no
	// limit (-1) for a client; a negative value means no limit.
	Idle time.Duration
	// Connect bounds the TCP connect of a client. Default 30 s.
	Connect time.Duration
}

func (t Timeouts) withDefaults(server bool) Timeouts {
	if t.ARTIM <= 0 {
		t.ARTIM = 30 * time.Second
	}
	if t.DIMSE <= 0 {
		t.DIMSE = 60 * time.Second
	}
	if t.Idle == 0 {
		if server {
			t.Idle = 5 * time.Minute
		} else {
			t.Idle = -1
		}
	}
	if t.Connect <= 0 {
		t.Connect = 30 * time.Second
	}
	return t
}
