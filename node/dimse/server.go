package dimse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	lib "github.com/suyashkumar/dicom"
)

// EchoHandler answers C-ECHO. A nil error is success.
type EchoHandler interface {
	Echo(ctx context.Context, a *AssociationInfo) error
}

// StoreHandler receives C-STORE data sets. data yields the data set (no
// File Meta Information) in req.TransferSyntaxUID as it arrives; the
// handler must read it to EOF to succeed, and must not keep it after
// returning. ctx ends when the association does. Return nil for success, a
// *Status for a specific status (a warning, or a failure such as
// StatusDuplicateSOPInstance), or any error (answered as
// StatusProcessingFailure, or StatusOutOfResources for ENOSPC). Part10
// turns req and data into a Part 10 file stream.
type StoreHandler interface {
	Store(ctx context.Context, req *StoreRequest, data io.Reader) error
}

// FindHandler answers C-FIND: it yields matching identifiers (each sent as
// a pending response) and stops when ctx ends (C-CANCEL or abort). A
// yielded error ends the query with a failure status (a *Status as is).
type FindHandler interface {
	Find(ctx context.Context, req *QueryRequest) iter.Seq2[*lib.Dataset, error]
}

// MoveHandler answers C-MOVE: it returns the instances that match, which
// the server sends to req.Destination over a sub-association of its own.
type MoveHandler interface {
	Move(ctx context.Context, req *QueryRequest) (*Retrieval, error)
}

// GetHandler answers C-GET: it returns the instances that match, which the
// server sends back on the same association (the requestor must have
// proposed the SCP role for their storage SOP classes).
type GetHandler interface {
	Get(ctx context.Context, req *QueryRequest) (*Retrieval, error)
}

// AssociationInfo describes an accepted association to handlers.
type AssociationInfo struct {
	CallingAE              string
	CalledAE               string
	RemoteAddr             net.Addr
	ImplementationClassUID string
	ImplementationVersion  string
	UserIdentity           *UserIdentity // as proposed, unverified
	Contexts               []Context
}

// Context is a negotiated presentation context.
type Context struct {
	ID             byte
	AbstractSyntax string
	TransferSyntax string
	// RequestorSCU and RequestorSCP are the roles the association
	// requestor may take for the SOP class.
	RequestorSCU, RequestorSCP bool
}

// StoreRequest is a received C-STORE-RQ.
type StoreRequest struct {
	Association             *AssociationInfo
	MessageID               uint16
	Priority                uint16
	SOPClassUID             string
	SOPInstanceUID          string
	TransferSyntaxUID       string
	MoveOriginatorAE        string // set when the store is a C-MOVE sub-operation
	MoveOriginatorMessageID uint16
}

// FileMeta returns the File Meta Information of the instance, for Part10.
func (r *StoreRequest) FileMeta() FileMeta {
	m := FileMeta{MediaStorageSOPClassUID: r.SOPClassUID, MediaStorageSOPInstanceUID: r.SOPInstanceUID,
		TransferSyntaxUID: r.TransferSyntaxUID}
	if r.Association != nil {
		m.SourceAETitle = r.Association.CallingAE
	}
	return m
}

// QueryRequest is a received C-FIND, C-MOVE or C-GET request.
type QueryRequest struct {
	Association *AssociationInfo
	MessageID   uint16
	Priority    uint16
	// SOPClassUID names the information model (e.g. StudyRootFind).
	SOPClassUID string
	// Level is the Query/Retrieve Level (0008,0052): PATIENT, STUDY,
	// SERIES or IMAGE.
	Level      string
	Identifier *lib.Dataset
	// Destination is the C-MOVE destination AE title ("" for C-FIND, C-GET).
	Destination string
}

// Instance is one instance a C-MOVE or C-GET sends.
type Instance struct {
	SOPClassUID       string
	SOPInstanceUID    string
	TransferSyntaxUID string
	// Open returns the instance's bytes: its data set in
	// TransferSyntaxUID or, if Part10, a Part 10 file (whose File Meta
	// Information is read and stripped; empty UID fields above are taken
	// from it). The server closes it.
	Open   func(ctx context.Context) (io.ReadCloser, error)
	Part10 bool
}

// Retrieval is what a C-MOVE or C-GET sends: Count instances (for the
// Number of Remaining Sub-operations) from Instances. A yielded error
// stops the retrieval; what remains is counted as failed.
type Retrieval struct {
	Count     int
	Instances iter.Seq2[Instance, error]
}

