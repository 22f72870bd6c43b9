package ledger

import (
	"fmt"

	"github.com/ipfs/go-cid"
)

// NetworkIDOf checks that raw is a signed genesis entry and returns the
// network ID it founds (its CID). Used on invite tokens before anything is
// stored, so a corrupted token is refused with a clear error.
func NetworkIDOf(raw []byte) (cid.Cid, error) {
	e, err := DecodeEntry(raw)
	if err != nil {
		return cid.Undef, err
	}
	if e.Type != TypeGenesis {
		return cid.Undef, fmt.Errorf("ledger: entry is a %q, not a network genesis", e.Type)
	}
	return e.CID(), nil
}
