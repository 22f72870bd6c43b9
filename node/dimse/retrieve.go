package dimse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	lib "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// The server side of C-MOVE and C-GET: the handler names the instances,
// the server sends each as a C-STORE sub-operation (to the destination
// over a sub-association for C-MOVE, back on the same association for
// C-GET) and reports progress in pending responses.

// subOpSender sends one instance as a C-STORE sub-operation.
type subOpSender interface {
	send(ctx context.Context, p StoreParams, data io.Reader) (*Status, error)
	close()
}

func (a *serverAssoc) retrieve(m *message) *ulEvent {
	cmd := m.cmd
	isMove := cmd.CommandField == CMoveRQ
	rspField := CGetRSP
	supported := a.s.o.Get != nil && isGetClass(m.ctx.abstract)
	if isMove {
		rspField = CMoveRSP
		supported = a.s.o.Move != nil && isMoveClass(m.ctx.abstract)
	}
	if !supported || cmd.AffectedSOPClassUID != m.ctx.abstract {
		a.refuse(m, rspField, StatusSOPClassNotSupported, "retrieve on a context that is not a supported retrieve model")
		return nil
	}
	var destAddr string
	if isMove {
		var ok bool
		if destAddr, ok = a.s.dests[cmd.MoveDestination]; !ok {
			a.refuse(m, rspField, StatusMoveDestinationUnknown, fmt.Sprintf("unknown move destination %q", cmd.MoveDestination))
			return nil
		}
	}
	ident, ok := a.identifier(m, rspField)
	if !ok {
		return nil
	}
	level := strings.ToUpper(stringValue(ident, tag.QueryRetrieveLevel))
	if err := checkLevel(m.ctx.abstract, level); err != nil {
		a.refuse(m, rspField, StatusIdentifierMismatch, err.Error())
		return nil
	}
	req := &QueryRequest{Association: a.info, MessageID: cmd.MessageID, Priority: cmd.Priority,
		SOPClassUID: cmd.AffectedSOPClassUID, Level: level, Identifier: ident, Destination: cmd.MoveDestination}

	octx, cancel := context.WithCancel(a.ctx)
	defer cancel()
	w := a.watch(cmd.MessageID, cancel, !isMove)
	var sender subOpSender
	if isMove {
		sender = &moveSender{s: a.s, dest: cmd.MoveDestination, addr: destAddr, originAE: a.info.CallingAE,
			originID: cmd.MessageID, tried: map[[2]string]bool{}}
	} else {
		sender = &getSender{a: a, w: w}
	}
	start := time.Now()
	counts, failed, stopErr := a.runRetrieve(octx, req, isMove, sender, func(p Progress) {
		rsp := response(cmd, rspField, &Status{Code: StatusPending})
		setCounts(rsp, p, true)
		a.respond(m.ctx, rsp, nil)
	})
	sender.close()
	cancelled := octx.Err() != nil && a.ctx.Err() == nil
	held := w.stop()
	if a.c.Err() != nil {
		return held
	}
	rsp, data := retrieveFinal(cmd, rspField, counts, failed, cancelled, stopErr, m.ctx.ts)
	a.respond(m.ctx, rsp, data)
	a.c.log.Info("dimse: retrieve", "op", commandName(cmd.CommandField), "level", level, "dest", cmd.MoveDestination,
		"completed", counts.Completed, "failed", counts.Failed, "warning", counts.Warning,
		"status", fmt.Sprintf("0x%04X", rsp.Status), "took", time.Since(start))
	return held
}

// runRetrieve asks the handler for the instances and sends them. It
// returns the counts, the failed SOP instance UIDs, and the error that
// stopped it early (nil if it ran through or was cancelled).
func (a *serverAssoc) runRetrieve(ctx context.Context, req *QueryRequest, isMove bool, sender subOpSender, pending func(Progress)) (p Progress, failed []string, stopErr error) {
	defer func() {
		if r := recover(); r != nil {
			a.c.log.Error("dimse: retrieve handler panic", "panic", r)
			stopErr = fmt.Errorf("retrieve handler panic: %v", r)
		}
	}()
	var r *Retrieval
	var err error
	if isMove {
		r, err = a.s.o.Move.Move(ctx, req)
	} else {
		r, err = a.s.o.Get.Get(ctx, req)
	}
	if err != nil {
		return p, nil, err
	}
	if r == nil || r.Instances == nil {
		return p, nil, nil
	}
	total := max(r.Count, 0)
	done := 0
	for inst, err := range r.Instances {
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			stopErr = err
			break
		}
		st, uid := a.subOp(ctx, inst, sender)
		done++
		switch {
		case st == nil || st.Category() == Failure || st.Category() == Cancel:
			p.Failed++
			failed = append(failed, uid)
		case st.Category() == Warning:
			p.Warning++
		default:
			p.Completed++
		}
		p.Remaining = max(total-done, 0)
		if a.c.Err() != nil {
			return p, failed, a.c.Err()
		}
		if ctx.Err() == nil {
			pending(p)
		}
	}
	if stopErr != nil {
		// what was not sent failed
		p.Failed += p.Remaining
		p.Remaining = 0
	}
	if ctx.Err() == nil {
		p.Remaining = 0
	}
	return p, failed, stopErr
}

