package ledger

import (
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
)

// Status is what Ingest did with one entry.
type Status uint8

// Statuses of an ingested entry.
const (
	Applied   Status = iota + 1 // validated, applied and committed
	Duplicate                   // applied before: nothing to do
	Pending                     // buffered until its parents are applied
	Rejected                    // invalid: never applied, on any node
)

func (s Status) String() string {
	switch s {
	case Applied:
		return "applied"
	case Duplicate:
		return "duplicate"
	case Pending:
		return "pending"
	case Rejected:
		return "rejected"
	}
	return "unknown"
}

// Result is the outcome of one input entry.
type Result struct {
	Status Status
	// Err is a *RejectError for Rejected, ErrPending (or ErrPendingFull)
	// for Pending, nil otherwise.
	Err error
}

// Outcome is what one Ingest did, as plain values (raft's Ready, tka's sync
// types): the caller tells subscribers about Applied, counts and logs
// Rejected, and fetches Missing from the peer that sent the entries.
type Outcome struct {
	// Results has one element per input entry, in input order.
	Results []Result
	// Applied lists every entry applied and committed by this call, in
	// apply order (a topological order): inputs and the buffered entries
	// they released.
	Applied []*Entry
	// Rejected lists every entry this call rejected, inputs and released
	// buffered entries alike.
	Rejected []*RejectError
	// Pending lists the input entries now buffered for missing parents.
	Pending []cid.Cid
	// Missing lists the parents they wait for that are neither applied nor
	// buffered: what to fetch.
	Missing []cid.Cid
	// Duplicates counts inputs that were applied before.
	Duplicates int
	// Dropped counts inputs the full pending buffer could not keep (a
	// later sync fetches them again).
	Dropped int
}

// ErrPending reports an entry buffered until its parents arrive.
var ErrPending = errors.New("ledger: entry waits for missing parents")

// ErrPendingFull reports an entry dropped because the buffer of entries
// waiting for parents is full. It wraps ErrPending.
var ErrPendingFull = fmt.Errorf("%w (buffer full: dropped, a later sync fetches it again)", ErrPending)

// RejectError is a validation failure with its metric reason.
type RejectError struct {
	Reason string
	Entry  cid.Cid
	Err    error
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("ledger: entry %s rejected (%s): %v", e.Entry, e.Reason, e.Err)
}
func (e *RejectError) Unwrap() error { return e.Err }

func isReject(err error) bool {
	var re *RejectError
	return errors.As(err, &re)
}

// record sets the Result of input i (entry e), which was missing the
// parents miss if it is pending.
func (out *Outcome) record(i int, e *Entry, r Result, miss []cid.Cid, missing map[cid.Cid]bool) {
	out.Results[i] = r
	switch r.Status {
	case Duplicate:
		out.Duplicates++
	case Pending:
		out.Pending = append(out.Pending, e.cid)
		if errors.Is(r.Err, ErrPendingFull) {
			out.Dropped++
		}
		for _, m := range miss {
			missing[m] = true
		}
	}
}
