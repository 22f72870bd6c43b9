package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/node/p2p"
	"github.com/medmesh/medmesh/node/repo"
	auditleaves "github.com/medmesh/medmesh/sharing/auditlog"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/multiformats/go-multiaddr"
)

// A node restored from a backup (`medmesh restore`) starts with its keys
// and settings but an empty datastore: its ledger holds only the genesis,
// so it would admit only the genesis admin. Until it has caught up, it also
// admits the members its backup listed (provisionally: nothing is served to
// them but the ledger, whose rules still decide every right), and dials
// them. Once a sync with a member succeeds, membership is the ledger's
// again; the replication manager fetches back the blocks of the records it
// owns from their holders (node/replication: restoreIfMissing), and this
// rebuilds the DICOM index from the studies it owns. Then REPO/restore.json
// is removed.
type restore struct {
	st          *repo.RestoreState
	provisional map[peer.ID][]multiaddr.Multiaddr
	caughtUp    atomic.Bool
	started     time.Time
	l           *ledger.Ledger
	log         *slog.Logger
}

// openRestore reads REPO/restore.json; nil when the repo was not restored
// (or has caught up).
func openRestore(r *repo.Repo, l *ledger.Ledger, log *slog.Logger) (*restore, error) {
	st, err := r.Restoring()
	if err != nil || st == nil {
		return nil, err
	}
	rs := &restore{st: st, provisional: map[peer.ID][]multiaddr.Multiaddr{}, started: time.Now(), l: l, log: log}
	for id, addrs := range st.Peers {
		p, err := peer.Decode(id)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ma, err := multiaddr.NewMultiaddr(a); err == nil {
				rs.provisional[p] = append(rs.provisional[p], ma)
			}
		}
	}
	log.Info("restored from a backup: catching up with the members it lists", "backup_created", st.BackupCreated, "members", len(rs.provisional))
	return rs, nil
}

// members is the membership p2p admits: the ledger's, and until the node
// has caught up, the backup's members.
func (rs *restore) members(l *ledger.Ledger) p2p.Membership {
	if rs == nil {
		return l
	}
	return rs
}

// IsMember implements p2p.Membership.
func (rs *restore) IsMember(p peer.ID) bool {
	if rs.l.IsMember(p) {
		return true
	}
	_, listed := rs.provisional[p]
	return listed && !rs.caughtUp.Load()
}

// bootstrap lists the backup's members to dial.
func (rs *restore) bootstrap() []peer.AddrInfo {
	if rs == nil {
		return nil
	}
	var out []peer.AddrInfo
	for p, addrs := range rs.provisional {
		if len(addrs) > 0 {
			out = append(out, peer.AddrInfo{ID: p, Addrs: addrs})
		}
	}
	return out
}

// restoreRetry is how often the catch-up is tried again.
const restoreRetry = 2 * time.Second

// auditRestoreWait bounds how long the audit log holds its appends for
// the segments of the leaves added after the backup (their holders away,
// or a segment lost): after it, the log appends without them.
const auditRestoreWait = 10 * time.Minute

