package dimse

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"
)

// Proposal is a presentation context a client proposes: a SOP class and
// the transfer syntaxes it can use for it, in order of preference.
type Proposal struct {
	AbstractSyntax   string
	TransferSyntaxes []string
	// SCP proposes that we take the SCP role for this (storage) SOP class:
	// the peer may send us C-STORE-RQs for it during a C-GET.
	SCP bool
}

// ClientOptions configure an association a client requests.
type ClientOptions struct {
	CallingAE string // our AE title
	CalledAE  string // the peer's
	Proposals []Proposal
	// MaxPDULength is the largest P-DATA-TF we accept (default
	// DefaultMaxPDULength).
	MaxPDULength uint32
	Timeouts     Timeouts
	Logger       *slog.Logger
	// Store receives the instances a C-GET brings back.
	Store        StoreHandler
	UserIdentity *UserIdentity
}

// Association is an association a client requested. Its operations are
// performed one at a time.
type Association struct {
	c     *ul
	o     ClientOptions
	info  *AssociationInfo
	mu    sync.Mutex
	msgID uint16
}

// NoContextError reports that the peer accepted no presentation context
// for what an operation needs.
type NoContextError struct {
	SOPClassUID       string
	TransferSyntaxUID string // "" if any would do
	Accepted          []string
}

func (e *NoContextError) Error() string {
	if e.TransferSyntaxUID == "" {
		return fmt.Sprintf("dimse: the peer accepted no presentation context for SOP class %s", e.SOPClassUID)
	}
	s := fmt.Sprintf("dimse: the peer accepted no presentation context for SOP class %s in transfer syntax %s", e.SOPClassUID, e.TransferSyntaxUID)
	if len(e.Accepted) > 0 {
		s += fmt.Sprintf(" (it accepts %v for that class)", e.Accepted)
	}
	return s + "; instances are sent as stored, without transcoding: propose that syntax or convert the file first"
}

// Dial connects to addr ("host:port") and requests an association.
func Dial(ctx context.Context, addr string, o ClientOptions) (*Association, error) {
	if err := checkAETitle(o.CallingAE); err != nil {
		return nil, fmt.Errorf("dimse: calling AE title: %w", err)
	}
	if err := checkAETitle(o.CalledAE); err != nil {
		return nil, fmt.Errorf("dimse: called AE title: %w", err)
	}
	if o.MaxPDULength == 0 {
		o.MaxPDULength = DefaultMaxPDULength
	}
	if o.MaxPDULength < MinPDULength || o.MaxPDULength > MaxPDULength {
		return nil, fmt.Errorf("dimse: max PDU length %d outside %d..%d", o.MaxPDULength, MinPDULength, MaxPDULength)
	}
	if len(o.Proposals) == 0 {
		return nil, errors.New("dimse: no presentation context to propose")
	}
	if len(o.Proposals) > maxContexts {
		return nil, fmt.Errorf("dimse: %d presentation contexts proposed, at most %d fit an association", len(o.Proposals), maxContexts)
	}
	o.Timeouts = o.Timeouts.withDefaults(false)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	rq := &AssociateRQ{ProtocolVersion: protocolVersion1, CalledAE: o.CalledAE, CallingAE: o.CallingAE,
		ApplicationContext: ApplicationContextName,
		UserInfo: UserInfo{MaxPDULength: o.MaxPDULength, ImplementationClassUID: ImplementationClassUID,
			ImplementationVersion: ImplementationVersionName, UserIdentity: o.UserIdentity}}
	roles := map[string]bool{}
	for i, p := range o.Proposals {
		rq.Contexts = append(rq.Contexts, ContextRQ{ID: byte(2*i + 1), AbstractSyntax: p.AbstractSyntax, TransferSyntaxes: p.TransferSyntaxes})
		if p.SCP && !roles[p.AbstractSyntax] {
			roles[p.AbstractSyntax] = true
			rq.UserInfo.Roles = append(rq.UserInfo.Roles, RoleSelection{SOPClassUID: p.AbstractSyntax, SCU: false, SCP: true})
		}
	}
	rqb, err := rq.Encode()
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: o.Timeouts.Connect}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dimse: connecting to %s: %w", addr, err)
	}
	c := newUL(nc, ulConfig{maxPDU: o.MaxPDULength, timeouts: o.Timeouts, requestor: true,
		log: o.Logger.With("peer", o.CalledAE+"@"+addr)})
	c.mu.Lock()
	c.st = sta1
	c.stepLocked(evt1) // AE-1
	c.stepLocked(evt2) // AE-2
	c.rq = rq
	c.mu.Unlock()
	if err := c.writePDU(rqb); err != nil {
		nc.Close()
		return nil, fmt.Errorf("dimse: sending A-ASSOCIATE-RQ to %s: %w", addr, err)
	}
	c.start()
	e, err := c.next(ctx, 0) // the reader bounds the wait by ARTIM
	if err != nil {
		if ctx.Err() != nil {
			c.Abort()
		}
		<-c.readerDone
		return nil, fmt.Errorf("dimse: associating with %s@%s: %w", o.CalledAE, addr, err)
	}
	if e.kind != evAssociateAC {
		c.Abort()
		return nil, fmt.Errorf("dimse: associating with %s@%s: unexpected answer", o.CalledAE, addr)
	}
	a := &Association{c: c, o: o, info: &AssociationInfo{CallingAE: o.CallingAE, CalledAE: o.CalledAE,
		RemoteAddr: nc.RemoteAddr(), ImplementationClassUID: e.ac.UserInfo.ImplementationClassUID,
		ImplementationVersion: e.ac.UserInfo.ImplementationVersion}}
	c.mu.Lock()
	for _, pc := range c.ctxs {
		a.info.Contexts = append(a.info.Contexts, Context{ID: pc.id, AbstractSyntax: pc.abstract, TransferSyntax: pc.ts,
			RequestorSCU: pc.reqSCU, RequestorSCP: pc.reqSCP})
	}
	c.mu.Unlock()
	sort.Slice(a.info.Contexts, func(i, j int) bool { return a.info.Contexts[i].ID < a.info.Contexts[j].ID })
	if len(a.info.Contexts) == 0 {
		a.Release(ctx)
		return nil, fmt.Errorf("dimse: %s@%s accepted none of the %d presentation contexts proposed", o.CalledAE, addr, len(rq.Contexts))
	}
	return a, nil
}

