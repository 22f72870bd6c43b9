package ledger

import (
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/keywrap"
)

// ---- validation helpers ----

func unauthorized(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUnauthorized, fmt.Sprintf(format, a...))
}

func parsePeer(b []byte) (peer.ID, error) {
	p, err := peer.IDFromBytes(b)
	if err != nil {
		return "", fmt.Errorf("bad peer id: %w", err)
	}
	return p, nil
}

func parseCid(b []byte, what string) (cid.Cid, error) {
	c, err := cid.Cast(b)
	if err != nil {
		return cid.Undef, fmt.Errorf("bad %s: %w", what, err)
	}
	return c, nil
}

func validRoles(roles []string) error {
	if len(roles) > 8 {
		return errors.New("too many roles")
	}
	for i, r := range roles {
		if r == "" || len(r) > 32 || !validTypeName(r) {
			return fmt.Errorf("bad role %q", r)
		}
		if i > 0 && roles[i-1] >= r {
			return errors.New("roles must be sorted and unique")
		}
	}
	return nil
}

// ownerOf returns the owner of a record as the view sees it.
func recordInView(v View, b []byte) (cid.Cid, RecordInfo, error) {
	id, err := parseCid(b, "record id")
	if err != nil {
		return id, RecordInfo{}, err
	}
	info, ok := viewRecord(v, id)
	if !ok {
		return id, info, fmt.Errorf("record %s not announced in the entry's causal past", id)
	}
	return id, info, nil
}

// viewRecord is v.Record for the built-in validators, which only read the
// result: on the fast path it shares the cached value instead of copying
// its envelopes.
func viewRecord(v View, id cid.Cid) (RecordInfo, bool) {
	if cv, ok := v.(*causalView); ok && cv.curRec(id) {
		return cv.curRecordShared(id)
	}
	return v.Record(id)
}

// viewKeyID returns the KeyID of p's current key in v.
func viewKeyID(v View, p peer.ID) (keywrap.KeyID, bool) {
	if cv, ok := v.(*causalView); ok && cv.cur {
		k := cv.curKey(p)
		if k == nil {
			return keywrap.KeyID{}, false
		}
		return k.id, true
	}
	_, kid, ok := v.KEMKey(p)
	return kid, ok
}
