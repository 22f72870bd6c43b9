package ledger

import (
	"bufio"
	"bytes"
	"context"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// seedEntries returns real entries of every built-in type.
func seedEntries(t testing.TB) (*world, *Ledger, [][]byte) {
	w := newWorld(t, 3)
	l := openNode(t, w.admin, w.genesis)
	es := w.setup(t, l)
	owner, grantee := w.members[1], w.members[2]
	rec := recordPayload(t, owner, "b").Record
	g := as(t, l, owner, TypeGrant, GrantPayload{Record: rec, Grantee: grantee.id, Envelope: envelopeFor(t, grantee, "f"), Purpose: PurposeTreatment})
	es = append(es, g,
		as(t, l, grantee, TypeAccess, AccessPayload{Record: rec, Version: 1, Purpose: PurposeTreatment, Time: testEpoch, Grant: g.CID()}),
		as(t, l, w.admin, TypeReceipt, ReceiptPayload{Record: rec, Status: "held", Reason: "ok"}),
		as(t, l, w.admin, TypeServed, ServedPayload{Record: rec, Reader: grantee.id, Grant: g.CID(), Reads: 1, Blocks: 3, First: testEpoch, Last: testEpoch}),
		as(t, l, owner, TypeAssign, AssignPayload{Record: rec, Holders: []peer.ID{w.admin.id}}),
		as(t, l, owner, TypeRevoke, RevokePayload{Record: rec, Grantee: grantee.id}))
	raws := [][]byte{w.genesis}
	for _, e := range es {
		raws = append(raws, e.raw)
	}
	return w, l, raws
}

func FuzzEntryDecode(f *testing.F) {
	_, _, raws := seedEntries(f)
	for _, r := range raws {
		f.Add(r)
	}
	// Shapes the canonical encoder must get right: null and empty lists and
	// strings, big integers, absent optional fields.
	for _, w := range []wireEntry{
		{},
		{Network: []byte{1}, Type: "x", Author: []byte{}, Payload: []byte{0xf6}, Parents: [][]byte{}, Wall: 1 << 40, Counter: 1 << 31, Sig: []byte{2}},
		{Type: "access", Parents: [][]byte{nil, {}, {1, 2}}, Payload: []byte{0xa1, 0x01, 0x02}, Wall: 23, Counter: 24},
		{Scope: "audit/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN", Network: []byte{1}, Type: "access", Author: []byte{3}, Payload: []byte{0xf6}, Parents: [][]byte{{1}}, Wall: 5, Sig: make([]byte, 64)},
	} {
		b, err := encMode.Marshal(&w)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// The hand-written canonical encoder is encMode's, for anything
		// the decoder accepts.
		var dw wireEntry
		if decMode.Unmarshal(b, &dw) == nil {
			want, err := encMode.Marshal(&dw)
			if got := dw.appendCanonical(nil); err == nil && !bytes.Equal(got, want) {
				t.Fatalf("appendCanonical %x, encMode %x", got, want)
			}
		}
		e, err := DecodeEntry(b)
		if err != nil {
			return
		}
		var w wireEntry
		if err := decMode.Unmarshal(b, &w); err != nil {
			t.Fatal(err)
		}
		re, err := encMode.Marshal(&w)
		if err != nil || !bytes.Equal(re, b) || !bytes.Equal(e.Bytes(), b) {
			t.Fatal("accepted entry does not re-encode to the same bytes")
		}
	})
}

func FuzzApply(f *testing.F) {
	_, l, raws := seedEntries(f)
	for _, r := range raws {
		f.Add(r)
		if len(r) > 10 {
			m := append([]byte(nil), r...)
			m[len(m)/2] ^= 0x40
			f.Add(m)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		before := l.Digest()
		err := l.Ingest(context.Background(), b)
		if err != nil && !bytes.Equal(before, l.Digest()) {
			t.Fatalf("rejected entry changed the digest: %v", err)
		}
	})
}

// FuzzSyncRequest feeds the sync server requests as they arrive off a
// stream, all from one peer: whatever the bytes (and the cursor an earlier
// request left), it answers within its bounds, with entries it has
// applied, and without changing anything.
func FuzzSyncRequest(f *testing.F) {
	ctx := context.Background()
	w, l, _ := seedEntries(f)
	l.mu.Lock()
	offer, err := l.core.Offer(ctx)
	l.mu.Unlock()
	if err != nil {
		f.Fatal(err)
	}
	seed := func(req syncReq) {
		var b bytes.Buffer
		if err := writeMsg(&b, &req); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	var have [][]byte
	for _, c := range offer.Heads {
		have = append(have, c.Bytes())
	}
	seed(syncReq{Network: w.netID.Bytes(), Op: opDiff, Max: maxRespEntries})                          // a new node
	seed(syncReq{Network: w.netID.Bytes(), Op: opDiff, Have: have, Max: maxRespEntries})              // one in sync
	seed(syncReq{Network: w.netID.Bytes(), Op: opDiff, Have: [][]byte{w.netID.Bytes()}, Max: 2})      // behind, small pages
	seed(syncReq{Network: w.netID.Bytes(), Op: opDiff, Have: [][]byte{fakeCid("x").Bytes()}, Max: 1}) // ahead
	seed(syncReq{Network: []byte("other"), Op: 9})
	before := l.Digest()
	f.Fuzz(func(t *testing.T, b []byte) {
		var req syncReq
		if err := readMsg(bufio.NewReader(bytes.NewReader(b)), maxSyncRequest, &req); err != nil {
			return
		}
		// From one peer throughout: an answer cut short keeps a cursor
		// (sync_cursor.go) that a later input may pick up.
		resp := l.serveFrom(ctx, &req, w.members[1].id)
		if len(resp.Entries) > maxRespEntries {
			t.Fatalf("%d entries in one response", len(resp.Entries))
		}
		for _, raw := range resp.Entries {
			e, err := DecodeEntry(raw)
			if err != nil {
				t.Fatalf("served an entry that does not decode: %v", err)
			}
			if !l.known(e.CID()) {
				t.Fatal("served an entry that is not applied")
			}
		}
		if !bytes.Equal(before, l.Digest()) {
			t.Fatal("a sync request changed the state")
		}
	})
}
