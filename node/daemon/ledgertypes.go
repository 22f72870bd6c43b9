package daemon

import (
	"github.com/medmesh/medmesh/sharing/dataset"
	"github.com/medmesh/medmesh/sharing/erasure"
	"github.com/medmesh/medmesh/sharing/implant"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/sharing/netkey"
)

// LedgerTypes are the entry types a medmesh node runs: the ledger's
// built-in ones, the consent types of research datasets and the custody and
// recall types of implant traceability, and the network key rotation
// (sharing/netkey) and record erasure (sharing/erasure). Start passes
// them to the ledger, and `network create` declares them in the genesis,
// so a node that lacks one refuses to open the network instead of
// rejecting what the others accept.
func LedgerTypes() []ledger.TypeSpec {
	return append(append(append(append(ledger.Builtin(), dataset.Types()...), implant.Types()...), netkey.Types()...), erasure.Types()...)
}
