package ledger

import (
	"bytes"
	"context"

	"github.com/libp2p/go-libp2p/core/peer"
)

// ---- applier: built-in state changes ----

// applier applies entries to the view's state; it evaluates derived state
// against the current (all applied entries) view.
type applier struct {
	ctx context.Context
	t   *txn
	d   *dag
}

func (a *applier) view() *causalView { return &causalView{ctx: a.ctx, d: a.d, t: a.t} }

func (a *applier) putCBOR(k string, v any) error {
	b, err := encMode.Marshal(v)
	if err != nil {
		return err
	}
	a.t.put(k, b)
	return nil
}

func (a *applier) recomputeMember(p peer.ID) error {
	v := a.view()
	m, ok := v.memberState(p)
	if v.err != nil {
		return v.err
	}
	if !ok {
		a.t.del(pState + "m/" + p.String())
		return nil
	}
	return a.putCBOR(pState+"m/"+p.String(), m)
}

func (a *applier) indexMember(e *Entry, p peer.ID, add bool, org string, roles []string) error {
	m := memberIdx{Add: add, Org: org, Roles: roles, Entry: e.cid.Bytes(), Wall: e.Clock.Wall, Counter: e.Clock.Counter}
	if err := a.putCBOR(pIdx+"m/"+p.String()+"/"+e.cs, &m); err != nil {
		return err
	}
	return a.recomputeMember(p)
}

// encodeAccessStored returns encMode's encoding of the accessStored of an
// access entry that passed validation: its payload is the canonical
// encoding of its accessWire, so it is copied rather than encoded again.
func encodeAccessStored(e *Entry) []byte {
	b := make([]byte, 0, 3+len(e.Payload)+2*9+len(e.Author)+e.cid.ByteLen())
	b = append(b, 0xa3, 0x01)
	b = append(b, e.Payload...)
	b = append(cborHead(append(b, 0x02), 2, uint64(len(e.Author))), e.Author...)
	return append(cborHead(append(b, 0x03), 2, uint64(e.cid.ByteLen())), e.cid.KeyString()...)
}

func lastSeg(k string) string {
	if i := bytes.LastIndexByte([]byte(k), '/'); i >= 0 {
		return k[i+1:]
	}
	return k
}