// subOp sends one instance; it returns the sub-operation's status (nil if
// it could not be sent) and the instance's UID.
func (a *serverAssoc) subOp(ctx context.Context, inst Instance, sender subOpSender) (*Status, string) {
	log := a.c.log.With("sop", inst.SOPInstanceUID)
	if inst.Open == nil {
		log.Warn("dimse: retrieve: instance without Open")
		return nil, inst.SOPInstanceUID
	}
	rc, err := inst.Open(ctx)
	if err != nil {
		log.Warn("dimse: retrieve: opening instance", "err", err)
		return nil, inst.SOPInstanceUID
	}
	defer rc.Close()
	var data io.Reader = rc
	if inst.Part10 {
		meta, ds, err := OpenPart10(rc)
		if err != nil {
			log.Warn("dimse: retrieve: reading instance", "err", err)
			return nil, inst.SOPInstanceUID
		}
		for _, f := range []struct {
			field *string
			meta  string
			name  string
		}{{&inst.SOPClassUID, meta.MediaStorageSOPClassUID, "SOP class"},
			{&inst.SOPInstanceUID, meta.MediaStorageSOPInstanceUID, "SOP instance"},
			{&inst.TransferSyntaxUID, meta.TransferSyntaxUID, "transfer syntax"}} {
			if *f.field == "" {
				*f.field = f.meta
			} else if *f.field != f.meta {
				log.Warn("dimse: retrieve: instance's file disagrees with its index", "what", f.name, "index", *f.field, "file", f.meta)
				return nil, inst.SOPInstanceUID
			}
		}
		data = ds
	}
	st, err := sender.send(ctx, StoreParams{SOPClassUID: inst.SOPClassUID, SOPInstanceUID: inst.SOPInstanceUID,
		TransferSyntaxUID: inst.TransferSyntaxUID}, data)
	if err != nil {
		log.Warn("dimse: retrieve: sub-operation failed", "err", err)
		var s *Status
		if errors.As(err, &s) {
			return s, inst.SOPInstanceUID
		}
		return nil, inst.SOPInstanceUID
	}
	return st, inst.SOPInstanceUID
}

func setCounts(c *Command, p Progress, withRemaining bool) {
	if withRemaining {
		c.SetUS(tRemaining, clampUS(p.Remaining))
	}
	c.SetUS(tCompleted, clampUS(p.Completed))
	c.SetUS(tFailed, clampUS(p.Failed))
	c.SetUS(tWarning, clampUS(p.Warning))
}

func clampUS(n int) uint16 {
	return uint16(min(max(n, 0), 0xFFFF))
}

// maxFailedListBytes keeps the Failed SOP Instance UID List within one
// explicit VR UI value (16-bit length).
const maxFailedListBytes = 0xFFF0

// retrieveFinal builds the final response (PS3.4 C.4.2.1.6, C.4.3.1.6).
func retrieveFinal(req *Command, field uint16, p Progress, failed []string, cancelled bool, stopErr error, ts string) (*Command, []byte) {
	var st *Status
	switch {
	case cancelled:
		st = &Status{Code: StatusCancel}
	case stopErr != nil:
		st = statusFromError(stopErr, StatusUnableToProcess)
	case p.Failed > 0 || p.Warning > 0:
		st = &Status{Code: StatusSubOpsWarning}
	default:
		st = &Status{Code: StatusSuccess}
	}
	rsp := response(req, field, st)
	setCounts(rsp, p, cancelled)
	if len(failed) == 0 || st.Code == StatusSuccess {
		return rsp, nil
	}
	n := 0
	for i, u := range failed {
		if n+len(u)+1 > maxFailedListBytes {
			failed = failed[:i]
			break
		}
		n += len(u) + 1
	}
	e, err := lib.NewElement(tag.FailedSOPInstanceUIDList, failed)
	if err != nil {
		return rsp, nil
	}
	b, err := EncodeIdentifier(&lib.Dataset{Elements: []*lib.Element{e}}, ts)
	if err != nil {
		return rsp, nil
	}
	return rsp, b
}