// Contexts returns the accepted presentation contexts.
func (a *Association) Contexts() []Context { return append([]Context(nil), a.info.Contexts...) }

// Release releases the association (A-RELEASE) and closes the connection.
func (a *Association) Release(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.c.release(ctx)
}

// Abort aborts the association (A-ABORT) and closes the connection.
func (a *Association) Abort() { a.c.Abort() }

// Err returns why the association ended, or nil while it lives.
func (a *Association) Err() error { return a.c.Err() }

func (a *Association) nextID() uint16 {
	a.msgID++
	if a.msgID == 0 {
		a.msgID = 1
	}
	return a.msgID
}

// pick returns an accepted context for class (in ts, if not "").
func (a *Association) pick(class, ts string, needSCP bool) (*pctx, error) {
	a.c.mu.Lock()
	defer a.c.mu.Unlock()
	var best *pctx
	var accepted []string
	for _, pc := range a.c.ctxs {
		if pc.abstract != class || needSCP && !pc.reqSCP || !needSCP && !pc.reqSCU {
			continue
		}
		accepted = append(accepted, pc.ts)
		if ts != "" && pc.ts != ts {
			continue
		}
		if best == nil || pc.id < best.id {
			best = pc
		}
	}
	if best == nil {
		sort.Strings(accepted)
		return nil, &NoContextError{SOPClassUID: class, TransferSyntaxUID: ts, Accepted: accepted}
	}
	return best, nil
}

// await returns the next message for an operation, within the DIMSE
// timeout. C-STORE-RQs (a C-GET's sub-operations) are served on the way.
func (a *Association) await(ctx context.Context, pc *pctx) (*message, error) {
	return a.awaitFor(ctx, pc, a.c.cfg.timeouts.DIMSE)
}