// ServerOptions configure a Server.
type ServerOptions struct {
	// AETitle is the server's AE title: associations that call another
	// are rejected (called AE title not recognized).
	AETitle string
	// Allowed lists who may associate; anyone else is rejected (calling
	// AE title not recognized). Empty: nobody.
	Allowed []Caller
	// Destinations are the C-MOVE destinations by AE title; a C-MOVE to
	// another is refused (StatusMoveDestinationUnknown).
	Destinations []Destination
	// MaxPDULength is the largest P-DATA-TF we accept (default
	// DefaultMaxPDULength, bounded by MinPDULength..MaxPDULength).
	MaxPDULength uint32
	// MaxAssociations caps established associations (default 32); more
	// are rejected transiently (local limit exceeded).
	MaxAssociations int
	Timeouts        Timeouts
	Logger          *slog.Logger

	// Handlers. Nil Echo answers success; a nil Store, Find, Move or Get
	// means the service is not offered (its SOP classes are rejected).
	Echo  EchoHandler
	Store StoreHandler
	Find  FindHandler
	Move  MoveHandler
	Get   GetHandler

	// RejectPrivateSOPClasses refuses storage of SOP classes outside the
	// DICOM root (vendors' private classes), which are accepted by default
	// so that instances are stored as sent.
	RejectPrivateSOPClasses bool

	// Observer, if set, sees every association's life and every
	// operation's outcome (metrics, and handlers that work per
	// association, such as a store that groups what one association
	// brought).
	Observer Observer
}

// Observer sees what a Server does. Its methods are called from the
// association's goroutine and must not block.
type Observer interface {
	// Rejected: an A-ASSOCIATE-RQ was answered with an A-ASSOCIATE-RJ.
	Rejected(callingAE, calledAE string, remote net.Addr, reason string)
	// Accepted: an association was established. The same *AssociationInfo
	// is in every request of the association, and in Ended.
	Accepted(a *AssociationInfo)
	// Ended: the association ended; err is nil for a release, else why
	// (an abort, a closed connection, a timeout).
	Ended(a *AssociationInfo, err error)
	// Operation: a request was answered with its final status (command
	// is the request's Command Field: CEchoRQ, CStoreRQ, CFindRQ, CMoveRQ,
	// CGetRQ, or another for a refused one).
	Operation(a *AssociationInfo, command uint16, status uint16)
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("dimse: server closed")

// Server is a DICOM application entity serving C-ECHO, C-STORE, C-FIND,
// C-MOVE and C-GET through its handlers.
type Server struct {
	o      ServerOptions
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	dests  map[string]string

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*ul]struct{}
	active    int // established associations
	wg        sync.WaitGroup
	nextID    atomic.Uint64

	resolve func(context.Context, string) ([]netip.Addr, error)
}

// NewServer checks the options and returns a server.
func NewServer(o ServerOptions) (*Server, error) {
	if err := checkAETitle(o.AETitle); err != nil {
		return nil, fmt.Errorf("dimse: server AE title: %w", err)
	}
	if o.MaxPDULength == 0 {
		o.MaxPDULength = DefaultMaxPDULength
	}
	if o.MaxPDULength < MinPDULength || o.MaxPDULength > MaxPDULength {
		return nil, fmt.Errorf("dimse: max PDU length %d outside %d..%d", o.MaxPDULength, MinPDULength, MaxPDULength)
	}
	if o.MaxAssociations <= 0 {
		o.MaxAssociations = 32
	}
	o.Timeouts = o.Timeouts.withDefaults(true)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	dests := map[string]string{}
	for _, d := range o.Destinations {
		if err := checkAETitle(d.AETitle); err != nil {
			return nil, fmt.Errorf("dimse: destination: %w", err)
		}
		dests[d.AETitle] = d.Addr
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{o: o, log: o.Logger, ctx: ctx, cancel: cancel, dests: dests,
		listeners: map[net.Listener]struct{}{}, conns: map[*ul]struct{}{}, resolve: resolveHost}, nil
}

// Serve accepts connections on l until Close; it returns ErrServerClosed
// then, or the listener's error.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("dimse: accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if c := s.track(nc); c != nil {
			go s.serveConn(c)
		}
	}
}

// ServeConn serves one connection (from a listener of the caller's, e.g.
// TLS) until its association ends.
func (s *Server) ServeConn(nc net.Conn) {
	if c := s.track(nc); c != nil {
		s.serveConn(c)
	}
}

// track registers a new connection, or closes it when the server is closed
// or has too many. Connections still negotiating count too: a flood of
// idle TCP connections must not exhaust memory or file descriptors.
func (s *Server) track(nc net.Conn) *ul {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.conns) >= 2*s.o.MaxAssociations {
		nc.Close()
		return nil
	}
	c := newUL(nc, ulConfig{maxPDU: s.o.MaxPDULength, timeouts: s.o.Timeouts,
		log: s.log.With("assoc", s.nextID.Add(1), "remote", nc.RemoteAddr().String())})
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return c
}

// ListenAndServe listens on addr ("host:port") and
// serves.
func (s *Server) ListenAndServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("dimse: listen on %s: %w", addr, err)
	}
	return s.Serve(l)
}

