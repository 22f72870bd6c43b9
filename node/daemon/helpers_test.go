package daemon_test

import (
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/medmesh/medmesh/node/devnet"
	"github.com/medmesh/medmesh/sharing/ledger"
)

func fmtSscan(s string, v *float64) (int, error) { return fmt.Sscan(s, v) }

func grantPayload(id cid.Cid, to *devnet.Node) ledger.GrantPayload {
	return ledger.GrantPayload{Record: id, Grantee: to.ID, Envelope: []byte("not an envelope"), Purpose: ledger.PurposeTreatment}
}
