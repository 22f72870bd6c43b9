package dimse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	lib "github.com/suyashkumar/dicom"
)

// Protocol behaviour of our SCP against misbehaving peers, driven with raw
// PDUs and with our Client.

func rawDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

func mustEncode(t testing.TB, p PDU) []byte {
	t.Helper()
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readPDU(t *testing.T, c net.Conn) PDU {
	t.Helper()
	p, _, err := ReadPDU(c, MaxPDULength, nil)
	if err != nil {
		t.Fatalf("reading a PDU: %v", err)
	}
	return p
}

// expectClosed waits for the server to close the connection.
func expectClosed(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("connection not closed within %v: %v", within, err)
	}
}

func echoRQ(calling, called string) *AssociateRQ {
	return &AssociateRQ{ProtocolVersion: 1, CalledAE: called, CallingAE: calling, ApplicationContext: ApplicationContextName,
		Contexts: []ContextRQ{{ID: 1, AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{ImplicitVRLittleEndian}}},
		UserInfo: UserInfo{MaxPDULength: 16384, ImplementationClassUID: "1.2.3"}}
}

func TestServerRejections(t *testing.T) {
	_, addr := startServer(t, ServerOptions{Allowed: mustCallers(t, "SCU@127.0.0.1"), Timeouts: Timeouts{ARTIM: 500 * time.Millisecond}})
	for _, tc := range []struct {
		name                   string
		rq                     *AssociateRQ
		result, source, reason byte
	}{
		{"unknown calling AE", echoRQ("OTHER", "MEDMESH"), RejectPermanent, RejectSourceUser, RejectCallingAENotRecognized},
		{"wrong called AE", echoRQ("SCU", "ELSEWHERE"), RejectPermanent, RejectSourceUser, RejectCalledAENotRecognized},
		{"application context", func() *AssociateRQ { r := echoRQ("SCU", "MEDMESH"); r.ApplicationContext = "1.2.3"; return r }(), RejectPermanent, RejectSourceUser, RejectApplicationContextNotSupp},
		{"protocol version", func() *AssociateRQ { r := echoRQ("SCU", "MEDMESH"); r.ProtocolVersion = 2; return r }(), RejectPermanent, RejectSourceACSE, RejectACSEProtocolVersionNotSupp},
		{"repeated context ID", func() *AssociateRQ {
			r := echoRQ("SCU", "MEDMESH")
			r.Contexts = append(r.Contexts, r.Contexts[0])
			return r
		}(), RejectPermanent, RejectSourceUser, RejectNoReason},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawDial(t, addr)
			c.Write(mustEncode(t, tc.rq))
			rj, ok := readPDU(t, c).(*AssociateRJ)
			if !ok || *rj != (AssociateRJ{Result: tc.result, Source: tc.source, Reason: tc.reason}) {
				t.Fatalf("got %#v", rj)
			}
			expectClosed(t, c, 10*time.Second) // after ARTIM at most
		})
	}

}

