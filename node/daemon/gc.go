package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/repo"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/blockstore"
	"github.com/medmesh/medmesh/storage/record"
	mh "github.com/multiformats/go-multihash"
)

// Garbage collection of the blockstore is a mark and sweep.
//
// Every block a node writes is one of these, and each is reachable from
// state the node keeps (the mark):
//
//   - chunks, manifest and block list of a record it owns (every version):
//     the record is on the ledger with its block list's CID, and the block
//     list names the manifest and every chunk;
//   - the same of a record it holds as a replica (pinned: record -> block
//     list, in the datastore) or is fetching now (replicator.hold);
//   - blocks of a record it may read under a live grant, should any be
//     stored (reads keep no copy, p2p.NoKeep), through the block index;
//   - ledger entries, each a block (ledger.EachEntry, and any block that
//     decodes as an entry: an entry is stored just before it is applied);
//   - blocks of an add in progress, which registers each CID before it
//     writes the block (trackingPutter).
//
// DICOM indexes, dataset state, wrapped keys, pins and the block index are
// datastore keys, not blocks: gc never touches them (but for the index
// entries of the blocks it removes).
//
// The sweep lists the blocks of a snapshot taken before the mark, so a
// block written while gc runs is never a candidate. A candidate may still
// become referenced between the mark and its removal only by a replica
// fetch or self-heal reusing blocks already stored; those hold their record
// (replicator.hold) before they read the store, and the removal checks,
// under the replicator's lock, that no record in progress or pinned claims
// the block (as the earlier index-only gc did).
//
// An add killed with its daemon leaves blocks no record references. An
// add writes a marker (/medmesh/local/adds/<id>) before its first block
// and removes it once the record is on the ledger or its blocks are rolled
// back; a daemon that starts and finds a marker runs a sweep (only then:
// a start otherwise costs nothing here), and so does every `gc`.

// addMarkerPrefix holds one key per add in progress (under d.local); its
// value is the record's ID once the add knows it.
var addMarkerPrefix = datastore.NewKey("/adds")

// gcState is the garbage collector's view of adds in progress, and its lock
// (one sweep at a time).
type gcState struct {
	sweep sync.Mutex
	mu    sync.Mutex
	adds  map[*trackingPutter]struct{}
}

// beginAdd makes an add's blocks known before its first block is written:
// to a sweep running now (in memory) and to the next start (the marker).
func (d *Daemon) beginAdd(ctx context.Context) (*trackingPutter, error) {
	var id [16]byte
	rand.Read(id[:])
	tp := &trackingPutter{inner: d.Store.Blocks, copies: true, marker: addMarkerPrefix.ChildString(hex.EncodeToString(id[:]))}
	d.gc.mu.Lock()
	if d.gc.adds == nil {
		d.gc.adds = map[*trackingPutter]struct{}{}
	}
	d.gc.adds[tp] = struct{}{}
	d.gc.mu.Unlock()
	// No sync: badger applies writes in order, so a block that survives a
	// crash has this marker before it in the same log.
	if err := d.local.Put(ctx, tp.marker, nil); err != nil {
		d.gc.mu.Lock()
		delete(d.gc.adds, tp)
		d.gc.mu.Unlock()
		return nil, fmt.Errorf("record the add in progress: %w", err)
	}
	return tp, nil
}

// addNamed records the record an add is storing, once known and before
// its key or block index entries are stored, so that the cleanup of an
// interrupted add removes those too.
func (d *Daemon) addNamed(ctx context.Context, tp *trackingPutter, id cid.Cid) error {
	tp.mu.Lock()
	tp.record = id
	tp.mu.Unlock()
	if err := d.local.Put(ctx, tp.marker, id.Bytes()); err != nil {
		return fmt.Errorf("record the add in progress: %w", err)
	}
	return nil
}

// endAdd ends an add: it is on the ledger, or it rolled back. A rollback
// that could not delete every block (clean false) leaves the marker, so
// the next start or gc removes what is left.
func (d *Daemon) endAdd(tp *trackingPutter, clean bool) {
	if clean {
		if err := d.local.Delete(context.Background(), tp.marker); err != nil {
			d.log.Warn("remove add marker; the next gc removes it", "err", err)
		}
	}
	d.gc.mu.Lock()
	delete(d.gc.adds, tp)
	d.gc.mu.Unlock()
}

