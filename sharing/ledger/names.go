package ledger

import (
	"fmt"
	"strings"
)

// Purposes lists the purposes of use a grant, an access or a consent may
// state.
func Purposes() []string {
	return []string{PurposeTreatment, PurposeResearch, PurposeOperations, PurposeEmergency}
}

// TypeNames lists the entry types this ledger runs, sorted: the choices of
// `medmesh ledger log --type`.
func (l *Ledger) TypeNames() []string { return l.core.types.names() }

// CheckTypeName returns an error, listing the types, unless t is an entry
// type this ledger runs.
func (l *Ledger) CheckTypeName(t string) error {
	if l.core.types[t] == nil {
		return fmt.Errorf("unknown entry type %q: choose one of %s", t, strings.Join(l.TypeNames(), ", "))
	}
	return nil
}
