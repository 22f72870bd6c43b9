package gc

import (
	"context"
	"errors"
	"github.com/medmesh/medmesh/internal/diskspace"
	"log/slog"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/blockstore"
)

// Ledger is what gc reads from the ledger (*ledger.Ledger).
type Ledger interface {
	// OwnedRecords lists the records p owns, every version (from the
	// ledger's owner index: a sweep walks this node's records, not the
	// network's).
	OwnedRecords(ctx context.Context, p peer.ID) ([]ledger.RecordInfo, error)
	Record(rec cid.Cid) (ledger.RecordInfo, bool)
	Grants(rec cid.Cid) []ledger.Grant
	// EachEntry calls fn with the CID of every entry the ledger keeps.
	EachEntry(ctx context.Context, fn func(cid.Cid) error) error
}

// Records is what gc needs of the records service (node/records;
// *daemon.Daemon until it moves there): its block index, and what it
// stored about a record an add never finished.
type Records interface {
	// RecordOf returns the record block b belongs to.
	RecordOf(b cid.Cid) (cid.Cid, bool)
	// IndexedBlocks returns a copy of the block index (block -> record).
	IndexedBlocks() map[cid.Cid]cid.Cid
	// Unindex drops a removed block's index entry.
	Unindex(ctx context.Context, b cid.Cid) error
	// Forget removes what an add stored about rec besides its blocks (its
	// wrapped key and block index entries). gc calls it only for a record
	// that is not on the ledger.
	Forget(ctx context.Context, rec cid.Cid) error
}

// Replicas is what gc needs of the replication manager: the records it pins
// and those in flight (node/replication.Pinset).
type Replicas interface {
	// Holdings returns, as one view, the pinned records (record -> block
	// list) and the records in flight.
	Holdings() (pins map[cid.Cid]cid.Cid, inflight []cid.Cid)
	// Exclusive runs fn while no record becomes pinned or in flight.
	Exclusive(fn func(held func(rec cid.Cid) bool, inflight []cid.Cid))
}

// Config is what a Service needs; every field but Now, Log and Metrics is
// required.
type Config struct {
	Self peer.ID
	// Store is the node's blockstore and the badger datastore under it.
	Store *blockstore.Store
	// Local is the node's local bookkeeping datastore; the add markers
	// live in it, under /adds.
	Local datastore.Datastore
	// DiskDir is the datastore's directory (for the disk usage reported).
	DiskDir  string
	Ledger   Ledger
	Records  Records
	Replicas Replicas

	Now     func() time.Time
	Log     *slog.Logger
	Metrics prometheus.Registerer
}

// Service collects a node's garbage and keeps the add markers.
type Service struct {
	self     peer.ID
	store    *blockstore.Store
	local    datastore.Datastore
	diskDir  string
	ledger   Ledger
	records  Records
	replicas Replicas
	now      func() time.Time
	log      *slog.Logger

	removedBlocks prometheus.Counter
	removedBytes  prometheus.Counter

	sweepMu sync.Mutex // one sweep at a time
	mu      sync.Mutex
	adds    map[*Add]struct{} // adds running

	ctx    context.Context // background reclaim after the start-up sweep; ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New makes the service. It does nothing until called.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Local == nil || cfg.Ledger == nil || cfg.Records == nil || cfg.Replicas == nil || cfg.Self == "" {
		return nil, errors.New("gc: Config lacks a dependency")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		self: cfg.Self, store: cfg.Store, local: cfg.Local, diskDir: cfg.DiskDir,
		ledger: cfg.Ledger, records: cfg.Records, replicas: cfg.Replicas, now: cfg.Now, log: cfg.Log,
		removedBlocks: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_gc_removed_blocks_total", Help: "Blocks removed by gc."}),
		removedBytes:  prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_gc_removed_bytes_total", Help: "Bytes removed by gc."}),
		adds:          map[*Add]struct{}{},
		ctx:           ctx, cancel: cancel,
	}
	cfg.Metrics.MustRegister(s.removedBlocks, s.removedBytes)
	return s, nil
}

// Close stops reclaiming disk space in the background and waits for it.
// Call it before the store closes.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

