package dimse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	lib "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// serverAssoc serves the messages of one accepted association, one
// operation at a time (the asynchronous operations window is 1).
type serverAssoc struct {
	s     *Server
	c     *ul
	info  *AssociationInfo
	ctx   context.Context // ends with the association
	msgID uint16          // our message IDs (C-GET sub-operations)
}

// loop serves the association until it ends: nil for a release, else
// why it ended.
func (a *serverAssoc) loop() error {
	var held *ulEvent
	for {
		var e ulEvent
		if held != nil {
			e, held = *held, nil
		} else {
			var err error
			if e, err = a.c.next(a.ctx, 0); err != nil {
				a.logEnd(err)
				if errors.Is(err, ErrReleased) {
					return nil
				}
				return err
			}
		}
		switch e.kind {
		case evReleaseRQ:
			if err := a.c.releaseResponse(); err != nil {
				if a.c.Err() == nil || !errors.Is(a.c.Err(), ErrClosed) {
					a.c.log.Warn("dimse: answering A-RELEASE-RQ", "err", err)
				}
				return err
			}
			a.c.log.Info("dimse: association released")
			return nil
		case evMessage:
			held = a.handle(e.msg)
		}
	}
}

func (a *serverAssoc) logEnd(err error) {
	switch {
	case errors.Is(err, ErrReleased), errors.Is(err, context.Canceled):
	case errors.Is(err, ErrClosed):
		a.c.log.Warn("dimse: peer closed the connection without releasing the association")
	default:
		a.c.log.Warn("dimse: association ended", "err", err)
	}
}

func (a *serverAssoc) nextID() uint16 {
	a.msgID++
	if a.msgID == 0 {
		a.msgID = 1
	}
	return a.msgID
}

// respond sends a response on the request's context.
func (a *serverAssoc) respond(pc *pctx, rsp *Command, data []byte) error {
	var r io.Reader
	if data != nil {
		r = bytes.NewReader(data)
	}
	err := a.c.sendMessage(pc, rsp, r)
	if err != nil {
		a.c.log.Warn("dimse: sending response", "cmd", rsp.String(), "err", err)
	}
	if o := a.s.o.Observer; o != nil && rsp.Has(tStatus) && CategoryOf(rsp.Status) != Pending {
		o.Operation(a.info, rsp.CommandField&^0x8000, rsp.Status)
	}
	return err
}

func response(req *Command, field uint16, st *Status) *Command {
	r := &Command{}
	r.SetUS(tCommandField, field)
	r.SetUS(tMessageIDRespondedTo, req.MessageID)
	if req.AffectedSOPClassUID != "" {
		r.SetString(tAffectedSOPClassUID, req.AffectedSOPClassUID)
	}
	st.apply(r)
	return r
}

// handle serves one message; it returns an event that arrived during an
// operation and must be handled next.
func (a *serverAssoc) handle(m *message) *ulEvent {
	cmd := m.cmd
	switch cmd.CommandField {
	case CEchoRQ:
		a.echo(m)
	case CStoreRQ:
		a.store(m)
	case CFindRQ:
		return a.find(m)
	case CMoveRQ, CGetRQ:
		return a.retrieve(m)
	case CCancelRQ:
		// the operation it cancels has already ended
	default:
		m.closeData()
		if cmd.CommandField&0x8000 != 0 {
			a.c.log.Warn("dimse: unexpected response ignored", "cmd", cmd.String())
			return nil
		}
		a.waitData(m)
		a.respond(m.ctx, response(cmd, cmd.CommandField|0x8000, NewStatus(StatusUnrecognizedOperation, "operation not supported")), nil)
	}
	return nil
}

// waitData waits until a streamed data set has been received (or the
// association ended).
func (a *serverAssoc) waitData(m *message) {
	if m.dataDone == nil {
		return
	}
	select {
	case <-m.dataDone:
	case <-a.c.done:
	}
}

// refuse answers a request its context does not allow.
func (a *serverAssoc) refuse(m *message, rspField, code uint16, why string) {
	m.closeData()
	a.waitData(m)
	a.c.log.Warn("dimse: request refused", "cmd", m.cmd.String(), "why", why)
	rsp := response(m.cmd, rspField, NewStatus(code, why))
	if rspField == CStoreRSP && m.cmd.AffectedSOPInstanceUID != "" {
		rsp.SetString(tAffectedSOPInstanceUID, m.cmd.AffectedSOPInstanceUID)
	}
	a.respond(m.ctx, rsp, nil)
}

