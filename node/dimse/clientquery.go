package dimse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"

	lib "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// Progress counts the sub-operations of a C-MOVE or C-GET.
type Progress struct {
	Remaining, Completed, Failed, Warning int
}

// RetrieveResult is the outcome of a C-MOVE or C-GET.
type RetrieveResult struct {
	Status *Status
	Progress
	// FailedSOPInstanceUIDs lists what the peer reported as failed.
	FailedSOPInstanceUIDs []string
}

func queryCommand(field, id uint16, model string) *Command {
	cmd := &Command{}
	cmd.SetUS(tCommandField, field)
	cmd.SetUS(tMessageID, id)
	cmd.SetUS(tPriority, PriorityMedium)
	cmd.SetString(tAffectedSOPClassUID, model)
	return cmd
}

func (a *Association) sendCancel(pc *pctx, id uint16) error {
	cmd := &Command{}
	cmd.SetUS(tCommandField, CCancelRQ)
	cmd.SetUS(tMessageIDRespondedTo, id)
	return a.c.sendMessage(pc, cmd, nil)
}

// Find performs a C-FIND with the information model model (e.g.
// StudyRootFind) and yields the matches. Breaking out of the loop, or
// ctx ending, sends a C-CANCEL-RQ and waits for the final response. A
// failure status is yielded as a *Status error.
func (a *Association) Find(ctx context.Context, model string, identifier *lib.Dataset) iter.Seq2[*lib.Dataset, error] {
	return func(yield func(*lib.Dataset, error) bool) {
		a.mu.Lock()
		defer a.mu.Unlock()
		pc, err := a.pick(model, "", false)
		if err != nil {
			yield(nil, err)
			return
		}
		b, err := EncodeIdentifier(identifier, pc.ts)
		if err != nil {
			yield(nil, err)
			return
		}
		id := a.nextID()
		if err := a.c.sendMessage(pc, queryCommand(CFindRQ, id, model), bytes.NewReader(b)); err != nil {
			yield(nil, err)
			return
		}
		waitCtx, stopping := ctx, false
		stop := func() error {
			stopping, waitCtx = true, context.Background()
			return a.sendCancel(pc, id)
		}
		for {
			m, err := a.await(waitCtx, pc)
			if err != nil {
				if !stopping && ctx.Err() != nil && a.c.Err() == nil {
					if err := stop(); err == nil {
						continue
					}
				}
				if !stopping {
					yield(nil, err)
				}
				return
			}
			if err := checkResponse(m, id, CFindRSP); err != nil {
				a.c.abortLocal(AbortSourceUser, AbortReasonNotSpecified, err)
				if !stopping {
					yield(nil, err)
				}
				return
			}
			st := statusOf(m.cmd)
			switch st.Category() {
			case Pending:
				if stopping {
					continue
				}
				ds, err := DecodeIdentifier(m.dataBytes, pc.ts)
				if err != nil {
					err = fmt.Errorf("dimse: C-FIND match: %w", err)
				}
				if !yield(ds, err) {
					if err := stop(); err != nil {
						return
					}
				}
			case Success, Warning:
				return
			case Cancel:
				if !stopping || ctx.Err() != nil {
					if ctx.Err() != nil {
						yield(nil, ctx.Err())
					} else {
						yield(nil, st)
					}
				}
				return
			default:
				if !stopping {
					yield(nil, st)
				}
				return
			}
		}
	}
}

// Move performs a C-MOVE: the peer sends the matching instances to the AE
// destination (which it must know). progress, if not nil, sees each
// pending response. The error is nil for success and for a warning (some
// sub-operations failed: see the result's counts); a failure or cancel
// status is returned as a *Status error beside the result.
func (a *Association) Move(ctx context.Context, model, destination string, identifier *lib.Dataset, progress func(Progress)) (*RetrieveResult, error) {
	if err := checkAETitle(destination); err != nil {
		return nil, fmt.Errorf("dimse: move destination: %w", err)
	}
	return a.retrieve(ctx, CMoveRQ, model, destination, identifier, progress)
}

// Get performs a C-GET: the peer sends the matching instances back on
// this association, to the ClientOptions' Store handler (propose the
// storage SOP classes with Proposal.SCP). Errors as for Move.
func (a *Association) Get(ctx context.Context, model string, identifier *lib.Dataset, progress func(Progress)) (*RetrieveResult, error) {
	if a.o.Store == nil {
		return nil, errors.New("dimse: C-GET needs a Store handler in the ClientOptions")
	}
	return a.retrieve(ctx, CGetRQ, model, "", identifier, progress)
}

func (a *Association) retrieve(ctx context.Context, field uint16, model, dest string, identifier *lib.Dataset, progress func(Progress)) (*RetrieveResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	pc, err := a.pick(model, "", false)
	if err != nil {
		return nil, err
	}
	b, err := EncodeIdentifier(identifier, pc.ts)
	if err != nil {
		return nil, err
	}
	id := a.nextID()
	cmd := queryCommand(field, id, model)
	if dest != "" {
		cmd.SetString(tMoveDestination, dest)
	}
	if err := a.c.sendMessage(pc, cmd, bytes.NewReader(b)); err != nil {
		return nil, err
	}
	res := &RetrieveResult{}
	waitCtx, cancelled := ctx, false
	for {
		// A sub-operation may take long (a large instance to a slow
		// destination): each pending response may take ten DIMSE timeouts.
		m, err := a.awaitFor(waitCtx, pc, 10*a.c.cfg.timeouts.DIMSE)
		if err != nil {
			if !cancelled && ctx.Err() != nil && a.c.Err() == nil {
				cancelled, waitCtx = true, context.Background()
				if a.sendCancel(pc, id) == nil {
					continue
				}
			}
			return res, err
		}
		if err := checkResponse(m, id, field|0x8000); err != nil {
			a.c.abortLocal(AbortSourceUser, AbortReasonNotSpecified, err)
			return res, err
		}
		c := m.cmd
		res.Status = statusOf(c)
		res.Progress = Progress{Remaining: int(c.Remaining), Completed: int(c.Completed), Failed: int(c.Failed), Warning: int(c.Warning)}
		if !c.Has(tRemaining) {
			res.Remaining = 0
		}
		if res.Status.Category() == Pending {
			if progress != nil {
				progress(res.Progress)
			}
			continue
		}
		if m.dataBytes != nil {
			if ds, err := DecodeIdentifier(m.dataBytes, pc.ts); err == nil {
				if e, err := ds.FindElementByTag(tag.FailedSOPInstanceUIDList); err == nil {
					if v, ok := e.Value.GetValue().([]string); ok {
						res.FailedSOPInstanceUIDs = v
					}
				}
			}
		}
		switch res.Status.Category() {
		case Success, Warning:
			return res, nil
		case Cancel:
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
		}
		return res, res.Status
	}
}