// Close stops accepting, aborts every association and waits for their
// goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.cancel()
	for l := range s.listeners {
		l.Close()
	}
	conns := make([]*ul, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.abortLocal(AbortSourceUser, AbortReasonNotSpecified, ErrServerClosed)
		c.nc.Close()
	}
	s.wg.Wait()
	return nil
}

// Shutdown stops accepting and waits for associations to end until ctx
// ends, then closes.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

func (s *Server) serveConn(c *ul) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	defer func() {
		if p := recover(); p != nil {
			// a handler bug must not take the node down
			s.log.Error("dimse: panic serving an association", "panic", p)
			c.abortLocal(AbortSourceUser, AbortReasonNotSpecified, fmt.Errorf("internal error: %v", p))
			c.nc.Close()
		}
	}()
	c.mu.Lock()
	c.st = sta1
	c.stepLocked(evt5) // AE-5: ARTIM runs until the A-ASSOCIATE-RQ
	c.mu.Unlock()
	c.start()
	defer func() { <-c.readerDone }()
	e, err := c.next(s.ctx, 0)
	if err != nil || e.kind != evAssociateRQ {
		if err != nil && !errors.Is(err, ErrClosed) {
			c.log.Info("dimse: connection ended before an association", "err", err)
		}
		c.nc.Close()
		return
	}
	rq := e.rq
	remote := c.nc.RemoteAddr()
	ac, ctxs, rj, reason := s.negotiate(rq, remote)
	if rj == nil && !s.acquire() {
		rj, reason = &AssociateRJ{Result: RejectTransient, Source: RejectSourcePresentation, Reason: RejectLocalLimitExceeded},
			fmt.Sprintf("%d associations already", s.o.MaxAssociations)
	}
	if rj != nil {
		c.log.Warn("dimse: association rejected", "calling", rq.CallingAE, "called", rq.CalledAE, "why", reason)
		if s.o.Observer != nil {
			s.o.Observer.Rejected(rq.CallingAE, rq.CalledAE, remote, reason)
		}
		c.reject(rj)
		return
	}
	defer s.releaseSlot()
	if err := c.accept(ac, ctxs, rq.UserInfo.MaxPDULength); err != nil {
		c.log.Warn("dimse: sending A-ASSOCIATE-AC", "err", err)
		c.Abort()
		return
	}
	info := &AssociationInfo{CallingAE: rq.CallingAE, CalledAE: rq.CalledAE, RemoteAddr: remote,
		ImplementationClassUID: rq.UserInfo.ImplementationClassUID, ImplementationVersion: rq.UserInfo.ImplementationVersion,
		UserIdentity: rq.UserInfo.UserIdentity}
	for _, pc := range ctxs {
		info.Contexts = append(info.Contexts, Context{ID: pc.id, AbstractSyntax: pc.abstract, TransferSyntax: pc.ts,
			RequestorSCU: pc.reqSCU, RequestorSCP: pc.reqSCP})
	}
	c.log.Info("dimse: association accepted", "calling", rq.CallingAE, "contexts", len(ctxs))
	actx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-actx.Done():
		}
	}()
	if s.o.Observer != nil {
		s.o.Observer.Accepted(info)
	}
	err = (&serverAssoc{s: s, c: c, info: info, ctx: actx}).loop()
	if s.o.Observer != nil {
		s.o.Observer.Ended(info, err)
	}
}

func (s *Server) acquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active >= s.o.MaxAssociations {
		return false
	}
	s.active++
	return true
}

func (s *Server) releaseSlot() {
	s.mu.Lock()
	s.active--
	s.mu.Unlock()
}