// forgetRecord removes what a failed or interrupted add stored about a
// record that never reached the ledger: its wrapped key and block index
// entries. (Blocks are removed by the rollback or the sweep.)
func (d *Daemon) forgetRecord(ctx context.Context, rec cid.Cid) error {
	if !rec.Defined() {
		return nil
	}
	if _, ok := d.Ledger.Record(rec); ok {
		return nil // it did reach the ledger: it is this node's record
	}
	if err := d.local.Delete(ctx, keyKey(rec)); err != nil {
		return err
	}
	var stale []cid.Cid
	d.access.mu.Lock()
	for b, r := range d.access.blocks {
		if r == rec {
			stale = append(stale, b)
			delete(d.access.blocks, b)
		}
	}
	d.access.mu.Unlock()
	for _, b := range stale {
		if err := d.local.Delete(ctx, blockIdxPrefix.ChildString(b.String())); err != nil {
			return err
		}
	}
	return nil
}

// addMarker is a marker found in the datastore.
type addMarker struct {
	key    datastore.Key
	record cid.Cid // cid.Undef if the add did not get that far
}

func (d *Daemon) addMarkers(ctx context.Context) ([]addMarker, error) {
	res, err := d.local.Query(ctx, query.Query{Prefix: addMarkerPrefix.String()})
	if err != nil {
		return nil, fmt.Errorf("list add markers: %w", err)
	}
	defer res.Close()
	var out []addMarker
	for r := range res.Next() {
		if r.Error != nil {
			return nil, fmt.Errorf("list add markers: %w", r.Error)
		}
		m := addMarker{key: datastore.NewKey(r.Key)}
		if len(r.Value) > 0 {
			if c, err := cid.Cast(r.Value); err == nil {
				m.record = c
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// recoverInterruptedAdds runs at start, before the network, the ledger's
// sync and replication write anything: if an add was interrupted (its
// marker is still there), it sweeps the blockstore and flushes badger's
// memtables, so the space can be given back (in the background: rewriting
// value-log files is not for the way up). A failure is logged, not fatal:
// the markers stay, and gc tries again.
func (d *Daemon) recoverInterruptedAdds(ctx context.Context) {
	ms, err := d.addMarkers(ctx)
	if err != nil {
		d.log.Error("look for interrupted adds", "err", err)
		return
	}
	if len(ms) == 0 {
		return
	}
	start := time.Now()
	res, err := d.sweep(ctx, true)
	if err != nil {
		d.log.Error("remove the blocks of interrupted adds; `medmesh gc` retries", "adds", len(ms), "err", err)
		return
	}
	d.log.Info("removed the blocks of interrupted adds", "adds", res.interrupted, "removed_blocks", res.removed,
		"removed_size", res.removedSize, "took", time.Since(start).Round(time.Millisecond))
	if res.removed == 0 {
		return
	}
	if err := d.Store.FlushMemtables(ctx); err != nil {
		d.log.Warn("flush memtables after removing the blocks of interrupted adds", "err", err)
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		start, before := time.Now(), diskUsage(d.Repo.Path(repo.DatastoreDir))
		if err := d.Store.Reclaim(d.ctx); err != nil && d.ctx.Err() == nil {
			d.log.Warn("reclaim the disk space of interrupted adds", "err", err)
			return
		}
		d.log.Info("reclaimed disk space", "disk_size_before", before, "disk_size", diskUsage(d.Repo.Path(repo.DatastoreDir)),
			"took", time.Since(start).Round(time.Millisecond))
	}()
}

// sweepResult is one sweep's findings.
type sweepResult struct {
	stat        api.RepoStat
	keptRecords int
	removed     int
	removedSize int64
	skipped     int
	interrupted int
}

// mark kinds.
const (
	liveRecord uint8 = 1 << iota // of a record kept: owned, pinned, readable
	liveLedger                   // a ledger entry
	liveBusy                     // of an add in progress or a record being fetched
)

type candidate struct {
	c    cid.Cid
	size int64
}

// sweep marks what is live and sweeps a snapshot of the blockstore:
// counts only, or (remove) deletes the unreferenced blocks and cleans up
// after interrupted adds.
func (d *Daemon) sweep(ctx context.Context, remove bool) (res sweepResult, err error) {
	r := d.repl.Load() // nil at start, before replication runs
	d.gc.sweep.Lock()
	defer d.gc.sweep.Unlock()

	// Markers first, then the adds running: an add registers before it
	// writes its marker, so a listed marker whose add is not running
	// belongs to an add that died.
	markers, err := d.addMarkers(ctx)
	if err != nil {
		return res, err
	}
	snap, err := d.Store.Snapshot(ctx)
	if err != nil {
		return res, err
	}
	defer snap.Close()

	live := map[string]uint8{}
	mark := func(c cid.Cid, kind uint8) { live[string(c.Hash())] |= kind }

	// Adds in progress, then records in flight and pinned (one view), then
	// the ledger: an add or fetch that ends meanwhile is on the ledger or
	// pinned by the time it is looked at there.
	running := map[datastore.Key]bool{}
	d.gc.mu.Lock()
	for tp := range d.gc.adds {
		running[tp.marker] = true
		tp.mu.Lock()
		for _, c := range tp.put {
			mark(c, liveBusy)
		}
		tp.mu.Unlock()
	}
	res.stat.RunningAddCount = len(d.gc.adds)
	d.gc.mu.Unlock()

	var inflight []cid.Cid
	pins := map[cid.Cid]cid.Cid{}
	if r != nil {
		r.mu.Lock()
		for rec := range r.inflight {
			inflight = append(inflight, rec)
		}
		for rec, bl := range r.pins {
			pins[rec] = bl
		}
		r.mu.Unlock()
	} else if pins, err = d.loadPins(ctx); err != nil {
		return res, err
	}

	// kept: record -> its block list (cid.Undef if not known yet).
	kept := map[cid.Cid]cid.Cid{}
	needList := map[cid.Cid]bool{} // owned or pinned: its blocks must be identifiable
	for _, info := range d.Ledger.Records() {
		if info.Owner == d.self {
			kept[info.ID] = info.Blocklist
			needList[info.ID] = true
			res.stat.OwnedRecordCount++
		}
	}
	for rec, bl := range pins {
		if _, owned := kept[rec]; !owned {
			res.stat.HeldRecordCount++
		}
		kept[rec] = bl
		needList[rec] = true
	}
	res.stat.RecordCount = res.stat.OwnedRecordCount + res.stat.HeldRecordCount
	busy := map[cid.Cid]bool{} // in flight, and neither owned nor pinned
	for _, rec := range inflight {
		if _, ok := kept[rec]; ok {
			continue
		}
		busy[rec] = true
		kept[rec] = cid.Undef
		if info, ok := d.Ledger.Record(rec); ok {
			kept[rec] = info.Blocklist
		}
	}
	unlisted := map[cid.Cid]bool{}
	for rec, bl := range kept {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		kind := liveRecord
		if busy[rec] {
			kind = liveBusy
		}
		mark(rec, kind)
		if !bl.Defined() {
			continue
		}
		mark(bl, kind)
		ids, err := d.localBlockList(ctx, bl)
		switch {
		case err == nil:
			for _, c := range ids {
				mark(c, kind)
			}
		case ipld.IsNotFound(err) || errors.Is(err, blockstore.ErrHashMismatch) || errors.Is(err, record.ErrMalformed):
			if needList[rec] {
				unlisted[rec] = true
			}
		default:
			return res, fmt.Errorf("read the block list of record %s: %w", rec, err)
		}
	}

	// The block index: blocks of kept records (also those a block list
	// does not name yet: a fetch indexes before it stores), and of
	// records this node may read.
	now := d.opts.Now()
	readable := map[cid.Cid]bool{}
	indexed := map[cid.Cid]int{}
	d.access.mu.RLock()
	idx := make(map[cid.Cid]cid.Cid, len(d.access.blocks))
	for b, rec := range d.access.blocks {
		idx[b] = rec
	}
	d.access.mu.RUnlock()
	for b, rec := range idx {
		_, keep := kept[rec]
		if !keep || busy[rec] {
			v, seen := readable[rec]
			if !seen {
				v = d.readableBy(rec, now)
				readable[rec] = v
			}
			keep = keep || v
		}
		if keep {
			kind := liveRecord
			if busy[rec] && !readable[rec] {
				kind = liveBusy
			}
			mark(b, kind)
			indexed[rec]++
		}
	}
	res.keptRecords = len(kept)
	for rec, ok := range readable {
		if _, counted := kept[rec]; ok && !counted {
			res.keptRecords++
		}
	}
	// A record this node owns or holds whose block list is not here and
	// none of whose blocks are indexed: its blocks cannot be told from
	// garbage. Remove nothing rather than guess.
	for rec := range unlisted {
		if indexed[rec] == 0 {
			return res, api.Errorf(http.StatusConflict,
				"the record's blocks are damaged or missing on this node; `medmesh status "+rec.String()+"` shows who else holds it",
				"cannot tell the blocks of record %s from garbage: its block list is not in this node's store; nothing was removed", rec)
		}
		d.log.Warn("gc: block list missing; keeping the record's indexed blocks", "record", rec)
	}

	if err := d.Ledger.EachEntry(ctx, func(c cid.Cid) error {
		mark(c, liveLedger)
		return nil
	}); err != nil {
		return res, err
	}

	var cands []candidate
	if err := snap.Each(ctx, func(h mh.Multihash, size int64) error {
		res.stat.BlockCount++
		res.stat.Size += size
		kind, ok := live[string(h)]
		if kind&liveLedger != 0 {
			res.stat.LedgerEntryCount++
		}
		if kind == liveBusy {
			res.skipped++ // garbage but for the add or fetch in progress
		}
		if !ok {
			cands = append(cands, candidate{c: cid.NewCidV1(cid.Raw, h), size: size})
		}
		return nil
	}); err != nil {
		return res, err
	}
	live = nil

	// A candidate that is a ledger entry not yet recorded as applied is
	// kept (see ledger.EachEntry).
	orphans := cands[:0]
	for _, cd := range cands {
		if cd.size <= ledger.MaxEntrySize+64 {
			b, err := d.Store.Blocks.Get(ctx, cd.c)
			switch {
			case ipld.IsNotFound(err):
				continue // gone since the snapshot
			case err == nil:
				if _, err := ledger.DecodeEntry(b.RawData()); err == nil {
					res.stat.LedgerEntryCount++
					continue
				}
			case !errors.Is(err, blockstore.ErrHashMismatch): // a damaged block is garbage too
				return res, fmt.Errorf("read block %s: %w", cd.c, err)
			}
		}
		orphans = append(orphans, cd)
		res.stat.OrphanBlockCount++
		res.stat.OrphanSize += cd.size
	}
	if !remove {
		return res, nil
	}

	lists := map[cid.Cid][]cid.Cid{} // block lists of records in flight, read once
	for _, cd := range orphans {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		// Under r.mu: a fetch that starts now holds its record first and
		// then finds the block gone (and fetches it), never the reverse.
		if r != nil {
			r.mu.Lock()
			if d.claimedLocked(ctx, r, cd.c, lists) {
				r.mu.Unlock()
				res.skipped++
				continue
			}
		}
		err := d.Store.Blocks.DeleteBlock(ctx, cd.c)
		if r != nil {
			r.mu.Unlock()
		}
		if err != nil && !ipld.IsNotFound(err) {
			return res, fmt.Errorf("remove block %s: %w", cd.c, err)
		}
		res.removed++
		res.removedSize += cd.size
		if err := d.unindex(ctx, cd.c); err != nil {
			return res, err
		}
	}
	if err := d.Store.DS.Sync(ctx, datastore.NewKey("/")); err != nil {
		return res, fmt.Errorf("sync datastore: %w", err)
	}
	// The blocks of interrupted adds are gone: drop what else they stored,
	// then their markers.
	for _, m := range markers {
		if running[m.key] {
			continue
		}
		if err := d.forgetRecord(ctx, m.record); err != nil {
			return res, fmt.Errorf("clean up after an interrupted add: %w", err)
		}
		if err := d.local.Delete(ctx, m.key); err != nil {
			return res, fmt.Errorf("remove add marker: %w", err)
		}
		res.interrupted++
	}
	if r != nil {
		r.m.gcBlocks.Add(float64(res.removed))
		r.m.gcBytes.Add(float64(res.removedSize))
	}
	return res, nil
}

// claimedLocked reports whether a record being fetched, or pinned, claims
// block c (called with r.mu held, for a block the mark found unreferenced).
func (d *Daemon) claimedLocked(ctx context.Context, r *replicator, c cid.Cid, lists map[cid.Cid][]cid.Cid) bool {
	if rec, ok := d.access.recordOf(c); ok {
		if _, pinned := r.pins[rec]; pinned || r.inflight[rec] > 0 {
			return true
		}
	}
	for rec := range r.inflight {
		info, ok := d.Ledger.Record(rec)
		if !ok {
			continue
		}
		if info.ID == c || info.Blocklist == c {
			return true
		}
		ids, seen := lists[rec]
		if !seen {
			ids, _ = d.localBlockList(ctx, info.Blocklist)
			lists[rec] = ids
		}
		for _, x := range ids {
			if string(x.Hash()) == string(c.Hash()) {
				return true
			}
		}
	}
	return false
}

// unindex drops a removed block's entry from the block index.
func (d *Daemon) unindex(ctx context.Context, b cid.Cid) error {
	d.access.mu.Lock()
	_, ok := d.access.blocks[b]
	delete(d.access.blocks, b)
	d.access.mu.Unlock()
	if !ok {
		return nil
	}
	if err := d.local.Delete(ctx, blockIdxPrefix.ChildString(b.String())); err != nil {
		return fmt.Errorf("block index: %w", err)
	}
	return nil
}

// localBlockList reads and decodes a block list from this node's store.
func (d *Daemon) localBlockList(ctx context.Context, bl cid.Cid) ([]cid.Cid, error) {
	b, err := d.Store.Blocks.Get(ctx, bl)
	if err != nil {
		return nil, err
	}
	return record.DecodeBlockList(b.RawData())
}

// GC removes every block that no record this node owns, holds, may read
// or is fetching references and that is not a ledger entry, cleans up
// after interrupted adds, and asks badger to reclaim the space.
func (d *Daemon) GC(ctx context.Context) (api.GCResult, error) {
	start := time.Now()
	res, err := d.sweep(ctx, true)
	if err != nil {
		return api.GCResult{}, err
	}
	out := api.GCResult{
		RemovedBlockCount: res.removed, RemovedSize: res.removedSize,
		KeptBlockCount: res.stat.BlockCount - res.removed, KeptRecordCount: res.keptRecords,
		SkippedBlockCount: res.skipped, InterruptedAddCount: res.interrupted,
	}
	// The space of what badger counts as garbage already; the rest of
	// these blocks' space follows as it flushes and compacts.
	if err := d.Store.Reclaim(ctx); err != nil {
		d.log.Warn("gc: reclaim disk space", "err", err)
	}
	out.DiskSize = diskUsage(d.Repo.Path(repo.DatastoreDir))
	d.log.Info("gc done", "removed_blocks", out.RemovedBlockCount, "removed_size", out.RemovedSize, "kept_blocks", out.KeptBlockCount,
		"kept_records", out.KeptRecordCount, "skipped_in_progress", out.SkippedBlockCount, "interrupted_adds", out.InterruptedAddCount,
		"disk_size", out.DiskSize, "took", time.Since(start).Round(time.Millisecond))
	return out, nil
}

// RepoStat counts what the node stores, and what gc would remove.
func (d *Daemon) RepoStat(ctx context.Context) (api.RepoStat, error) {
	res, err := d.sweep(ctx, false)
	if err != nil {
		return api.RepoStat{}, err
	}
	res.stat.DiskSize = diskUsage(d.Repo.Path(repo.DatastoreDir))
	return res.stat, nil
}

func (d *Daemon) repoRoutes() {
	d.api.HandleFunc("POST "+p+"/gc", func(w http.ResponseWriter, r *http.Request) {
		res, err := d.GC(r.Context())
		reply(w, res, err)
	})
	d.api.HandleFunc("GET "+p+"/repo/stat", func(w http.ResponseWriter, r *http.Request) {
		res, err := d.RepoStat(r.Context())
		reply(w, res, err)
	})
}

// readableBy reports whether this node holds a current grant for rec.
func (d *Daemon) readableBy(rec cid.Cid, now time.Time) bool {
	for _, g := range d.Ledger.Grants(rec) {
		if g.Grantee == d.self && grantLive(g, now) {
			return true
		}
	}
	return false
}

// loadPins reads the pinned replicas from the datastore (the replicator
// keeps them in memory once it runs).
func (d *Daemon) loadPins(ctx context.Context) (map[cid.Cid]cid.Cid, error) {
	res, err := d.local.Query(ctx, query.Query{Prefix: pinPrefix.String()})
	if err != nil {
		return nil, fmt.Errorf("list pins: %w", err)
	}
	defer res.Close()
	pins := map[cid.Cid]cid.Cid{}
	for e := range res.Next() {
		if e.Error != nil {
			return nil, fmt.Errorf("list pins: %w", e.Error)
		}
		rec, err1 := cid.Decode(strings.TrimPrefix(e.Key, pinPrefix.String()+"/"))
		bl, err2 := cid.Cast(e.Value)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("pin %s is unreadable; nothing was removed", e.Key)
		}
		pins[rec] = bl
	}
	return pins, nil
}
