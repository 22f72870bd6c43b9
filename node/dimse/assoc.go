package dimse

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// This file is the upper layer provider for one association (PS3.8 9): a
// reader goroutine that reads PDUs, drives the state machine (fsm.go) and
// assembles DIMSE messages, and the local primitives (accept, reject, send,
// release, abort) the server and client call. Memory is bounded: one PDU
// buffer of the size we advertised, one send buffer of at most
// maxSendBuffer, a command set of at most maxCommandLen and a non-streamed
// data set of at most maxIdentifierLen; C-STORE data sets are streamed
// through a synchronous pipe, never held.

const (
	// maxIdentifierLen caps a data set that is not streamed: identifiers of
	// C-FIND, C-MOVE and C-GET, and the data set of a response.
	maxIdentifierLen = 4 << 20
	// maxSendBuffer caps the PDUs we send, whatever the peer accepts.
	maxSendBuffer = 1 << 20
)

// pctx is an accepted presentation context.
type pctx struct {
	id       byte
	abstract string
	ts       string
	// roles of the association requestor for this SOP class (PS3.7
	// D.3.3.4): default SCU only.
	reqSCU, reqSCP bool
}

type evKind int

const (
	evAssociateRQ evKind = iota + 1
	evAssociateAC
	evAssociateRJ
	evMessage
	evReleaseRQ
)

type ulEvent struct {
	kind evKind
	rq   *AssociateRQ
	ac   *AssociateAC
	rj   *AssociateRJ
	msg  *message
}

// message is a received DIMSE message.
type message struct {
	ctx *pctx
	cmd *Command
	// data is the streamed data set (C-STORE-RQ and unknown commands): it
	// must be read to EOF or closed (closeData) before the next message
	// can be received.
	data *io.PipeReader
	// dataDone is closed when the last fragment of a streamed data set has
	// arrived (or the association ended).
	dataDone chan struct{}
	// dataBytes is a data set read whole (identifiers), nil if none.
	dataBytes []byte
}

// closeData abandons the rest of a streamed data set; the reader goroutine
// discards it.
func (m *message) closeData() {
	if m.data != nil {
		m.data.CloseWithError(errDataAbandoned)
	}
}

var errDataAbandoned = errors.New("dimse: data set abandoned by its receiver")

type ulConfig struct {
	maxPDU    uint32 // the largest P-DATA-TF we accept (advertised)
	timeouts  Timeouts
	log       *slog.Logger
	requestor bool
}

// ul is one association's upper layer.
type ul struct {
	nc  net.Conn
	br  *bufio.Reader
	cfg ulConfig
	log *slog.Logger

	mu       sync.Mutex
	st       state
	ctxs     map[byte]*pctx // accepted contexts, set before Sta6
	maxSend  uint32         // peer's maximum P-DATA-TF length (capped)
	rq       *AssociateRQ   // what we requested (requestor)
	midMsg   bool           // a message is partly received
	artimEnd time.Time      // ARTIM deadline while in Sta2/Sta13

	wmu     sync.Mutex // one PDU write at a time
	msgMu   sync.Mutex // one outgoing message at a time
	sendBuf []byte

	ev         chan ulEvent
	decided    chan struct{} // closed once we answered the A-ASSOCIATE-RQ
	decideOnce sync.Once
	done       chan struct{} // closed when the association is over
	errOnce    sync.Once
	err        error
	readerDone chan struct{}
}

func newUL(nc net.Conn, cfg ulConfig) *ul {
	if cfg.log == nil {
		cfg.log = slog.New(slog.DiscardHandler)
	}
	return &ul{
		nc:         nc,
		br:         bufio.NewReaderSize(nc, 32<<10),
		cfg:        cfg,
		log:        cfg.log,
		ev:         make(chan ulEvent),
		decided:    make(chan struct{}),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}
}

// finish ends the association for its users with err (the first one wins).
func (c *ul) finish(err error) {
	c.errOnce.Do(func() {
		c.err = err
		close(c.done)
	})
}