func (a *serverAssoc) echo(m *message) {
	if m.ctx.abstract != VerificationSOPClass || m.cmd.AffectedSOPClassUID != VerificationSOPClass {
		a.refuse(m, CEchoRSP, StatusSOPClassNotSupported, "C-ECHO outside the Verification SOP class")
		return
	}
	var err error
	if a.s.o.Echo != nil {
		err = a.s.o.Echo.Echo(a.ctx, a.info)
	}
	a.respond(m.ctx, response(m.cmd, CEchoRSP, statusFromError(err, StatusProcessingFailure)), nil)
}

// eofReader records whether its reader reached EOF.
type eofReader struct {
	r   io.Reader
	n   int64
	eof bool
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.n += int64(n)
	if err == io.EOF {
		e.eof = true
	}
	return n, err
}

func (a *serverAssoc) store(m *message) {
	cmd := m.cmd
	if a.s.o.Store == nil {
		a.refuse(m, CStoreRSP, StatusSOPClassNotSupported, "this AE does not accept C-STORE")
		return
	}
	if cmd.AffectedSOPClassUID != m.ctx.abstract || !a.s.isStorage(m.ctx.abstract) {
		a.refuse(m, CStoreRSP, StatusSOPClassNotSupported,
			fmt.Sprintf("SOP class %s sent on a context for %s", cmd.AffectedSOPClassUID, m.ctx.abstract))
		return
	}
	if !isUIDSyntax(cmd.AffectedSOPInstanceUID) {
		a.refuse(m, CStoreRSP, StatusIdentifierMismatch, "invalid Affected SOP Instance UID")
		return
	}
	req := &StoreRequest{Association: a.info, MessageID: cmd.MessageID, Priority: cmd.Priority,
		SOPClassUID: cmd.AffectedSOPClassUID, SOPInstanceUID: cmd.AffectedSOPInstanceUID,
		TransferSyntaxUID: m.ctx.ts, MoveOriginatorAE: cmd.MoveOriginatorAE, MoveOriginatorMessageID: cmd.MoveOriginatorMessageID}
	r := &eofReader{r: m.data}
	start := time.Now()
	err := callStore(a.ctx, a.s.o.Store, req, r)
	m.closeData()
	a.waitData(m)
	if a.c.Err() != nil {
		return // the association is gone: nobody to answer
	}
	if err == nil && !r.eof {
		err = errors.New("the store handler returned before reading the whole data set")
		a.c.log.Error("dimse: C-STORE", "sop", req.SOPInstanceUID, "err", err)
	}
	st := statusFromError(err, StatusProcessingFailure)
	if err != nil {
		a.c.log.Warn("dimse: C-STORE failed", "sop", req.SOPInstanceUID, "status", fmt.Sprintf("0x%04X", st.Code), "err", err)
	} else {
		a.c.log.Debug("dimse: C-STORE", "sop", req.SOPInstanceUID, "bytes", r.n, "took", time.Since(start))
	}
	rsp := response(cmd, CStoreRSP, st)
	rsp.SetString(tAffectedSOPInstanceUID, cmd.AffectedSOPInstanceUID)
	a.respond(m.ctx, rsp, nil)
}

// callStore calls the handler, turning a panic into an error.
func callStore(ctx context.Context, h StoreHandler, req *StoreRequest, r io.Reader) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store handler panic: %v", p)
		}
	}()
	return h.Store(ctx, req, r)
}

// watcher reads the association's events while an operation runs: it
// cancels the operation on a matching C-CANCEL-RQ, passes C-STORE-RSPs to
// a C-GET, and holds back anything else for the main loop.
type watcher struct {
	c      *ul
	msgID  uint16
	cancel context.CancelFunc
	rsp    chan *Command // C-STORE-RSPs, if the operation expects them
	stopCh chan struct{}
	result chan *ulEvent
}

func (a *serverAssoc) watch(msgID uint16, cancel context.CancelFunc, wantRSP bool) *watcher {
	w := &watcher{c: a.c, msgID: msgID, cancel: cancel, stopCh: make(chan struct{}), result: make(chan *ulEvent, 1)}
	if wantRSP {
		w.rsp = make(chan *Command, 1)
	}
	go w.run()
	return w
}

func (w *watcher) run() {
	for {
		select {
		case e := <-w.c.ev:
			if e.kind == evMessage {
				cmd := e.msg.cmd
				if cmd.CommandField == CCancelRQ && cmd.MessageIDBeingRespondedTo == w.msgID {
					w.cancel()
					continue
				}
				if cmd.CommandField == CStoreRSP && w.rsp != nil {
					select {
					case w.rsp <- cmd:
					case <-w.stopCh:
						w.result <- nil
						return
					}
					continue
				}
			}
			// Not ours: hold it (and stop reading) until the operation ends.
			<-w.stopCh
			w.result <- &e
			return
		case <-w.c.done:
			w.cancel()
			<-w.stopCh
			w.result <- nil
			return
		case <-w.stopCh:
			w.result <- nil
			return
		}
	}
}