// negotiate decides on an A-ASSOCIATE-RQ: an AC with the accepted
// contexts, or an RJ and why.
func (s *Server) negotiate(rq *AssociateRQ, remote net.Addr) (*AssociateAC, map[byte]*pctx, *AssociateRJ, string) {
	rj := func(result, source, reason byte, why string) (*AssociateAC, map[byte]*pctx, *AssociateRJ, string) {
		return nil, nil, &AssociateRJ{Result: result, Source: source, Reason: reason}, why
	}
	if rq.ProtocolVersion&1 == 0 {
		return rj(RejectPermanent, RejectSourceACSE, RejectACSEProtocolVersionNotSupp, fmt.Sprintf("protocol version 0x%04x", rq.ProtocolVersion))
	}
	if rq.ApplicationContext != ApplicationContextName {
		return rj(RejectPermanent, RejectSourceUser, RejectApplicationContextNotSupp, fmt.Sprintf("application context %q", rq.ApplicationContext))
	}
	if rq.CalledAE != s.o.AETitle {
		return rj(RejectPermanent, RejectSourceUser, RejectCalledAENotRecognized, fmt.Sprintf("called AE title %q is not ours (%q)", rq.CalledAE, s.o.AETitle))
	}
	if !s.allowed(rq.CallingAE, remote) {
		return rj(RejectPermanent, RejectSourceUser, RejectCallingAENotRecognized, fmt.Sprintf("%s@%v is not an allowed caller", rq.CallingAE, remote))
	}
	roles := map[string]RoleSelection{}
	for _, r := range rq.UserInfo.Roles {
		roles[r.SOPClassUID] = r
	}
	ac := &AssociateAC{ProtocolVersion: protocolVersion1, CalledAE: rq.CalledAE, CallingAE: rq.CallingAE,
		ApplicationContext: ApplicationContextName,
		UserInfo: UserInfo{MaxPDULength: s.o.MaxPDULength, ImplementationClassUID: ImplementationClassUID,
			ImplementationVersion: ImplementationVersionName}}
	if rq.UserInfo.AsyncOps != nil {
		ac.UserInfo.AsyncOps = &AsyncOps{Invoked: 1, Performed: 1} // one operation at a time
	}
	ctxs := map[byte]*pctx{}
	seen := map[byte]bool{}
	answered := map[string]bool{}
	for _, p := range rq.Contexts {
		if p.ID%2 == 0 || seen[p.ID] {
			// An answer for it would be ambiguous: refuse the association.
			return rj(RejectPermanent, RejectSourceUser, RejectNoReason, fmt.Sprintf("presentation context ID %d even or repeated", p.ID))
		}
		seen[p.ID] = true
		r, hasRole := roles[p.AbstractSyntax]
		getRole := hasRole && r.SCP && s.o.Get != nil && s.isStorage(p.AbstractSyntax)
		result, ts := s.chooseContext(p, getRole)
		ac.Contexts = append(ac.Contexts, ContextAC{ID: p.ID, Result: result, TransferSyntax: ts})
		if result != ResultAcceptance {
			continue
		}
		pc := &pctx{id: p.ID, abstract: p.AbstractSyntax, ts: ts, reqSCU: true}
		if getRole {
			// C-GET: the requestor stores what we send on this context.
			pc.reqSCU, pc.reqSCP = r.SCU, true
			if !answered[p.AbstractSyntax] {
				ac.UserInfo.Roles = append(ac.UserInfo.Roles, RoleSelection{SOPClassUID: p.AbstractSyntax, SCU: r.SCU, SCP: true})
				answered[p.AbstractSyntax] = true
			}
		}
		ctxs[p.ID] = pc
	}
	return ac, ctxs, nil, ""
}

func (s *Server) isStorage(class string) bool {
	if IsStorageSOPClass(class) {
		return true
	}
	return !s.o.RejectPrivateSOPClasses && isPrivateUID(class) && isUIDSyntax(class)
}

// chooseContext decides one proposed context: the result and the transfer
// syntax. Storage contexts take the first standard transfer syntax the
// requestor proposed (its preference: a modality that proposes JPEG
// Lossless first holds its images so), so that instances are stored as
// sent, except that the retired Explicit VR Big Endian is taken only when
// nothing else is offered. Contexts whose data sets we decode
// (verification, queries) take the first of the uncompressed syntaxes,
// Little Endian preferred likewise.
func (s *Server) chooseContext(p ContextRQ, getRole bool) (byte, string) {
	as := p.AbstractSyntax
	var usable func(string) bool
	switch {
	case as == VerificationSOPClass:
		usable = identifierSyntax
	case isFindClass(as) && s.o.Find != nil, isMoveClass(as) && s.o.Move != nil, isGetClass(as) && s.o.Get != nil:
		usable = identifierSyntax
	case (s.o.Store != nil || getRole) && s.isStorage(as):
		// A storage context serves our C-STORE SCP, or carries C-GET
		// sub-operations when the requestor takes the SCP role for it.
		usable = IsStandardTransferSyntax
	default:
		return ResultAbstractSyntaxNotSupported, ""
	}
	for _, ts := range p.TransferSyntaxes {
		if ts != ExplicitVRBigEndian && usable(ts) {
			return ResultAcceptance, ts
		}
	}
	if contains(p.TransferSyntaxes, ExplicitVRBigEndian) && usable(ExplicitVRBigEndian) {
		return ResultAcceptance, ExplicitVRBigEndian
	}
	return ResultTransferSyntaxNotSupported, ""
}

func (s *Server) allowed(ae string, remote net.Addr) bool {
	var ip netip.Addr
	if ta, ok := remote.(*net.TCPAddr); ok {
		ip = ta.AddrPort().Addr().Unmap()
	} else if ap, err := netip.ParseAddrPort(remote.String()); err == nil {
		ip = ap.Addr().Unmap()
	}
	for _, c := range s.o.Allowed {
		if c.matches(s.ctx, ae, ip, s.resolve) {
			return true
		}
	}
	return false
}