func (a *Association) awaitFor(ctx context.Context, pc *pctx, timeout time.Duration) (*message, error) {
	for {
		e, err := a.c.next(ctx, timeout)
		if err != nil {
			if errors.Is(err, ErrTimeout) {
				a.c.abortLocal(AbortSourceUser, AbortReasonNotSpecified, errors.New("no response within the DIMSE timeout"))
				return nil, fmt.Errorf("%w: no response within %v; association aborted", ErrTimeout, timeout)
			}
			return nil, err
		}
		switch e.kind {
		case evReleaseRQ:
			// the peer may not release while we wait for a response
			a.c.abortLocal(AbortSourceUser, AbortReasonNotSpecified, errors.New("A-RELEASE-RQ during an operation"))
			return nil, errors.New("dimse: the peer asked to release the association during an operation; aborted")
		case evMessage:
			if e.msg.cmd.CommandField == CStoreRQ {
				a.serveStore(ctx, e.msg)
				continue
			}
			return e.msg, nil
		}
	}
}

// serveStore answers a C-STORE-RQ received during a C-GET.
func (a *Association) serveStore(ctx context.Context, m *message) {
	cmd := m.cmd
	var err error
	r := &eofReader{r: m.data}
	switch {
	case a.o.Store == nil:
		err = NewStatus(StatusSOPClassNotSupported, "no store handler")
	case !m.ctx.reqSCP || cmd.AffectedSOPClassUID != m.ctx.abstract:
		err = NewStatus(StatusSOPClassNotSupported, "C-STORE on a context without the SCP role")
	default:
		req := &StoreRequest{Association: a.info, MessageID: cmd.MessageID, Priority: cmd.Priority,
			SOPClassUID: cmd.AffectedSOPClassUID, SOPInstanceUID: cmd.AffectedSOPInstanceUID,
			TransferSyntaxUID: m.ctx.ts, MoveOriginatorAE: cmd.MoveOriginatorAE, MoveOriginatorMessageID: cmd.MoveOriginatorMessageID}
		err = callStore(ctx, a.o.Store, req, r)
		if err == nil && !r.eof {
			err = errors.New("the store handler returned before reading the whole data set")
		}
	}
	m.closeData()
	select {
	case <-m.dataDone:
	case <-a.c.done:
		return
	}
	rsp := response(cmd, CStoreRSP, statusFromError(err, StatusProcessingFailure))
	rsp.SetString(tAffectedSOPInstanceUID, cmd.AffectedSOPInstanceUID)
	a.c.sendMessage(m.ctx, rsp, nil)
}

// checkResponse checks that m answers request id with command field f.
func checkResponse(m *message, id, f uint16) error {
	if m.cmd.CommandField != f || m.cmd.MessageIDBeingRespondedTo != id {
		return fmt.Errorf("dimse: expected %s to message %d, got %s", commandName(f), id, m.cmd.String())
	}
	return nil
}

// Echo performs a C-ECHO.
func (a *Association) Echo(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	pc, err := a.pick(VerificationSOPClass, "", false)
	if err != nil {
		return err
	}
	id := a.nextID()
	cmd := &Command{}
	cmd.SetUS(tCommandField, CEchoRQ)
	cmd.SetUS(tMessageID, id)
	cmd.SetString(tAffectedSOPClassUID, VerificationSOPClass)
	if err := a.c.sendMessage(pc, cmd, nil); err != nil {
		return err
	}
	m, err := a.await(ctx, pc)
	if err != nil {
		return err
	}
	if err := checkResponse(m, id, CEchoRSP); err != nil {
		return err
	}
	if st := statusOf(m.cmd); st.Category() != Success {
		return st
	}
	return nil
}

// StoreParams describe an instance to store.
type StoreParams struct {
	SOPClassUID       string
	SOPInstanceUID    string
	TransferSyntaxUID string
	Priority          uint16
	// MoveOriginatorAE and MoveOriginatorMessageID are set for a C-MOVE
	// sub-operation.
	MoveOriginatorAE        string
	MoveOriginatorMessageID uint16
}

// Store sends one instance's data set (in p.TransferSyntaxUID, which must
// be accepted for the SOP class: nothing is transcoded). It returns the
// status: a success or warning status with a nil error, or an error (a
// *Status for a failure status).
func (a *Association) Store(ctx context.Context, p StoreParams, data io.Reader) (*Status, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.store(ctx, p, data)
}