func (c *ul) decide() { c.decideOnce.Do(func() { close(c.decided) }) }

// Err returns why the association ended (nil while it lives).
func (c *ul) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// step applies event e to the state machine and returns the action.
func (c *ul) step(e event) (action, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stepLocked(e)
}

func (c *ul) stepLocked(e event) (action, error) {
	a, next, ok := transition(c.st, e, c.cfg.requestor)
	if !ok {
		return noAction, fmt.Errorf("dimse: %v not allowed in state %v", e, c.st)
	}
	if next == c.st {
		return a, nil
	}
	if next == sta13 || next == sta2 {
		c.artimEnd = time.Now().Add(c.cfg.timeouts.ARTIM)
	}
	c.st = next
	// A read blocked under the old state's deadline must wake up by the
	// new one (e.g. no deadline while awaiting our A-ASSOCIATE response,
	// the idle timeout once accepted, ARTIM once closing).
	c.nc.SetReadDeadline(c.readDeadlineLocked())
	return a, nil
}

func (c *ul) state() state {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

// writePDU writes one encoded PDU with the DIMSE timeout.
func (c *ul) writePDU(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(c.cfg.timeouts.DIMSE))
	_, err := c.nc.Write(b)
	return err
}

func (c *ul) sendPDU(p PDU) error {
	b, err := p.Encode()
	if err != nil {
		return err
	}
	return c.writePDU(b)
}

// start runs the reader goroutine: in Sta2 (acceptor, after AE-5) or Sta5
// (requestor, after AE-2).
func (c *ul) start() {
	go c.readLoop()
}

// touch re-arms the read deadline from now (after we sent something).
func (c *ul) touch() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st == sta6 && !c.midMsg {
		c.nc.SetReadDeadline(c.readDeadlineLocked())
	}
}

// readDeadline is the deadline for the next PDU read in the current state.
func (c *ul) readDeadline() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readDeadlineLocked()
}

func (c *ul) readDeadlineLocked() time.Time {
	t := c.cfg.timeouts
	switch c.st {
	case sta2, sta13:
		return c.artimEnd
	case sta5, sta7, sta10, sta11:
		return time.Now().Add(t.ARTIM)
	case sta3, sta8, sta9, sta12:
		return time.Time{} // waiting for our own user
	}
	if c.midMsg {
		return time.Now().Add(t.DIMSE)
	}
	if t.Idle < 0 {
		return time.Time{}
	}
	return time.Now().Add(t.Idle)
}

func (c *ul) readLoop() {
	defer close(c.readerDone)
	defer c.nc.Close()
	var buf []byte
	as := &assembler{c: c}
	defer as.fail(ErrClosed)
	for {
		c.nc.SetReadDeadline(c.readDeadline())
		p, nb, err := ReadPDU(c.br, c.cfg.maxPDU, buf)
		buf = nb
		if err != nil {
			if c.onReadError(err, as) {
				return
			}
			continue
		}
		if stop := c.onPDU(p, as); stop {
			return
		}
	}
}