// run catches up: a ledger sync with a connected member, then the DICOM
// index rebuilt from the studies this node owns; then restore.json goes.
func (rs *restore) run(d *Daemon) {
	if rs == nil {
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(restoreRetry)
		defer t.Stop()
		for {
			if rs.step(d) {
				return
			}
			select {
			case <-d.ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// step makes one attempt; it reports whether the restore is complete.
func (rs *restore) step(d *Daemon) bool {
	ctx, cancel := context.WithTimeout(d.ctx, time.Minute)
	defer cancel()
	if !rs.caughtUp.Load() {
		synced := false
		for _, p := range d.P2P.Host.Network().Peers() {
			if d.P2P.Host.Network().Connectedness(p) != network.Connected {
				continue
			}
			if err := d.Ledger.SyncWith(ctx, d.P2P.Host, p); err != nil {
				rs.log.Debug("restore: ledger sync", "peer", p, "err", err)
				continue
			}
			synced = true
			break
		}
		if !synced || !d.Ledger.IsMember(d.self) {
			return false
		}
		rs.caughtUp.Store(true)
		d.P2P.MembershipChanged()
		rs.log.Info("restore: the ledger has caught up with a member", "members", len(d.Ledger.Members()))
	}
	// The records service knows what it owns by its local key rows, which
	// a backup does not hold: they are the owner envelopes on the ledger.
	if n, err := d.Records.RestoreOwnedKeys(ctx); err != nil {
		rs.log.Info("restore: owned keys not restored yet", "err", err)
		return false
	} else if n > 0 {
		rs.log.Info("restore: the keys of the records this node owns are back from the ledger", "records", n)
	}
	// The audit log's leaves added after the backup, in their order, from
	// its segments (held on other nodes), before it appends anything else.
	// Past auditRestoreWait it appends without them, and says what that
	// costs.
	if n, err := d.auditlog.RestoreSegments(ctx); err != nil {
		if time.Since(rs.started) < auditRestoreWait {
			rs.log.Info("restore: audit log segments not back yet", "err", err)
			return false
		}
		d.auditlog.ReleaseHold(fmt.Errorf("not back after %v: %w", auditRestoreWait, err))
	} else if n > 0 {
		rs.log.Info("restore: the audit log's leaves added after the backup are back from its segments", "leaves", n)
	}
	studies := d.ownedImaging()
	indexed, failed, err := d.imaging.RebuildIndex(ctx, studies)
	if err != nil || failed > 0 {
		rs.log.Info("restore: DICOM index not rebuilt yet", "indexed", indexed, "not_yet", failed, "err", err)
		return false
	}
	if err := d.Repo.RestoreDone(); err != nil {
		rs.log.Warn("restore: remove restore.json", "err", err)
		return false
	}
	rs.log.Info("restore complete: ledger caught up, audit log segments back, DICOM index rebuilt; owned records are fetched back from their holders", "studies", indexed)
	return true
}

// ownedImaging lists the newest version of every imaging record this node
// owns.
func (d *Daemon) ownedImaging() []cid.Cid {
	seen := map[cid.Cid]bool{}
	var out []cid.Cid
	owned, err := d.Ledger.OwnedRecords(context.Background(), d.self)
	if err != nil {
		d.log.Warn("restore: list the records this node owns", "err", err)
	}
	for _, r := range owned {
		if r.Class != imaging.Class {
			continue
		}
		latest := r
		for _, v := range d.Ledger.Versions(r.ID) {
			if v.Version > latest.Version {
				latest = v
			}
		}
		if !seen[latest.ID] {
			seen[latest.ID] = true
			out = append(out, latest.ID)
		}
	}
	return out
}

// BackupState is what a backup takes from the running node: the datastore
// rows only it holds, and its members' addresses (GET /api/v1/backup/state).
func (d *Daemon) BackupState(ctx context.Context) (api.BackupState, error) {
	st, err := repo.ReadNodeState(ctx, d.Store.DS)
	if err != nil {
		return api.BackupState{}, err
	}
	out := api.BackupState{Rows: []api.BackupRow{}, Peers: map[string][]string{}}
	for _, r := range st.Rows {
		out.Rows = append(out.Rows, api.BackupRow{Key: r.Key, Value: r.Value})
	}
	for _, m := range d.Ledger.Members() {
		if m.Peer == d.self {
			continue
		}
		for _, a := range d.P2P.Host.Peerstore().Addrs(m.Peer) {
			out.Peers[m.Peer.String()] = append(out.Peers[m.Peer.String()], a.String())
		}
	}
	if len(out.Peers) == 0 {
		out.Peers = st.Peers
	}
	al, err := repo.AuditLogExport(ctx, d.auditLogDS())
	if err != nil {
		return api.BackupState{}, err
	}
	if al != nil {
		out.AuditLog = &api.BackupAuditLog{TreeSize: al.TreeSize, Root: al.Root, Size: al.Size}
	}
	return out, nil
}

// ExportAuditLog writes the export of the audit log's first size leaves
// (GET /api/v1/backup/auditlog): the leaves BackupState described, which
// later appends do not change.
func (d *Daemon) ExportAuditLog(ctx context.Context, size int64, w io.Writer) (int64, error) {
	l, err := auditleaves.Open(ctx, d.auditLogDS())
	if err != nil {
		return 0, err
	}
	if size > l.Size() {
		return 0, fault.Invalidf("ask for at most the tree size GET /api/v1/backup/state reported", "the audit log has %d leaves, not %d", l.Size(), size)
	}
	return l.Export(ctx, size, w)
}

// auditLogDS is the audit log's namespace of the node's datastore.
func (d *Daemon) auditLogDS() datastore.Batching {
	return namespace.Wrap(d.Store.DS, datastore.NewKey(repo.AuditLogPrefix))
}