func (a *Association) store(ctx context.Context, p StoreParams, data io.Reader) (*Status, error) {
	if !isUIDSyntax(p.SOPInstanceUID) {
		return nil, fmt.Errorf("dimse: SOP Instance UID %q is not a valid UID", p.SOPInstanceUID)
	}
	pc, err := a.pick(p.SOPClassUID, p.TransferSyntaxUID, false)
	if err != nil {
		return nil, err
	}
	id := a.nextID()
	cmd := &Command{}
	cmd.SetUS(tCommandField, CStoreRQ)
	cmd.SetUS(tMessageID, id)
	cmd.SetUS(tPriority, p.Priority)
	cmd.SetString(tAffectedSOPClassUID, p.SOPClassUID)
	cmd.SetString(tAffectedSOPInstanceUID, p.SOPInstanceUID)
	if p.MoveOriginatorAE != "" {
		cmd.SetString(tMoveOriginatorAE, p.MoveOriginatorAE)
		cmd.SetUS(tMoveOriginatorMessageID, p.MoveOriginatorMessageID)
	}
	if p.TransferSyntaxUID == tsDeflatedLE {
		// A deflated stream of odd length gets one NUL byte: fragments
		// must be even (dcmtk refuses others).
		data = &evenReader{r: data}
	}
	if err := a.c.sendMessage(pc, cmd, data); err != nil {
		return nil, err
	}
	m, err := a.await(ctx, pc)
	if err != nil {
		return nil, err
	}
	if err := checkResponse(m, id, CStoreRSP); err != nil {
		return nil, err
	}
	st := statusOf(m.cmd)
	if c := st.Category(); c != Success && c != Warning {
		return st, st
	}
	return st, nil
}

// StorePart10 sends a DICOM Part 10 file: its File Meta Information names
// the transfer syntax, and the data set after it is streamed as it is.
// The SOP Class and Instance UIDs are those of the data set when they are
// near its start (as dcmtk does: some files' File Meta disagrees), else
// those of the File Meta.
func (a *Association) StorePart10(ctx context.Context, r io.Reader) (*Status, error) {
	p, ds, err := Part10Params(r)
	if err != nil {
		return nil, err
	}
	return a.Store(ctx, p, ds)
}

// Part10Params reads a Part 10 stream's File Meta Information and returns
// the StoreParams for it and a reader positioned at its data set.
func Part10Params(r io.Reader) (StoreParams, io.Reader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok || br.Size() < 16<<10 {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	meta, err := ReadFileMeta(br)
	if err != nil {
		return StoreParams{}, nil, err
	}
	p := StoreParams{SOPClassUID: meta.MediaStorageSOPClassUID, SOPInstanceUID: meta.MediaStorageSOPInstanceUID,
		TransferSyntaxUID: meta.TransferSyntaxUID}
	class, inst := peekSOPUIDs(br, meta.TransferSyntaxUID)
	if class != "" {
		p.SOPClassUID = class
	}
	if inst != "" {
		p.SOPInstanceUID = inst
	}
	return p, br, nil
}

// StorageProposals returns one proposal per distinct (SOP class, transfer
// syntax) pair, each in its own context, so that every instance can go as
// stored.
func StorageProposals(instances []StoreParams) []Proposal {
	seen := map[[2]string]bool{}
	var out []Proposal
	for _, m := range instances {
		k := [2]string{m.SOPClassUID, m.TransferSyntaxUID}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, Proposal{AbstractSyntax: k[0], TransferSyntaxes: []string{k[1]}})
	}
	return out
}

// evenReader pads its reader's bytes with one NUL to an even length.
type evenReader struct {
	r    io.Reader
	n    int64
	pad  bool // the NUL is due
	done bool
}

func (e *evenReader) Read(p []byte) (int, error) {
	switch {
	case e.pad:
		if len(p) == 0 {
			return 0, nil
		}
		e.pad, e.done = false, true
		p[0] = 0
		return 1, io.EOF
	case e.done:
		return 0, io.EOF
	}
	n, err := e.r.Read(p)
	e.n += int64(n)
	if err == io.EOF {
		e.done = true
		if e.n%2 == 1 {
			if n < len(p) {
				p[n] = 0
				return n + 1, io.EOF
			}
			e.done, e.pad = false, true
			return n, nil
		}
	}
	return n, err
}