// onReadError handles a failed read; it returns true when the reader must stop.
func (c *ul) onReadError(err error, as *assembler) bool {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded):
		st := c.state()
		if st == sta2 || st == sta13 {
			c.step(evt18) // AA-2: close
			c.finish(fmt.Errorf("%w: ARTIM expired in %v", ErrTimeout, st))
			as.fail(ErrTimeout)
			return true
		}
		detail := fmt.Sprintf("no PDU for the %s timeout", map[bool]string{true: "DIMSE", false: "idle/ACSE"}[c.midMsgNow()])
		c.log.Warn("dimse: timeout, aborting", "state", st.String(), "detail", detail)
		c.abortLocal(AbortSourceUser, AbortReasonNotSpecified, fmt.Errorf("%w: %s", ErrTimeout, detail))
		as.fail(ErrTimeout)
		return false // wait in Sta13 for the close
	case errors.Is(err, ErrPDU):
		reason := abortReasonOf(err)
		a, _ := c.step(evt19)
		c.log.Warn("dimse: malformed PDU, aborting", "err", err)
		switch a {
		case aa1, aa7, aa8:
			c.sendPDU(&Abort{Source: AbortSourceProvider, Reason: reason})
		}
		c.finish(&AbortError{Source: AbortSourceProvider, Reason: reason, Local: true, Detail: err.Error()})
		as.fail(err)
		// The rest of the stream cannot be framed: discard it until the
		// peer closes (or ARTIM), so that closing does not reset the
		// connection before the peer has read our A-ABORT.
		c.nc.SetReadDeadline(time.Now().Add(c.cfg.timeouts.ARTIM))
		io.Copy(io.Discard, c.br)
		return true
	default:
		a, _ := c.step(evt17)
		if a == ar5 {
			c.finish(ErrReleased) // normal end after release, reject or abort
		} else {
			c.finish(ErrClosed)
		}
		as.fail(ErrClosed)
		return true
	}
}

func (c *ul) midMsgNow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.midMsg
}

// deliver hands an event to the user side.
func (c *ul) deliver(e ulEvent) bool {
	select {
	case c.ev <- e:
		return true
	case <-c.done:
		return false
	}
}

// onPDU handles one received PDU; it returns true when the reader must stop.
func (c *ul) onPDU(p PDU, as *assembler) bool {
	switch p := p.(type) {
	case *AssociateRQ:
		a, _ := c.step(evt6)
		switch a {
		case ae6:
			c.deliver(ulEvent{kind: evAssociateRQ, rq: p})
			// Read nothing more until we have answered: what a peer sends
			// before our A-ASSOCIATE-AC is read in the state it meant.
			select {
			case <-c.decided:
			case <-c.done:
			}
			return false
		}
		return c.unexpected(a, "A-ASSOCIATE-RQ", as)
	case *AssociateAC:
		a, _ := c.step(evt3)
		if a == ae3 {
			if err := c.setAccepted(p); err != nil {
				c.abortLocal(AbortSourceProvider, AbortReasonInvalidParamValue, err)
				return false
			}
			c.deliver(ulEvent{kind: evAssociateAC, ac: p})
			return false
		}
		return c.unexpected(a, "A-ASSOCIATE-AC", as)
	case *AssociateRJ:
		a, _ := c.step(evt4)
		if a == ae4 {
			c.finish(&RejectError{*p})
			c.deliver(ulEvent{kind: evAssociateRJ, rj: p})
			return true
		}
		return c.unexpected(a, "A-ASSOCIATE-RJ", as)
	case *PDataTF:
		a, _ := c.step(evt10)
		switch a {
		case dt2, ar6:
			if err := as.pdata(p); err != nil {
				c.log.Warn("dimse: protocol error, aborting", "err", err)
				c.abortLocal(AbortSourceProvider, AbortReasonInvalidParamValue, err)
				as.fail(err)
			}
			return false
		}
		return c.unexpected(a, "P-DATA-TF", as)
	case *ReleaseRQ:
		a, _ := c.step(evt12)
		switch a {
		case ar2:
			if c.midMsgNow() {
				err := errors.New("A-RELEASE-RQ in the middle of a message")
				c.abortLocal(AbortSourceProvider, AbortReasonUnexpectedPDU, err)
				as.fail(err)
				return false
			}
			c.deliver(ulEvent{kind: evReleaseRQ})
			return false
		case ar8: // release collision
			if c.cfg.requestor {
				// Sta9: answer at once (AR-9), then await the RP in Sta11
				if _, err := c.step(evt14); err == nil {
					c.sendPDU(&ReleaseRP{})
				}
			}
			return false
		}
		return c.unexpected(a, "A-RELEASE-RQ", as)
	case *ReleaseRP:
		a, _ := c.step(evt13)
		switch a {
		case ar3:
			c.finish(ErrReleased)
			as.fail(ErrReleased)
			return true
		case ar10: // acceptor side of a collision: now answer (AR-4)
			if _, err := c.step(evt14); err == nil {
				c.sendPDU(&ReleaseRP{})
			}
			c.finish(ErrReleased)
			return false
		}
		return c.unexpected(a, "A-RELEASE-RP", as)
	case *Abort:
		a, _ := c.step(evt16)
		c.finish(&AbortError{Source: p.Source, Reason: p.Reason})
		as.fail(ErrClosed)
		_ = a // AA-2 or AA-3: close
		return true
	}
	return false
}

