package dimse

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// obsRecorder is an Observer that writes down what it sees.
type obsRecorder struct {
	mu     sync.Mutex
	events []string
	ended  chan struct{}
}

func (r *obsRecorder) add(s string) {
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
}

func (r *obsRecorder) Rejected(calling, called string, _ net.Addr, _ string) {
	r.add("rejected " + calling + ">" + called)
}
func (r *obsRecorder) Accepted(a *AssociationInfo) { r.add("accepted " + a.CallingAE) }
func (r *obsRecorder) Ended(a *AssociationInfo, err error) {
	r.add(fmt.Sprintf("ended %s %v", a.CallingAE, err))
	r.ended <- struct{}{}
}
func (r *obsRecorder) Operation(a *AssociationInfo, cmd, status uint16) {
	r.add(fmt.Sprintf("op %s 0x%04X 0x%04X", a.CallingAE, cmd, status))
}

// TestObserver: an Observer sees a rejection, then an accepted
// association's operations and its release, in order.
func TestObserver(t *testing.T) {
	rec := &obsRecorder{ended: make(chan struct{}, 1)}
	_, addr := startServer(t, ServerOptions{Allowed: mustCallers(t, "SCU@127.0.0.1"), Observer: rec})
	ctx := context.Background()
	if _, err := Dial(ctx, addr, ClientOptions{CallingAE: "OTHER", CalledAE: "MEDMESH",
		Proposals: []Proposal{{AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{ImplicitVRLittleEndian}}}}); err == nil {
		t.Fatal("unknown AE associated")
	}
	a, err := Dial(ctx, addr, ClientOptions{CallingAE: "SCU", CalledAE: "MEDMESH", Logger: testLogger(t),
		Proposals: []Proposal{{AbstractSyntax: VerificationSOPClass, TransferSyntaxes: []string{ImplicitVRLittleEndian}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Echo(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rec.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("Ended not called")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := []string{"rejected OTHER>MEDMESH", "accepted SCU", "op SCU 0x0030 0x0000", "ended SCU <nil>"}
	if fmt.Sprint(rec.events) != fmt.Sprint(want) {
		t.Fatalf("events %q, want %q", rec.events, want)
	}
}
