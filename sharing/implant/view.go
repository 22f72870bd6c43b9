package implant

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/ledger"
)

// FromView is the causal past of the entry a ledger.View judges: rows of
// entries that are not InPast are left out.
func FromView(v ledger.View) Past { return viewPast{v} }

type viewPast struct{ v ledger.View }

func (p viewPast) IsMember(id peer.ID) bool          { return p.v.IsMember(id) }
func (p viewPast) HasRole(id peer.ID, r string) bool { return p.v.HasRole(id, r) }

func (p viewPast) Rows(typ, prefix string) ([]Row, error) {
	var out []Row
	for _, r := range p.v.Ext(typ, prefix) {
		c, err := rowEntry(typ, r.Key)
		if err != nil {
			return nil, err
		}
		if p.v.InPast(c) {
			out = append(out, Row{Key: r.Key, Entry: c, Value: r.Value})
		}
	}
	return out, nil
}

// State is what the current state is read from: a node's ledger.
type State interface {
	IsMember(p peer.ID) bool
	Members() []ledger.Member
	Ext(typ, prefix string) ([]ledger.ExtRow, error)
}

// FromState is every applied entry of a ledger: the state a node queries
// and checks an entry against before it appends one.
func FromState(s State) Past { return statePast{s} }

type statePast struct{ s State }

func (p statePast) IsMember(id peer.ID) bool { return p.s.IsMember(id) }

func (p statePast) HasRole(id peer.ID, r string) bool {
	for _, m := range p.s.Members() {
		if m.Peer == id {
			return slices.Contains(m.Roles, r)
		}
	}
	return false
}

func (p statePast) Rows(typ, prefix string) ([]Row, error) {
	rows, err := p.s.Ext(typ, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]Row, 0, len(rows))
	for _, r := range rows {
		c, err := rowEntry(typ, r.Key)
		if err != nil {
			return nil, err
		}
		out = append(out, Row{Key: r.Key, Entry: c, Value: r.Value})
	}
	return out, nil
}

// rowEntry is the entry a row names: its key's last segment.
func rowEntry(typ, key string) (cid.Cid, error) {
	c, err := cid.Decode(key[strings.LastIndexByte(key, '/')+1:])
	if err != nil {
		return cid.Undef, fmt.Errorf("implant: %s state row %q names no entry: %w", typ, key, err)
	}
	return c, nil
}
