// Package erasure is the ledger entry by which an owner erases a record
// (all its versions, or some), and its rules.
//
// A record.erase entry names record versions (record IDs). Authority, at
// the entry's causal position: each version named must be announced there
// and owned by the entry's author — only the owner erases, and a member
// that signs one for another's record is refused by every node. Erasure is
// final: nothing un-erases a version, and every node stops serving it,
// deletes its blocks, its wrapped key and what it indexed of it
// (node/erasure). The entries about the record stay on the ledger: they are
// its audit.
//
// State: one row per (version, erasing entry), "r/<record>/<entry>", so
// concurrent erasures of one version apply in any order to the same state.
package erasure

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/internal/strictcbor"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// Type is the entry type.
const Type = "record.erase"

// MaxVersions bounds the versions one entry erases.
const MaxVersions = 1024

// Payload is a record.erase entry: the record versions erased, sorted by
// bytes and unique.
type Payload struct {
	Records [][]byte `cbor:"1,keyasint"`
}

// Types returns the entry types of this package, for the node to pass to
// the ledger (and declare in a new network's genesis). In a scoped network
// an erasure lives on its author's owner scope: its author must own every
// version it names, and those live there.
func Types() []ledger.TypeSpec {
	return []ledger.TypeSpec{{Name: Type, New: func() any { return new(Payload) }, Validate: validate, Apply: apply, Scope: ledger.KindOwner}}
}

func validate(v ledger.View, e *ledger.Entry, pl any) error {
	p := pl.(*Payload)
	if len(p.Records) == 0 || len(p.Records) > MaxVersions {
		return fmt.Errorf("record.erase: name 1 to %d record versions", MaxVersions)
	}
	var prev []byte
	for _, b := range p.Records {
		if prev != nil && bytes.Compare(b, prev) <= 0 {
			return errors.New("record.erase: record versions must be sorted and unique")
		}
		prev = b
		id, err := cid.Cast(b)
		if err != nil {
			return fmt.Errorf("record.erase: bad record id: %w", err)
		}
		info, ok := v.Record(id)
		if !ok {
			return fmt.Errorf("record.erase: record %s not announced in the entry's causal past", id)
		}
		if info.Owner != e.Author {
			return fmt.Errorf("%w: record.erase of %s by %s, not its owner", ledger.ErrUnauthorized, id, e.Author)
		}
	}
	return nil
}

func apply(t ledger.Txn, e *ledger.Entry, pl any) error {
	for _, b := range pl.(*Payload).Records {
		id, _ := cid.Cast(b)
		t.Put("r/"+id.String()+"/"+e.CID().String(), nil)
	}
	return nil
}

// Rows is what Erased reads (*ledger.Ledger's Ext).
type Rows interface {
	Ext(typ, prefix string) ([]ledger.ExtRow, error)
}

// Erased lists every erased record version.
func Erased(l Rows) ([]cid.Cid, error) {
	rows, err := l.Ext(Type, "r/")
	if err != nil {
		return nil, err
	}
	var out []cid.Cid
	seen := map[cid.Cid]bool{}
	for _, r := range rows {
		parts := strings.Split(r.Key, "/")
		if len(parts) != 3 {
			return nil, fmt.Errorf("erasure: bad state key %q", r.Key)
		}
		c, err := cid.Decode(parts[1])
		if err != nil {
			return nil, fmt.Errorf("erasure: bad state key %q: %w", r.Key, err)
		}
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out, nil
}

// NewPayload returns the payload erasing ids (sorted, unique).
func NewPayload(ids []cid.Cid) *Payload {
	p := &Payload{}
	for _, id := range ids {
		p.Records = append(p.Records, id.Bytes())
	}
	slices.SortFunc(p.Records, bytes.Compare)
	p.Records = slices.CompactFunc(p.Records, bytes.Equal)
	return p
}

var dec = strictcbor.Dec(strictcbor.Limits{Nesting: 4, Array: MaxVersions, Map: 16})

// Decode returns an applied record.erase entry's payload.
func Decode(e *ledger.Entry) (*Payload, error) {
	if e.Type != Type {
		return nil, fmt.Errorf("erasure: entry is a %s", e.Type)
	}
	var p Payload
	if err := dec.Unmarshal(e.Payload, &p); err != nil {
		return nil, err
	}
	return &p, nil
}
