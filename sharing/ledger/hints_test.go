package ledger

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestFollowHintsForget: a peer's kept hints are dropped by an entry that
// changes what it holds or was granted (a grant or revoke naming it, its
// receipt, an assign naming it), kept across entries about other peers,
// dropped by a loaded state, not kept when worked out from a state read
// before a forget, and not reused after hintTTL.
func TestFollowHintsForget(t *testing.T) {
	p, q := newIdent(t), newIdent(t)
	rec := fakeCid("r")
	now := time.Now()
	var h followHints
	kept := func(id peer.ID, at time.Time) bool {
		_, ok := h.get(id, at)
		return ok
	}
	entry := func(typ string, author peer.ID, payload any) *Entry {
		t.Helper()
		b, err := encMode.Marshal(payload)
		if err != nil {
			t.Fatal(err)
		}
		return &Entry{Type: typ, Author: author, Payload: b}
	}
	cases := []struct {
		name   string
		e      *Entry
		forget bool
	}{
		{"grant to p", entry(TypeGrant, q.id, grantWire{Record: rec.Bytes(), Grantee: []byte(p.id)}), true},
		{"grant to q", entry(TypeGrant, p.id, grantWire{Record: rec.Bytes(), Grantee: []byte(q.id)}), false},
		{"revoke of p", entry(TypeRevoke, q.id, revokeWire{Record: rec.Bytes(), Grantee: []byte(p.id)}), true},
		{"receipt by p", entry(TypeReceipt, p.id, receiptWire{Record: rec.Bytes(), Status: "held"}), true},
		{"receipt by q", entry(TypeReceipt, q.id, receiptWire{Record: rec.Bytes(), Status: "held"}), false},
		{"assign naming p", entry(TypeAssign, q.id, assignWire{Record: rec.Bytes(), Holders: [][]byte{[]byte(q.id), []byte(p.id)}}), true},
		{"read claim by p", entry(TypeAccess, p.id, accessWire{Record: rec.Bytes(), Version: 1}), false},
	}
	for _, c := range cases {
		h.put(p.id, []string{"owner/x"}, now, h.generation())
		h.forget([]*Entry{c.e}, false)
		if kept(p.id, now) == c.forget {
			t.Errorf("%s: forgot p's hints %v, want %v", c.name, !kept(p.id, now), c.forget)
		}
	}
	h.put(p.id, nil, now, h.generation())
	h.forget(nil, true)
	if kept(p.id, now) {
		t.Error("a loaded state kept p's hints")
	}
	// Hints worked out from a state read before a forget of their peer
	// (or of every peer) are not kept; a forget of another peer's does
	// not matter.
	gen := h.generation()
	h.forget([]*Entry{cases[0].e}, false) // a grant to p
	h.put(p.id, nil, now, gen)
	if kept(p.id, now) {
		t.Error("kept hints worked out before a grant to p applied")
	}
	gen = h.generation()
	h.forget([]*Entry{cases[1].e}, false) // a grant to q
	h.put(p.id, nil, now, gen)
	if !kept(p.id, now) {
		t.Error("a grant to q made p's hints, worked out before it, not kept")
	}
	gen = h.generation()
	h.forget(nil, true)
	h.put(p.id, nil, now, gen)
	if kept(p.id, now) {
		t.Error("kept hints worked out before a state was loaded")
	}
	h.put(p.id, nil, now, h.generation())
	if !kept(p.id, now.Add(hintTTL-time.Second)) || kept(p.id, now.Add(hintTTL)) || kept(p.id, now.Add(-time.Minute)) {
		t.Error("hints reused past hintTTL or before they were worked out")
	}
}