// stop ends the watcher and returns any event it held back.
func (w *watcher) stop() *ulEvent {
	close(w.stopCh)
	return <-w.result
}

// identifier decodes a request's identifier, answering a failure if it
// cannot. ok is false when the request has been answered.
func (a *serverAssoc) identifier(m *message, rspField uint16) (*lib.Dataset, bool) {
	if m.dataBytes == nil {
		a.refuse(m, rspField, StatusIdentifierMismatch, "request without an identifier")
		return nil, false
	}
	ds, err := DecodeIdentifier(m.dataBytes, m.ctx.ts)
	if err != nil {
		a.c.log.Warn("dimse: undecodable identifier", "cmd", m.cmd.String(), "err", err)
		a.refuse(m, rspField, StatusIdentifierMismatch, "identifier cannot be decoded")
		return nil, false
	}
	return ds, true
}

func (a *serverAssoc) find(m *message) *ulEvent {
	cmd := m.cmd
	if a.s.o.Find == nil || !isFindClass(m.ctx.abstract) || cmd.AffectedSOPClassUID != m.ctx.abstract {
		a.refuse(m, CFindRSP, StatusSOPClassNotSupported, "C-FIND on a context that is not a supported query model")
		return nil
	}
	ident, ok := a.identifier(m, CFindRSP)
	if !ok {
		return nil
	}
	level := strings.ToUpper(stringValue(ident, tag.QueryRetrieveLevel))
	req := &QueryRequest{Association: a.info, MessageID: cmd.MessageID, Priority: cmd.Priority,
		SOPClassUID: cmd.AffectedSOPClassUID, Level: level, Identifier: ident}
	if err := checkLevel(m.ctx.abstract, level); err != nil {
		a.refuse(m, CFindRSP, StatusIdentifierMismatch, err.Error())
		return nil
	}
	octx, cancel := context.WithCancel(a.ctx)
	defer cancel()
	w := a.watch(cmd.MessageID, cancel, false)
	final := &Status{Code: StatusSuccess}
	n := 0
	func() {
		defer func() {
			if p := recover(); p != nil {
				final = NewStatus(StatusUnableToProcess, fmt.Sprintf("find handler panic: %v", p))
				a.c.log.Error("dimse: find handler panic", "panic", p)
			}
		}()
		for ds, err := range a.s.o.Find.Find(octx, req) {
			if octx.Err() != nil {
				break
			}
			if err != nil {
				final = statusFromError(err, StatusUnableToProcess)
				a.c.log.Warn("dimse: C-FIND failed", "err", err)
				break
			}
			b, err := EncodeIdentifier(withLevel(ds, level), m.ctx.ts)
			if err != nil {
				final = NewStatus(StatusUnableToProcess, "cannot encode a match")
				a.c.log.Error("dimse: encoding a C-FIND match", "err", err)
				break
			}
			if a.respond(m.ctx, response(cmd, CFindRSP, &Status{Code: StatusPending}), b) != nil {
				break
			}
			n++
		}
	}()
	if a.c.Err() == nil && octx.Err() != nil && a.ctx.Err() == nil {
		final = &Status{Code: StatusCancel}
	}
	held := w.stop()
	if a.c.Err() == nil {
		a.respond(m.ctx, response(cmd, CFindRSP, final), nil)
		a.c.log.Info("dimse: C-FIND", "level", level, "matches", n, "status", fmt.Sprintf("0x%04X", final.Code))
	}
	return held
}

// checkLevel checks the Query/Retrieve Level against the model.
func checkLevel(model, level string) error {
	patientStudyOnly := model == PatientStudyOnlyFind || model == PatientStudyOnlyMove || model == PatientStudyOnlyGet
	switch level {
	case "STUDY":
		return nil
	case "SERIES", "IMAGE":
		if patientStudyOnly {
			return fmt.Errorf("%s level in the Patient/Study Only model", level)
		}
		return nil
	case "PATIENT":
		if model == StudyRootFind || model == StudyRootMove || model == StudyRootGet {
			return errors.New("PATIENT level in the Study Root model")
		}
		return nil
	case "":
		return errors.New("no Query/Retrieve Level (0008,0052)")
	}
	return fmt.Errorf("unknown Query/Retrieve Level %q", level)
}