// unexpected performs the abort actions for a PDU the state does not allow.
func (c *ul) unexpected(a action, what string, as *assembler) bool {
	err := fmt.Errorf("dimse: unexpected %s", what)
	switch a {
	case aa1, aa8:
		c.sendPDU(&Abort{Source: AbortSourceProvider, Reason: AbortReasonUnexpectedPDU})
		c.finish(&AbortError{Source: AbortSourceProvider, Reason: AbortReasonUnexpectedPDU, Local: true, Detail: err.Error()})
		as.fail(err)
	case aa7:
		c.sendPDU(&Abort{Source: AbortSourceProvider, Reason: AbortReasonUnexpectedPDU})
	case aa6: // ignored in Sta13
	}
	return false
}

// abortLocal sends an A-ABORT and ends the association for its users; the
// reader goroutine then waits (ARTIM) for the peer to close.
func (c *ul) abortLocal(source, reason byte, cause error) {
	c.mu.Lock()
	a, err := c.stepLocked(evt15)
	c.mu.Unlock()
	if err != nil {
		// Not allowed (already closing): just end it.
		c.finish(&AbortError{Source: source, Reason: reason, Local: true, Detail: errString(cause)})
		return
	}
	if a == aa1 {
		c.sendPDU(&Abort{Source: source, Reason: reason})
	}
	if a == aa2 {
		c.nc.Close()
	}
	c.finish(&AbortError{Source: source, Reason: reason, Local: true, Detail: errString(cause)})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Abort aborts the association (A-ABORT, service-user) and closes it.
func (c *ul) Abort() {
	c.abortLocal(AbortSourceUser, AbortReasonNotSpecified, errors.New("aborted by the local user"))
	c.closeAfterARTIM()
}

// closeAfterARTIM closes the connection if the reader has not finished by
// the ARTIM deadline.
func (c *ul) closeAfterARTIM() {
	select {
	case <-c.readerDone:
	case <-time.After(c.cfg.timeouts.ARTIM):
		c.nc.Close()
		<-c.readerDone
	}
}

// setAccepted records the accepted contexts and the peer's maximum PDU
// (requestor, on A-ASSOCIATE-AC).
func (c *ul) setAccepted(ac *AssociateAC) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rq == nil {
		return errors.New("A-ASSOCIATE-AC without a request")
	}
	proposed := map[byte]ContextRQ{}
	for _, p := range c.rq.Contexts {
		proposed[p.ID] = p
	}
	roles := map[string]RoleSelection{}
	for _, r := range ac.UserInfo.Roles {
		roles[r.SOPClassUID] = r
	}
	ctxs := map[byte]*pctx{}
	for _, a := range ac.Contexts {
		p, ok := proposed[a.ID]
		if !ok {
			return fmt.Errorf("A-ASSOCIATE-AC answers presentation context %d, which we did not propose", a.ID)
		}
		if a.Result != ResultAcceptance {
			continue
		}
		if !contains(p.TransferSyntaxes, a.TransferSyntax) {
			return fmt.Errorf("A-ASSOCIATE-AC accepts context %d with transfer syntax %q, which we did not propose", a.ID, a.TransferSyntax)
		}
		pc := &pctx{id: a.ID, abstract: p.AbstractSyntax, ts: a.TransferSyntax, reqSCU: true}
		if r, ok := roles[p.AbstractSyntax]; ok {
			// the acceptor's answer to our proposal: roles we may take
			pc.reqSCU, pc.reqSCP = r.SCU && proposedRole(c.rq, p.AbstractSyntax, true), r.SCP && proposedRole(c.rq, p.AbstractSyntax, false)
		}
		ctxs[a.ID] = pc
	}
	c.ctxs = ctxs
	c.maxSend = capSend(ac.UserInfo.MaxPDULength)
	return nil
}