// getSender sends C-GET sub-operations on the requesting association.
type getSender struct {
	a *serverAssoc
	w *watcher
}

func (g *getSender) send(ctx context.Context, p StoreParams, data io.Reader) (*Status, error) {
	a := g.a
	var pc *pctx
	a.c.mu.Lock()
	for _, x := range a.c.ctxs {
		if x.abstract == p.SOPClassUID && x.ts == p.TransferSyntaxUID && x.reqSCP && (pc == nil || x.id < pc.id) {
			pc = x
		}
	}
	a.c.mu.Unlock()
	if pc == nil {
		return nil, &NoContextError{SOPClassUID: p.SOPClassUID, TransferSyntaxUID: p.TransferSyntaxUID}
	}
	id := a.nextID()
	cmd := &Command{}
	cmd.SetUS(tCommandField, CStoreRQ)
	cmd.SetUS(tMessageID, id)
	cmd.SetUS(tPriority, PriorityMedium)
	cmd.SetString(tAffectedSOPClassUID, p.SOPClassUID)
	cmd.SetString(tAffectedSOPInstanceUID, p.SOPInstanceUID)
	if err := a.c.sendMessage(pc, cmd, data); err != nil {
		return nil, err
	}
	t := time.NewTimer(a.s.o.Timeouts.DIMSE)
	defer t.Stop()
	for {
		select {
		case rsp := <-g.w.rsp:
			if rsp.MessageIDBeingRespondedTo != id {
				a.c.log.Warn("dimse: C-STORE-RSP to another message ignored", "cmd", rsp.String())
				continue
			}
			st := statusOf(rsp)
			if c := st.Category(); c != Success && c != Warning {
				return st, st
			}
			return st, nil
		case <-a.c.done:
			return nil, a.c.Err()
		case <-t.C:
			a.c.abortLocal(AbortSourceUser, AbortReasonNotSpecified, errors.New("no C-STORE-RSP to a C-GET sub-operation"))
			return nil, fmt.Errorf("%w: no C-STORE-RSP within %v", ErrTimeout, a.s.o.Timeouts.DIMSE)
		}
	}
}

func (g *getSender) close() {}

// moveSender sends C-MOVE sub-operations over a sub-association to the
// destination. It proposes one context per (SOP class, transfer syntax)
// pair met so far; a new pair means a new association proposing them all.
type moveSender struct {
	s        *Server
	dest     string
	addr     string
	originAE string
	originID uint16
	assoc    *Association
	pairs    [][2]string
	tried    map[[2]string]bool
	dialErr  error
}

func (m *moveSender) send(ctx context.Context, p StoreParams, data io.Reader) (*Status, error) {
	if m.dialErr != nil {
		return nil, m.dialErr
	}
	k := [2]string{p.SOPClassUID, p.TransferSyntaxUID}
	if !m.tried[k] {
		if len(m.pairs) >= maxContexts {
			return nil, fmt.Errorf("dimse: more than %d SOP class / transfer syntax pairs in one C-MOVE", maxContexts)
		}
		m.tried[k] = true
		m.pairs = append(m.pairs, k)
		if m.assoc != nil {
			m.assoc.Release(ctx)
			m.assoc = nil
		}
	}
	if m.assoc == nil || m.assoc.Err() != nil {
		var props []Proposal
		for _, pr := range m.pairs {
			props = append(props, Proposal{AbstractSyntax: pr[0], TransferSyntaxes: []string{pr[1]}})
		}
		a, err := Dial(ctx, m.addr, ClientOptions{CallingAE: m.s.o.AETitle, CalledAE: m.dest, Proposals: props,
			MaxPDULength: m.s.o.MaxPDULength, Timeouts: m.s.o.Timeouts, Logger: m.s.log})
		if err != nil {
			m.dialErr = NewStatus(StatusOutOfResourcesSubOps, fmt.Sprintf("cannot associate with %s: %v", m.dest, err))
			m.s.log.Warn("dimse: C-MOVE sub-association", "dest", m.dest, "addr", m.addr, "err", err)
			return nil, m.dialErr
		}
		m.assoc = a
	}
	p.MoveOriginatorAE, p.MoveOriginatorMessageID = m.originAE, m.originID
	return m.assoc.Store(ctx, p, data)
}

func (m *moveSender) close() {
	if m.assoc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), m.s.o.Timeouts.ARTIM)
		defer cancel()
		m.assoc.Release(ctx)
		m.assoc = nil
	}
}
