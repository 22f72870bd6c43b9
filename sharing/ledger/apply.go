package ledger

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
)

// ---- applier: built-in state changes ----

// applier applies entries to the view's state; it evaluates derived state
// against the current (all applied entries) view.
type applier struct {
	ctx context.Context
	t   *txn
	d   *dag
	// scoped is set in a scoped network.
	scoped bool
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

// extTxn scopes a plug-in type's state to its own prefix. Keys are checked:
// the datastore cleans key paths, so a key such as "../../m/x" would
// otherwise write outside the type's area, into core state.
type extTxn struct {
	a      *applier
	prefix string
	err    error // the first bad key written; fails the entry's apply
}

func (x *extTxn) Get(k string) ([]byte, bool, error) {
	if err := checkExtKey(k); err != nil {
		return nil, false, err
	}
	return x.a.t.get(x.a.ctx, x.prefix+k)
}

func (x *extTxn) Put(k string, v []byte) {
	if err := checkExtKey(k); err != nil {
		x.err = cmp.Or(x.err, err)
		return
	}
	x.a.t.put(x.prefix+k, v)
}

func (x *extTxn) Delete(k string) {
	if err := checkExtKey(k); err != nil {
		x.err = cmp.Or(x.err, err)
		return
	}
	x.a.t.del(x.prefix + k)
}

// checkExtKey accepts keys of "/"-separated segments of letters, digits and
// ". _ - : = +", none empty, "." or "..".
func checkExtKey(k string) error {
	if k == "" || len(k) > 512 {
		return fmt.Errorf("ledger: plug-in state key of %d bytes", len(k))
	}
	for _, seg := range strings.Split(k, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("ledger: plug-in state key %q has an empty, . or .. segment", k)
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-:=+", r)) {
				return fmt.Errorf("ledger: plug-in state key %q has a disallowed character", k)
			}
		}
	}
	return nil
}
