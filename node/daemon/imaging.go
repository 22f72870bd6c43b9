package daemon

import (
	"context"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/sharing/ledger"
)

// LatestVersion and ReadDone are what the imaging service needs from the
// records service beyond what the daemon already exports
// (imaging.Records), until the records service moves out of the daemon.

// LatestVersion follows the version chain of id to its newest version.
func (d *Daemon) LatestVersion(id cid.Cid) ledger.RecordInfo { return d.latestVersion(id) }

// ReadDone counts a completed read of someone else's record.
func (d *Daemon) ReadDone(ctx context.Context, info ledger.RecordInfo, purpose string, g *ledger.Grant) {
	d.audit(ctx, info, purpose, g)
}
