package ledger

import (
	"slices"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/keywrap"
)

// The fast path of validation.
//
// An entry whose parents are exactly the current heads has every applied
// entry in its causal past, so the state at its causal position is the
// materialized view itself: /s/m/<peer> is memberState over all applied
// entries (recomputed whenever /i/m/<peer>/ changes), /s/k/<peer> is
// keyState, /s/r/<record> is recordState's Info. Such a view (causalView.cur)
// reads those keys, decoded once and cached in memory, instead of listing
// and filtering the indexes. A linear stream of appends, the common case,
// takes this path for every entry.

// maxStateCache bounds each map of the decoded-state cache (keys and records
// carry kilobyte-sized KEM keys and envelopes).
const maxStateCache = 1 << 12

// stateCache holds decoded values of state keys as the current batch sees
// them (committed state plus the batch's writes). A nil value caches "absent".
// Every txn write to a cached key invalidates it (txn.sc); resetMemory drops
// the whole cache when a batch is abandoned. Guarded by Ledger.mu.
type stateCache struct {
	// memberList is every current member (nil: not decoded since the
	// last change of membership).
	memberList *[]Member
	members    map[peer.ID]*memberIdx
	keys       map[peer.ID]*curKey
	records    map[cid.Cid]*curRecord
}

type curKey struct {
	pub []byte
	id  keywrap.KeyID
}

type curRecord struct {
	info RecordInfo
	err  error
}

func newStateCache() *stateCache {
	return &stateCache{members: map[peer.ID]*memberIdx{}, keys: map[peer.ID]*curKey{}, records: map[cid.Cid]*curRecord{}}
}

func (s *stateCache) reset() {
	s.memberList = nil
	clear(s.members)
	clear(s.keys)
	clear(s.records)
}

// invalidate drops the cached value of state key k, if k is a cached kind.
func (s *stateCache) invalidate(k string) {
	if len(k) < len(pState)+2 || !strings.HasPrefix(k, pState) || k[len(pState)+1] != '/' {
		return
	}
	rest := k[len(pState)+2:]
	switch k[len(pState)] {
	case 'm':
		s.memberList = nil
		if p, err := peer.Decode(rest); err == nil {
			delete(s.members, p)
		} else {
			clear(s.members)
		}
	case 'k':
		if p, err := peer.Decode(rest); err == nil {
			delete(s.keys, p)
		} else {
			clear(s.keys)
		}
	case 'r':
		if c, err := cid.Decode(rest); err == nil {
			delete(s.records, c)
		} else {
			clear(s.records)
		}
	}
}

// curMember returns p's member state from /s/m/<p>.
func (v *causalView) curMember(p peer.ID) (*memberIdx, bool) {
	sc := v.d.sc
	if m, ok := sc.members[p]; ok {
		return m, m != nil
	}
	b, ok, err := v.t.get(v.ctx, pState+"m/"+p.String())
	if err != nil {
		v.fail(err)
		return nil, false
	}
	var m *memberIdx
	if ok {
		m = new(memberIdx)
		if err := decMode.Unmarshal(b, m); err != nil {
			v.fail(err)
			return nil, false
		}
	}
	if len(sc.members) >= maxStateCache {
		clear(sc.members)
	}
	sc.members[p] = m
	return m, m != nil
}

// curKey returns p's current key from /s/k/<p> (nil: none). The value is
// shared: callers must not modify it.
func (v *causalView) curKey(p peer.ID) *curKey {
	sc := v.d.sc
	k, ok := sc.keys[p]
	if ok {
		return k
	}
	b, found, err := v.t.get(v.ctx, pState+"k/"+p.String())
	if err != nil {
		v.fail(err)
		return nil
	}
	if found {
		var ki keyIdx
		if err := decMode.Unmarshal(b, &ki); err != nil {
			v.fail(err)
			return nil
		}
		k = &curKey{pub: ki.Pub, id: keywrap.IDOf(ki.Pub)}
	}
	if len(sc.keys) >= maxStateCache {
		clear(sc.keys)
	}
	sc.keys[p] = k
	return k
}

// curKEMKey implements View.KEMKey on the fast path.
func (v *causalView) curKEMKey(p peer.ID) ([]byte, keywrap.KeyID, bool) {
	k := v.curKey(p)
	if k == nil {
		return nil, keywrap.KeyID{}, false
	}
	return slices.Clone(k.pub), k.id, true
}

// curRecordInfo implements View.Record on the fast path: callers get their
// own slices, as from a fresh decode.
func (v *causalView) curRecordInfo(id cid.Cid) (RecordInfo, bool) {
	info, ok := v.curRecordShared(id)
	if !ok {
		return info, false
	}
	info.OwnerEnvelope = slices.Clone(info.OwnerEnvelope)
	if info.Escrow != nil {
		es := make([]EscrowEnvelope, len(info.Escrow))
		for i, e := range info.Escrow {
			es[i] = EscrowEnvelope{Authority: e.Authority, Envelope: slices.Clone(e.Envelope)}
		}
		info.Escrow = es
	}
	return info, true
}

// curRecordShared returns the record's owning announcement from /s/r/<id>;
// its slices are shared with the cache and must not be modified.
func (v *causalView) curRecordShared(id cid.Cid) (RecordInfo, bool) {
	sc := v.d.sc
	r, ok := sc.records[id]
	if !ok {
		b, found, err := v.t.get(v.ctx, pState+"r/"+id.String())
		if err != nil {
			v.fail(err)
			return RecordInfo{}, false
		}
		if found {
			var w recordWire
			if err := decMode.Unmarshal(b, &w); err != nil {
				v.fail(err)
				return RecordInfo{}, false
			}
			r = &curRecord{}
			r.info, r.err = w.public()
		}
		if len(sc.records) >= maxStateCache {
			clear(sc.records)
		}
		sc.records[id] = r
	}
	if r == nil {
		return RecordInfo{}, false
	}
	if r.err != nil {
		v.fail(r.err)
		return r.info, false
	}
	return r.info, true
}
