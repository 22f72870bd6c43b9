package implant_test

import (
	"context"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/medmesh/medmesh/sharing/implant"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/blockstore"
)

// types are the entry types of the test networks: the built-in ones and
// this package's, as a medmesh node runs them.
func types() []ledger.TypeSpec { return append(ledger.Builtin(), implant.Types()...) }

func newGenesis(k crypto.PrivKey, now time.Time) ([]byte, cid.Cid, error) {
	return ledger.NewGenesis(k, "implant-test", now, types())
}

func openLedger(ctx context.Context, st *blockstore.Store, k crypto.PrivKey, gen []byte, now func() time.Time) (*ledger.Ledger, error) {
	return ledger.Open(ctx, ledger.Options{DS: st.DS, Blocks: st.Blocks, Key: k, Genesis: gen, Now: now, Types: types()})
}
