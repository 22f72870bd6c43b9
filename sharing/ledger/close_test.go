package ledger

import (
	"bufio"
	"bytes"
	"context"
	"testing"
	"time"
)

// A sync request still being answered when the ledger closes is cut off,
// and Close returns only after its handler has: an answer reads the store,
// which the ledger's owner closes next (a badger store panicked "DB Closed"
// in a handler that outlived Close). Close does not wait for the slow peer
// either.
func TestCloseWaitsForSyncHandlers(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 2)
	_, nodes := startMesh(t, w, 2, 12300, time.Minute, func(l *Ledger) { w.setup(t, l) })
	a, b := nodes[0], nodes[1]

	s, err := b.h.NewStream(ctx, a.h.ID(), SyncProtocol)
	if err != nil {
		t.Fatal(err)
	}
	var req bytes.Buffer
	if err := writeMsg(&req, &syncReq{Network: a.l.NetworkID().Bytes(), Op: opHeads}); err != nil {
		t.Fatal(err)
	}
	// All but the last byte: a's handler waits for the rest.
	if _, err := s.Write(req.Bytes()[:req.Len()-1]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		a.l.bgMu.Lock()
		n := len(a.l.handling)
		a.l.bgMu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a answers %d sync streams, want the one b opened", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	a.l.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close waited %v for a peer that sends nothing", d)
	}
	// The request completed after Close gets no answer.
	_, _ = s.Write(req.Bytes()[req.Len()-1:])
	_ = s.CloseWrite()
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	var resp syncResp
	if err := readMsg(bufio.NewReader(s), maxSyncResponse, &resp); err == nil {
		t.Fatalf("a closed ledger answered a sync request: %+v", resp)
	}
}