func proposedRole(rq *AssociateRQ, class string, scu bool) bool {
	for _, r := range rq.UserInfo.Roles {
		if r.SOPClassUID == class {
			if scu {
				return r.SCU
			}
			return r.SCP
		}
	}
	return scu // default: requestor is SCU
}

func capSend(peerMax uint32) uint32 {
	if peerMax == 0 || peerMax > maxSendBuffer {
		return maxSendBuffer
	}
	if peerMax < pdvHeaderLen+2 {
		return pdvHeaderLen + 2
	}
	return peerMax
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// accept sends the A-ASSOCIATE-AC (acceptor, in Sta3) with the accepted
// contexts.
func (c *ul) accept(ac *AssociateAC, ctxs map[byte]*pctx, peerMax uint32) error {
	b, err := ac.Encode()
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.ctxs = ctxs
	c.maxSend = capSend(peerMax)
	_, err = c.stepLocked(evt7)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	err = c.writePDU(b)
	c.decide()
	return err
}

// reject sends an A-ASSOCIATE-RJ (acceptor, in Sta3) and lets the reader
// wait for the peer to close.
func (c *ul) reject(rj *AssociateRJ) error {
	if _, err := c.step(evt8); err != nil {
		return err
	}
	err := c.sendPDU(rj)
	c.finish(&RejectError{*rj})
	c.decide()
	return err
}

// releaseResponse answers a received A-RELEASE-RQ (AR-4).
func (c *ul) releaseResponse() error {
	if _, err := c.step(evt14); err != nil {
		return err
	}
	err := c.sendPDU(&ReleaseRP{})
	c.finish(ErrReleased)
	return err
}

// release requests release (requestor) and waits for the A-RELEASE-RP,
// discarding any message that still arrives.
func (c *ul) release(ctx context.Context) error {
	if _, err := c.step(evt11); err != nil {
		if e := c.Err(); e != nil {
			return e
		}
		return err
	}
	if err := c.sendPDU(&ReleaseRQ{}); err != nil {
		c.nc.Close()
		return err
	}
	t := time.NewTimer(c.cfg.timeouts.ARTIM)
	defer t.Stop()
	for {
		select {
		case e := <-c.ev:
			if e.msg != nil {
				e.msg.closeData()
			}
		case <-c.done:
			<-c.readerDone
			if errors.Is(c.err, ErrReleased) {
				return nil
			}
			return c.err
		case <-t.C:
			c.abortLocal(AbortSourceUser, AbortReasonNotSpecified, errors.New("no A-RELEASE-RP"))
			c.closeAfterARTIM()
			return fmt.Errorf("%w: no A-RELEASE-RP within %v; aborted", ErrTimeout, c.cfg.timeouts.ARTIM)
		case <-ctx.Done():
			c.Abort()
			return ctx.Err()
		}
	}
}

// next returns the next event for the user side. timeout <= 0: none.
func (c *ul) next(ctx context.Context, timeout time.Duration) (ulEvent, error) {
	var tc <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		tc = t.C
	}
	select {
	case e := <-c.ev:
		return e, nil
	case <-c.done:
		// an event may have been delivered just before the end
		select {
		case e := <-c.ev:
			return e, nil
		default:
		}
		return ulEvent{}, c.err
	case <-tc:
		return ulEvent{}, ErrTimeout
	case <-ctx.Done():
		return ulEvent{}, ctx.Err()
	}
}

func (c *ul) context(id byte) *pctx {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ctxs[id]
}