// TestServerMaxAssociations: the second concurrent association is refused,
// transiently; once the first is released, a new one is accepted.
func TestServerMaxAssociations(t *testing.T) {
	_, addr := startServer(t, ServerOptions{Allowed: mustCallers(t, "SCU@127.0.0.1"), MaxAssociations: 1})
	ctx := context.Background()
	o := ClientOptions{CallingAE: "SCU", CalledAE: "MEDMESH", Proposals: []Proposal{{AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{ImplicitVRLittleEndian}}}}
	a, err := Dial(ctx, addr, o)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Dial(ctx, addr, o)
	var rj *RejectError
	if !errors.As(err, &rj) || rj.Result != RejectTransient || rj.Source != RejectSourcePresentation || rj.Reason != RejectLocalLimitExceeded {
		t.Fatalf("second association: %v", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		a, err = Dial(ctx, addr, o)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	a.Release(ctx)
}

func TestServerContextNegotiation(t *testing.T) {
	store := newMemStore()
	_, addr := startServer(t, ServerOptions{Allowed: mustCallers(t, "SCU@*"), Store: store, Timeouts: Timeouts{ARTIM: 500 * time.Millisecond}})
	c := rawDial(t, addr)
	rq := echoRQ("SCU", "MEDMESH")
	rq.Contexts = []ContextRQ{
		{ID: 1, AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{"1.2.840.10008.1.2.4.50", ImplicitVRLittleEndian}},
		{ID: 3, AbstractSyntax: CTImageStorage, TransferSyntaxes: []string{ExplicitVRBigEndian, "1.2.840.10008.1.2.4.70", ExplicitVRLittleEndian}},
		{ID: 5, AbstractSyntax: CTImageStorage, TransferSyntaxes: []string{ExplicitVRBigEndian}},
		{ID: 7, AbstractSyntax: MRImageStorage, TransferSyntaxes: []string{"1.2.840.113619.5.2"}},
		{ID: 9, AbstractSyntax: StudyRootFind, TransferSyntaxes: []string{ExplicitVRLittleEndian}},
		{ID: 11, AbstractSyntax: "1.3.12.2.1107.5.9.1", TransferSyntaxes: []string{ExplicitVRLittleEndian}},
		{ID: 13, AbstractSyntax: "1.2.840.10008.1.20.1", TransferSyntaxes: []string{ImplicitVRLittleEndian}},
	}
	rq.UserInfo.AsyncOps = &AsyncOps{Invoked: 5, Performed: 5}
	c.Write(mustEncode(t, rq))
	ac, ok := readPDU(t, c).(*AssociateAC)
	if !ok {
		t.Fatal("no A-ASSOCIATE-AC")
	}
	want := []ContextAC{
		{ID: 1, Result: ResultAcceptance, TransferSyntax: ImplicitVRLittleEndian},
		{ID: 3, Result: ResultAcceptance, TransferSyntax: "1.2.840.10008.1.2.4.70"}, // the first proposed, Big Endian last
		{ID: 5, Result: ResultAcceptance, TransferSyntax: ExplicitVRBigEndian},
		{ID: 7, Result: ResultTransferSyntaxNotSupported},
		{ID: 9, Result: ResultAbstractSyntaxNotSupported},                          // no Find handler
		{ID: 11, Result: ResultAcceptance, TransferSyntax: ExplicitVRLittleEndian}, // a private storage class
		{ID: 13, Result: ResultAbstractSyntaxNotSupported},
	}
	if fmt.Sprint(ac.Contexts) != fmt.Sprint(want) {
		t.Fatalf("contexts\n got %v\nwant %v", ac.Contexts, want)
	}
	if ac.UserInfo.MaxPDULength != DefaultMaxPDULength || ac.UserInfo.ImplementationClassUID != ImplementationClassUID ||
		ac.UserInfo.AsyncOps == nil || *ac.UserInfo.AsyncOps != (AsyncOps{1, 1}) {
		t.Fatalf("user information: %+v", ac.UserInfo)
	}
	c.Write(mustEncode(t, &ReleaseRQ{}))
	if _, ok := readPDU(t, c).(*ReleaseRP); !ok {
		t.Fatal("no A-RELEASE-RP")
	}
	expectClosed(t, c, 10*time.Second)
}

// TestServerProtocolErrors: malformed and unexpected PDUs get an A-ABORT
// (service-provider, with the reason) and the connection closes.
func TestServerProtocolErrors(t *testing.T) {
	_, addr := startServer(t, ServerOptions{Allowed: mustCallers(t, "SCU@*"), Store: newMemStore(), MaxPDULength: 16384, Timeouts: Timeouts{ARTIM: 500 * time.Millisecond}})
	associate := func(t *testing.T) net.Conn {
		c := rawDial(t, addr)
		rq := echoRQ("SCU", "MEDMESH")
		rq.Contexts = append(rq.Contexts, ContextRQ{ID: 3, AbstractSyntax: CTImageStorage, TransferSyntaxes: []string{ExplicitVRLittleEndian}})
		c.Write(mustEncode(t, rq))
		if _, ok := readPDU(t, c).(*AssociateAC); !ok {
			t.Fatal("not accepted")
		}
		return c
	}
	pdata := func(items ...PDV) []byte { return mustEncode(t, &PDataTF{Items: items}) }
	echoCmd, _ := sampleCommands()["C-ECHO-RQ"].Encode()
	storeCmd, _ := sampleCommands()["C-STORE-RQ"].Encode()
	for _, tc := range []struct {
		name       string
		associated bool
		send       []byte
		reason     byte
	}{
		{"unknown PDU type before association", false, []byte{0x09, 0, 0, 0, 0, 4, 0, 0, 0, 0}, AbortReasonUnrecognizedPDU},
		{"P-DATA before association", false, pdata(PDV{Context: 1, Command: true, Last: true, Data: echoCmd}), AbortReasonUnexpectedPDU},
		{"P-DATA over the maximum length", true, append([]byte{4, 0, 0, 0, 0x40, 0x01}, make([]byte, 16385)...), AbortReasonInvalidParamValue},
		{"P-DATA of 4 GiB announced", true, []byte{4, 0, 0xFF, 0xFF, 0xFF, 0xFF}, AbortReasonInvalidParamValue},
		{"second A-ASSOCIATE-RQ", true, mustEncode(t, echoRQ("SCU", "MEDMESH")), AbortReasonUnexpectedPDU},
		{"PDV on a context never accepted", true, pdata(PDV{Context: 5, Command: true, Last: true, Data: echoCmd}), AbortReasonInvalidParamValue},
		{"garbage command set", true, pdata(PDV{Context: 1, Command: true, Last: true, Data: []byte{1, 2, 3}}), AbortReasonInvalidParamValue},
		{"data set without a command", true, pdata(PDV{Context: 3, Last: true, Data: []byte{8, 0}}), AbortReasonInvalidParamValue},
		{"command while a data set is due", true, append(pdata(PDV{Context: 3, Command: true, Last: true, Data: storeCmd}),
			pdata(PDV{Context: 3, Command: true, Last: true, Data: storeCmd})...), AbortReasonInvalidParamValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c net.Conn
			if tc.associated {
				c = associate(t)
			} else {
				c = rawDial(t, addr)
			}
			c.Write(tc.send)
			ab, ok := readPDU(t, c).(*Abort)
			if !ok || ab.Source != AbortSourceProvider || ab.Reason != tc.reason {
				t.Fatalf("got %#v, want A-ABORT reason %d", ab, tc.reason)
			}
			expectClosed(t, c, 10*time.Second)
		})
	}
}

func TestServerTimers(t *testing.T) {
	_, addr := startServer(t, ServerOptions{Allowed: mustCallers(t, "SCU@*"),
		Timeouts: Timeouts{ARTIM: 300 * time.Millisecond, Idle: 300 * time.Millisecond, DIMSE: 300 * time.Millisecond}})
	// ARTIM: a connection that never sends an A-ASSOCIATE-RQ is closed.
	c := rawDial(t, addr)
	start := time.Now()
	expectClosed(t, c, 10*time.Second)
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("closed after %v, before ARTIM", d)
	}
	// Idle: an association with nothing to say is aborted.
	c = rawDial(t, addr)
	c.Write(mustEncode(t, echoRQ("SCU", "MEDMESH")))
	readPDU(t, c)
	if ab, ok := readPDU(t, c).(*Abort); !ok || ab.Source != AbortSourceUser {
		t.Fatalf("idle association: %#v", ab)
	}
	expectClosed(t, c, 10*time.Second)
	// DIMSE: a message left half-sent is aborted.
	c = rawDial(t, addr)
	c.Write(mustEncode(t, echoRQ("SCU", "MEDMESH")))
	readPDU(t, c)
	echoCmd, _ := sampleCommands()["C-ECHO-RQ"].Encode()
	c.Write(mustEncode(t, &PDataTF{Items: []PDV{{Context: 1, Command: true, Data: echoCmd[:10]}}}))
	if _, ok := readPDU(t, c).(*Abort); !ok {
		t.Fatal("half a message: no A-ABORT")
	}
}

