package ledger

import (
	"fmt"
	"sort"
	"strings"
)

// Purposes lists the purposes of use a grant, an access or a consent may
// state.
func Purposes() []string {
	return []string{PurposeTreatment, PurposeResearch, PurposeOperations, PurposeEmergency}
}

// TypeNames lists the registered entry types, sorted: the choices of
// `medmesh ledger log --type`.
func TypeNames() []string {
	registryMu.RLock()
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	registryMu.RUnlock()
	sort.Strings(out)
	return out
}

// CheckTypeName returns an error, listing the types, unless t is a
// registered entry type.
func CheckTypeName(t string) error {
	if lookupType(t) == nil {
		return fmt.Errorf("unknown entry type %q: choose one of %s", t, strings.Join(TypeNames(), ", "))
	}
	return nil
}
