// Package fault is the error vocabulary of medmesh's services: every error
// a service returns to a user carries a kind (what went wrong, as far as
// the caller is concerned) and a hint (what to do about it). Services never
// speak HTTP; the HTTP layer maps kinds to statuses (node/api.Fail) and the
// CLI maps statuses to exit codes.
package fault

import (
	"context"
	"errors"
	"fmt"
)

// Kind classifies an error for its caller.
type Kind int

// Kinds. The zero Kind is Internal: an error nobody classified is a fault
// of the node, not of the request.
const (
	// Internal: unexpected (storage failure, a bug).
	Internal Kind = iota
	// Invalid: the request is malformed or a value is out of range.
	Invalid
	// NotFound: what the request names does not exist (here).
	NotFound
	// Forbidden: the caller may not do this.
	Forbidden
	// Conflict: the state does not allow it now (not yet a member, a key
	// not yet announced, already exists).
	Conflict
	// Unavailable: a peer, the network or a resource cannot be reached now;
	// retrying later may succeed.
	Unavailable
	// TooLarge: the input exceeds a limit (a kind of Invalid, kept apart
	// for protocols that report it so).
	TooLarge
)

var kindNames = [...]string{"internal", "invalid", "not found", "forbidden", "conflict", "unavailable", "too large"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is a classified error with a hint.
type Error struct {
	Kind Kind
	Msg  string
	// Hint says what to do about it, when there is something to do.
	Hint string
	// Err is the wrapped cause, if the message was built with %w.
	Err error
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// New makes an error of kind k. The format may wrap a cause with %w.
func New(k Kind, hint, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: k, Msg: err.Error(), Hint: hint, Err: errors.Unwrap(err)}
}

// Invalidf, NotFoundf, Forbiddenf, Conflictf, Unavailablef and TooLargef
// make errors of their kind.
func Invalidf(hint, format string, args ...any) error { return New(Invalid, hint, format, args...) }
func NotFoundf(hint, format string, args ...any) error {
	return New(NotFound, hint, format, args...)
}
func Forbiddenf(hint, format string, args ...any) error {
	return New(Forbidden, hint, format, args...)
}
func Conflictf(hint, format string, args ...any) error {
	return New(Conflict, hint, format, args...)
}
func Unavailablef(hint, format string, args ...any) error {
	return New(Unavailable, hint, format, args...)
}
func TooLargef(hint, format string, args ...any) error {
	return New(TooLarge, hint, format, args...)
}

// Wrap classifies err (keeping it as the cause) with a hint; nil stays nil.
func Wrap(k Kind, hint string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: k, Msg: err.Error(), Hint: hint, Err: err}
}

// KindOf returns the kind of the outermost classified error in err's chain;
// a deadline or cancellation is Unavailable; anything else Internal.
func KindOf(err error) Kind {
	var fe *Error
	switch {
	case errors.As(err, &fe):
		return fe.Kind
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return Unavailable
	}
	return Internal
}

// HintOf returns the hint of the outermost classified error in err's
// chain, or "".
func HintOf(err error) string {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Hint
	}
	return ""
}

// Is reports whether err is classified as kind k.
func Is(err error, k Kind) bool { return err != nil && KindOf(err) == k }
