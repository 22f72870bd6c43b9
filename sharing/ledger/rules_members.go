package ledger

import (
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Rules of the entries that found the network and say who is in it. Each is
// judged at the entry's causal position (View); see doc.go for what each
// type confers and who may sign it. member.org is in org.go.

// maxDeclaredTypes bounds the entry types a genesis declares.
const maxDeclaredTypes = 256

// validateGenesis: the founding admin signs its own genesis, naming the
// network and, in networks created since types are declared, the entry
// types the network runs (sorted, unique, genesis among them).
func validateGenesis(v View, e *Entry, pl any) error {
	g := pl.(*genesisWire)
	admin, err := parsePeer(g.Admin)
	if err != nil {
		return err
	}
	if admin != e.Author {
		return errors.New("genesis admin must be its author")
	}
	if g.Name == "" || len(g.Name) > 128 {
		return errors.New("bad network name")
	}
	return checkDeclaredTypes(g.Types)
}

func checkDeclaredTypes(names []string) error {
	if names == nil {
		return nil // a network founded before types were declared
	}
	if len(names) > maxDeclaredTypes {
		return fmt.Errorf("genesis declares %d entry types, at most %d", len(names), maxDeclaredTypes)
	}
	hasGenesis := false
	for i, n := range names {
		if n == "" || len(n) > maxTypeLen || !validTypeName(n) {
			return fmt.Errorf("genesis declares a bad entry type name %q", n)
		}
		if i > 0 && names[i-1] >= n {
			return errors.New("genesis entry types must be sorted and unique")
		}
		hasGenesis = hasGenesis || n == TypeGenesis
	}
	if !hasGenesis {
		return errors.New("genesis does not declare its own type")
	}
	return nil
}

func applyGenesis(a *applier, e *Entry, pl any) error {
	g := pl.(*genesisWire)
	if err := a.putCBOR(pState+"n", g); err != nil {
		return err
	}
	return a.indexMember(e, e.Author, true, "", []string{RoleAdmin})
}

// validateMemberAdd: only an admin admits a member (or re-admits one with
// new roles and org).
func validateMemberAdd(v View, e *Entry, pl any) error {
	m := pl.(*memberAddWire)
	if _, err := parsePeer(m.Peer); err != nil {
		return err
	}
	if m.Org != "" {
		if err := CheckOrg(m.Org); err != nil {
			return err
		}
	}
	if err := validRoles(m.Roles); err != nil {
		return err
	}
	if !v.HasRole(e.Author, RoleAdmin) {
		return unauthorized("member.add by non-admin")
	}
	return nil
}

func applyMemberAdd(a *applier, e *Entry, pl any) error {
	m := pl.(*memberAddWire)
	p, _ := peer.IDFromBytes(m.Peer)
	return a.indexMember(e, p, true, m.Org, m.Roles)
}

// validateMemberRemove: only an admin removes a member.
func validateMemberRemove(v View, e *Entry, pl any) error {
	if _, err := parsePeer(pl.(*memberRemoveWire).Peer); err != nil {
		return err
	}
	if !v.HasRole(e.Author, RoleAdmin) {
		return unauthorized("member.remove by non-admin")
	}
	return nil
}

func applyMemberRemove(a *applier, e *Entry, pl any) error {
	p, _ := peer.IDFromBytes(pl.(*memberRemoveWire).Peer)
	return a.indexMember(e, p, false, "", nil)
}

// MemberOf returns the member a membership entry (member.add,
// member.remove, member.org) is about, so a subscriber can react to one
// member instead of all.
func MemberOf(e *Entry) (peer.ID, bool) {
	var b []byte
	switch e.Type {
	case TypeMemberAdd:
		var w memberAddWire
		if decMode.Unmarshal(e.Payload, &w) != nil {
			return "", false
		}
		b = w.Peer
	case TypeMemberRemove:
		var w memberRemoveWire
		if decMode.Unmarshal(e.Payload, &w) != nil {
			return "", false
		}
		b = w.Peer
	case TypeMemberOrg:
		var w memberOrgWire
		if decMode.Unmarshal(e.Payload, &w) != nil {
			return "", false
		}
		b = w.Peer
	default:
		return "", false
	}
	p, err := peer.IDFromBytes(b)
	return p, err == nil
}