// slowReader yields n bytes of a synthetic data set, then fails if fail.
type genReader struct {
	n    int64
	fail bool
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.n <= 0 {
		if g.fail {
			return 0, errors.New("disk read error")
		}
		return 0, io.EOF
	}
	k := min(int64(len(p)), g.n)
	for i := range p[:k] {
		p[i] = byte(i)
	}
	g.n -= k
	return int(k), nil
}

type countStore struct {
	bytes  atomic.Int64
	errs   atomic.Int64
	peak   atomic.Uint64
	result func(*StoreRequest) error
	noRead bool
}

func (s *countStore) Store(ctx context.Context, req *StoreRequest, r io.Reader) error {
	if s.noRead {
		return nil
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		s.bytes.Add(int64(n))
		if s.bytes.Load()%(8<<20) < int64(len(buf)) {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > s.peak.Load() {
				s.peak.Store(m.HeapInuse)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			s.errs.Add(1)
			return err
		}
	}
	if s.result != nil {
		return s.result(req)
	}
	return nil
}

func storeClient(t *testing.T, addr string) *Association {
	t.Helper()
	a, err := Dial(context.Background(), addr, ClientOptions{CallingAE: "SCU", CalledAE: "MEDMESH",
		Proposals: []Proposal{{AbstractSyntax: CTImageStorage, TransferSyntaxes: []string{ExplicitVRLittleEndian}},
			{AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{ImplicitVRLittleEndian}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Abort() })
	return a
}

var ctParams = StoreParams{SOPClassUID: CTImageStorage, SOPInstanceUID: "1.2.3.4", TransferSyntaxUID: ExplicitVRLittleEndian}

// TestStoreStreamsInBoundedMemory: a 256 MiB data set goes through the
// SCP without the heap growing with it.
func TestStoreStreamsInBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	s := &countStore{}
	_, addr := startServer(t, ServerOptions{Allowed: mustCallers(t, "SCU@*"), Store: s})
	a := storeClient(t, addr)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	const size = 256 << 20
	st, err := a.Store(context.Background(), ctParams, &genReader{n: size})
	if err != nil || st.Code != StatusSuccess || s.bytes.Load() != size {
		t.Fatalf("%v %v, %d bytes stored", st, err, s.bytes.Load())
	}
	if grown := int64(s.peak.Load()) - int64(before.HeapInuse); grown > 32<<20 {
		t.Fatalf("heap grew by %d MiB while streaming 256 MiB", grown>>20)
	}
	t.Logf("heap in use: %d MiB before, %d MiB peak while streaming", before.HeapInuse>>20, s.peak.Load()>>20)
}

func TestStoreOutcomes(t *testing.T) {
	s := &countStore{}
	_, addr := startServer(t, ServerOptions{Allowed: mustCallers(t, "SCU@*"), Store: s})
	ctx := context.Background()

	// The handler's status reaches the client, with its comment.
	s.result = func(*StoreRequest) error { return NewStatus(StatusOutOfResources, "quota exceeded") }
	a := storeClient(t, addr)
	st, err := a.Store(ctx, ctParams, &genReader{n: 1000})
	var se *Status
	if !errors.As(err, &se) || se.Code != StatusOutOfResources || se.Comment != "quota exceeded" || st.Code != StatusOutOfResources {
		t.Fatalf("failure status: %v %v", st, err)
	}
	// A warning is a success with a status.
	s.result = func(*StoreRequest) error { return NewStatus(StatusCoercion, "coerced") }
	if st, err := a.Store(ctx, ctParams, &genReader{n: 1000}); err != nil || st.Code != StatusCoercion {
		t.Fatalf("warning: %v %v", st, err)
	}
	// A handler that returns before reading everything fails the store.
	s.result, s.noRead = nil, true
	if _, err := a.Store(ctx, ctParams, &genReader{n: 300 << 10}); !errors.As(err, &se) || se.Code != StatusProcessingFailure {
		t.Fatalf("unread data set: %v", err)
	}
	s.noRead = false
	// The association is still usable.
	if err := a.Echo(ctx); err != nil {
		t.Fatal(err)
	}
	// An empty data set is refused before anything is sent.
	if _, err := a.Store(ctx, ctParams, bytes.NewReader(nil)); err == nil {
		t.Fatal("empty data set sent")
	}
	// A SOP class or syntax not negotiated fails clearly, nothing sent.
	_, err = a.Store(ctx, StoreParams{SOPClassUID: CTImageStorage, SOPInstanceUID: "1.2", TransferSyntaxUID: ImplicitVRLittleEndian}, &genReader{n: 10})
	var nc *NoContextError
	if !errors.As(err, &nc) || nc.Accepted[0] != ExplicitVRLittleEndian {
		t.Fatalf("syntax not negotiated: %v", err)
	}
	if err := a.Echo(ctx); err != nil {
		t.Fatal(err)
	}
	// A source that fails mid-way aborts the association; the handler
	// sees an error and stores nothing.
	errsBefore := s.errs.Load()
	if _, err := a.Store(ctx, ctParams, &genReader{n: 1 << 20, fail: true}); err == nil {
		t.Fatal("failing source: no error")
	}
	if a.Err() == nil {
		t.Fatal("association not aborted after a partial data set")
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.errs.Load() == errsBefore && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.errs.Load() == errsBefore {
		t.Fatal("the handler did not see the data set fail")
	}
}

// blockingFind never yields, until its context ends.
type blockingFind struct{ cancelled chan struct{} }

func (b blockingFind) Find(ctx context.Context, req *QueryRequest) iter.Seq2[*lib.Dataset, error] {
	return func(yield func(*lib.Dataset, error) bool) {
		<-ctx.Done()
		close(b.cancelled)
	}
}

// TestClientDIMSETimeout: no response within the DIMSE timeout aborts the
// association and tells the caller; the SCP's handler sees its context end.
func TestClientDIMSETimeout(t *testing.T) {
	bf := blockingFind{cancelled: make(chan struct{})}
	_, addr := startServer(t, ServerOptions{Allowed: mustCallers(t, "SCU@*"), Find: bf})
	a, err := Dial(context.Background(), addr, ClientOptions{CallingAE: "SCU", CalledAE: "MEDMESH", Timeouts: Timeouts{DIMSE: 300 * time.Millisecond},
		Proposals: []Proposal{{AbstractSyntax: StudyRootFind, TransferSyntaxes: []string{ExplicitVRLittleEndian}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range a.Find(context.Background(), StudyRootFind, ident(t, "STUDY")) {
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("want a timeout, got %v", err)
		}
	}
	select {
	case <-bf.cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the server's handler was not cancelled by the abort")
	}
}

// TestClientCancelByContext: cancelling the caller's context sends
// C-CANCEL; the handler stops and the association stays usable.
func TestClientCancelByContext(t *testing.T) {
	bf := blockingFind{cancelled: make(chan struct{})}
	_, addr := startServer(t, ServerOptions{Allowed: mustCallers(t, "SCU@*"), Find: bf})
	a, err := Dial(context.Background(), addr, ClientOptions{CallingAE: "SCU", CalledAE: "MEDMESH",
		Proposals: []Proposal{{AbstractSyntax: StudyRootFind, TransferSyntaxes: []string{ExplicitVRLittleEndian}},
			{AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{ImplicitVRLittleEndian}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	for _, err := range a.Find(ctx, StudyRootFind, ident(t, "STUDY")) {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want the context's error, got %v", err)
		}
	}
	<-bf.cancelled
	if err := a.Echo(context.Background()); err != nil {
		t.Fatalf("association after a cancelled C-FIND: %v", err)
	}
}

func TestServerUnknownCommand(t *testing.T) {
	_, addr := startServer(t, ServerOptions{Allowed: mustCallers(t, "SCU@*")})
	a, err := Dial(context.Background(), addr, ClientOptions{CallingAE: "SCU", CalledAE: "MEDMESH",
		Proposals: []Proposal{{AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{ImplicitVRLittleEndian}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release(context.Background())
	pc, _ := a.pick(VerificationSOPClass, "", false)
	c := &Command{}
	c.SetUS(tCommandField, 0x0130) // N-ACTION-RQ
	c.SetUS(tMessageID, 9)
	c.SetString(tRequestedSOPClassUID, VerificationSOPClass)
	if err := a.c.sendMessage(pc, c, bytes.NewReader([]byte{8, 0, 0x16, 0, 2, 0, 0, 0})); err != nil {
		t.Fatal(err)
	}
	m, err := a.await(context.Background(), pc)
	if err != nil || m.cmd.CommandField != 0x8130 || m.cmd.Status != StatusUnrecognizedOperation || m.cmd.MessageIDBeingRespondedTo != 9 {
		t.Fatalf("%v %v", m, err)
	}
	if err := a.Echo(context.Background()); err != nil {
		t.Fatal(err)
	}
}
