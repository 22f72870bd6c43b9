package daemon

import (
	"context"
	"io"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/record"
)

// What the dataset code still in the daemon (dataset*.go, until it moves
// to node/research) calls of the records service, under the names it
// calls. Remove with it.

// ClockSkew is the margin by which a grant is honoured past its expiry
// (ledger.ClockSkew: the ledger's rules and every node's policy use it).
const ClockSkew = ledger.ClockSkew

func grantLive(g ledger.Grant, now time.Time) bool { return g.LiveAt(now) }

func grantExpiry(now time.Time, purpose, lifetime string) (time.Time, error) {
	return records.GrantExpiry(now, purpose, lifetime)
}

func (d *Daemon) Add(ctx context.Context, req records.AddRequest) (*records.AddResult, error) {
	return d.Records.Add(ctx, req)
}

func (d *Daemon) Open(ctx context.Context, id cid.Cid, version int) (ledger.RecordInfo, *record.Manifest, record.Key, *ledger.Grant, error) {
	return d.Records.Open(ctx, id, version)
}

func (d *Daemon) ReadFiles(ctx context.Context, m *record.Manifest, key record.Key, which []int, w io.Writer) error {
	return d.Records.ReadFiles(ctx, m, key, which, w)
}

func (d *Daemon) Revoke(ctx context.Context, id cid.Cid, grantee peer.ID) (int, error) {
	return d.Records.Revoke(ctx, id, grantee)
}

func (d *Daemon) resolve(ctx context.Context, id cid.Cid, version int) (ledger.RecordInfo, record.Key, *ledger.Grant, error) {
	return d.Records.Resolve(ctx, id, version)
}

func (d *Daemon) ownedChain(id cid.Cid) ([]ledger.RecordInfo, error) { return d.Records.OwnedChain(id) }
func (d *Daemon) latestVersion(id cid.Cid) ledger.RecordInfo         { return d.Records.LatestVersion(id) }
func (d *Daemon) holders(info ledger.RecordInfo) []peer.ID           { return d.Records.Holders(info) }

func (d *Daemon) readKey(ctx context.Context, info ledger.RecordInfo) (record.Key, *ledger.Grant, error) {
	return d.Records.ReadKey(ctx, info)
}

func (d *Daemon) grantVersion(ctx context.Context, rec cid.Cid, key []byte, grantee peer.ID, pub []byte, purpose string, expires time.Time) (*ledger.Entry, error) {
	return d.Records.GrantVersion(ctx, rec, key, grantee, pub, purpose, expires)
}

func (d *Daemon) audit(ctx context.Context, info ledger.RecordInfo, purpose string, g *ledger.Grant) {
	d.Records.ReadDone(ctx, info, purpose, g)
}
