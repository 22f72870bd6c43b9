package ledger

import (
	"encoding/binary"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Datastore layout, under the /ledger namespace:
//
//	/e/<cid>                    meta of every applied entry (clock, parents, type, author)
//	/h/<cid>                    current heads
//	/l/<revclock>/<cid>         all applied entries, newest first (type as value)
//	/t/<type>/<revclock>/<cid>  the same, per type
//	/i/...                      indexes over applied entries (inputs of derived state)
//	/i/own/<owner>/<record>     the records each member owns (its owning announcement;
//	                            value: the record's listing row, ownedRow)
//	/i/oh/<owner>/<record>/<holder>  the holders of each member's records (latest
//	                            receipt "held"): an owner's `ls` is two prefix scans
//	/i/hold/<holder>/<record>   the records each member holds (latest receipt "held")
//	/i/gto/<grantee>/<record>   the records each member has, or had, a grant on
//	/s/...                      the materialized view; Digest hashes exactly this prefix
//	/c/clock                    the local clock high-water mark
//	/c/stored                   entries stored and their bytes (ledger stat)
//	/c/ss/<scope>               the same per wire scope ("g": the global scope), for
//	                            ledger stat --by-scope; written with the heads
//	/c/index                    the version of the /i/ indexes this store has (indexVersion)
const (
	pMeta  = "/e/"
	pHeads = "/h/"
	pLog   = "/l/"
	pType  = "/t/"
	pIdx   = "/i/"
	pState = "/s/"
)

// Involvement indexes: what a node owns, holds or may read is a prefix
// scan, not a walk over every record (issue #16: work follows involvement).
func ownedKey(owner peer.ID, rec cid.Cid) string {
	return pIdx + "own/" + owner.String() + "/" + rec.String()
}
func ownerHeldKey(owner peer.ID, rec cid.Cid, holder peer.ID) string {
	return pIdx + "oh/" + owner.String() + "/" + rec.String() + "/" + holder.String()
}
func heldKey(holder peer.ID, rec cid.Cid) string {
	return pIdx + "hold/" + holder.String() + "/" + rec.String()
}

// contestedKey marks a record whose ID is announced on more than one scope
// here (a member re-announced another owner's record ID on its own scope):
// validation then reads the record's rows, scope by scope, not the
// materialized state (causalView.curRec).
func contestedKey(rec cid.Cid) string { return pIdx + "rx/" + rec.String() }

func grantedKey(grantee peer.ID, rec cid.Cid) string {
	return pIdx + "gto/" + grantee.String() + "/" + rec.String()
}

// clockKey renders a clock and CID so that byte order is (clock, CID) order.
func clockKey(h HLC, c cid.Cid) string { return clockKeyS(h, c.String()) }

// clockKeyS is clockKey with the CID already rendered as a string.
func clockKeyS(h HLC, c string) string {
	const hexdig = "0123456789abcdef"
	b := make([]byte, 25+len(c))
	var raw [12]byte
	binary.BigEndian.PutUint64(raw[:], h.Wall)
	binary.BigEndian.PutUint32(raw[8:], h.Counter)
	for i, x := range raw {
		b[2*i], b[2*i+1] = hexdig[x>>4], hexdig[x&0xf]
	}
	b[24] = '/'
	copy(b[25:], c)
	return string(b)
}

// revClockKey renders a clock and CID so that ascending byte order is
// newest first (badger's reverse prefix iteration is unreliable).
func revClockKey(h HLC, c string) string {
	return clockKeyS(HLC{^h.Wall, ^h.Counter}, c)
}

// meta is what the ledger keeps about each applied entry besides its block.
type meta struct {
	Wall    uint64   `cbor:"1,keyasint"`
	Counter uint32   `cbor:"2,keyasint"`
	Parents [][]byte `cbor:"3,keyasint"`
	Type    string   `cbor:"4,keyasint"`
	Author  []byte   `cbor:"5,keyasint"`
	Scope   string   `cbor:"6,keyasint,omitempty"`
}

// encodeMeta returns the canonical CBOR of e's meta, as encMode would, but
// written directly: it is encoded for every applied entry.
func encodeMeta(e *Entry) ([]byte, error) {
	if len(e.Parents) == 0 {
		// Genesis: encMode writes the nil parent list as null.
		return encMode.Marshal(&meta{Wall: e.Clock.Wall, Counter: e.Clock.Counter, Type: e.Type, Author: []byte(e.Author)})
	}
	n := 1 + 10 + 6 + 10 + len(e.Type) + 10 + len(e.Author) + 10 + len(e.Scope)
	for _, p := range e.Parents {
		n += 9 + p.ByteLen()
	}
	b := make([]byte, 0, n)
	if e.Scope != "" {
		b = append(b, 0xa6, 0x01)
	} else {
		b = append(b, 0xa5, 0x01)
	}
	b = cborHead(b, 0, e.Clock.Wall)
	b = append(b, 0x02)
	b = cborHead(b, 0, uint64(e.Clock.Counter))
	b = append(b, 0x03)
	b = cborHead(b, 4, uint64(len(e.Parents)))
	for _, p := range e.Parents {
		b = cborHead(b, 2, uint64(p.ByteLen()))
		b = append(b, p.KeyString()...)
	}
	b = append(b, 0x04)
	b = cborHead(b, 3, uint64(len(e.Type)))
	b = append(b, e.Type...)
	b = append(b, 0x05)
	b = cborHead(b, 2, uint64(len(e.Author)))
	b = append(b, e.Author...)
	if e.Scope != "" {
		b = cborHead(append(b, 0x06), 3, uint64(len(e.Scope)))
		b = append(b, e.Scope...)
	}
	return b, nil
}

// cborHead appends the shortest CBOR head of major type mt with argument v.
func cborHead(b []byte, mt byte, v uint64) []byte {
	mt <<= 5
	switch {
	case v < 24:
		return append(b, mt|byte(v))
	case v <= 0xff:
		return append(b, mt|24, byte(v))
	case v <= 0xffff:
		return append(b, mt|25, byte(v>>8), byte(v))
	case v <= 0xffffffff:
		return append(b, mt|26, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	default:
		return append(b, mt|27, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
}