// Result is one gc run (node/api.GCResult has the meaning of each field).
type Result struct {
	RemovedBlockCount   int
	RemovedSize         int64
	KeptBlockCount      int
	KeptRecordCount     int
	SkippedBlockCount   int
	InterruptedAddCount int
	DiskSize            int64
}

// Stat is what the node stores, and what gc would remove (node/api.RepoStat
// has the meaning of each field).
type Stat struct {
	BlockCount       int
	Size             int64
	OrphanBlockCount int
	OrphanSize       int64
	LedgerEntryCount int
	RecordCount      int
	OwnedRecordCount int
	HeldRecordCount  int
	RunningAddCount  int
	DiskSize         int64
}

// GC removes every block that no record this node owns, holds, may read
// or is fetching references and that is not a ledger entry, cleans up
// after interrupted adds, and asks badger to reclaim the space.
func (s *Service) GC(ctx context.Context) (Result, error) {
	start := time.Now()
	res, err := s.sweep(ctx, true)
	if err != nil {
		return Result{}, err
	}
	out := Result{
		RemovedBlockCount: res.removed, RemovedSize: res.removedSize,
		KeptBlockCount: res.stat.BlockCount - res.removed, KeptRecordCount: res.keptRecords,
		SkippedBlockCount: res.skipped, InterruptedAddCount: res.interrupted,
	}
	// The space of what badger counts as garbage already; the rest of
	// these blocks' space follows as it flushes and compacts.
	if err := s.store.Reclaim(ctx); err != nil {
		s.log.Warn("gc: reclaim disk space", "err", err)
	}
	out.DiskSize = diskspace.Used(s.diskDir)
	s.log.Info("gc done", "removed_blocks", out.RemovedBlockCount, "removed_size", out.RemovedSize, "kept_blocks", out.KeptBlockCount,
		"kept_records", out.KeptRecordCount, "skipped_in_progress", out.SkippedBlockCount, "interrupted_adds", out.InterruptedAddCount,
		"disk_size", out.DiskSize, "took", time.Since(start).Round(time.Millisecond))
	return out, nil
}

// Stat counts what the node stores, and what gc would remove.
func (s *Service) Stat(ctx context.Context) (Stat, error) {
	res, err := s.sweep(ctx, false)
	if err != nil {
		return Stat{}, err
	}
	res.stat.DiskSize = diskspace.Used(s.diskDir)
	return res.stat, nil
}

// RecoverInterruptedAdds runs at start, before the network, the ledger's
// sync and replication write anything: if an add was interrupted (its
// marker is still there), it sweeps the blockstore and flushes badger's
// memtables, so the space can be given back (in the background: rewriting
// value-log files is not for the way up). A failure is logged, not fatal:
// the markers stay, and gc tries again.
func (s *Service) RecoverInterruptedAdds(ctx context.Context) {
	ms, err := s.markers(ctx)
	if err != nil {
		s.log.Error("look for interrupted adds", "err", err)
		return
	}
	if len(ms) == 0 {
		return
	}
	start := time.Now()
	res, err := s.sweep(ctx, true)
	if err != nil {
		s.log.Error("remove the blocks of interrupted adds; `medmesh gc` retries", "adds", len(ms), "err", err)
		return
	}
	s.log.Info("removed the blocks of interrupted adds", "adds", res.interrupted, "removed_blocks", res.removed,
		"removed_size", res.removedSize, "took", time.Since(start).Round(time.Millisecond))
	if res.removed == 0 {
		return
	}
	if err := s.store.FlushMemtables(ctx); err != nil {
		s.log.Warn("flush memtables after removing the blocks of interrupted adds", "err", err)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		start, before := time.Now(), diskspace.Used(s.diskDir)
		if err := s.store.Reclaim(s.ctx); err != nil && s.ctx.Err() == nil {
			s.log.Warn("reclaim the disk space of interrupted adds", "err", err)
			return
		}
		s.log.Info("reclaimed disk space", "disk_size_before", before, "disk_size", diskspace.Used(s.diskDir),
			"took", time.Since(start).Round(time.Millisecond))
	}()
}
