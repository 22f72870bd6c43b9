package gc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/blockstore"
	"github.com/medmesh/medmesh/storage/record"
)

// sweepResult is one sweep's findings.
type sweepResult struct {
	stat        Stat
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
func (s *Service) sweep(ctx context.Context, remove bool) (res sweepResult, err error) {
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()

	// Markers first, then the adds running: an add registers before it
	// writes its marker, so a listed marker whose add is not running
	// belongs to an add that died.
	markers, err := s.markers(ctx)
	if err != nil {
		return res, err
	}
	snap, err := s.store.Snapshot(ctx)
	if err != nil {
		return res, err
	}
	defer snap.Close()
	m := marks{}
	running := s.markAdds(m, &res)
	if err := s.markRecords(ctx, m, &res); err != nil {
		return res, err
	}
	if err := s.ledger.EachEntry(ctx, func(c cid.Cid) error {
		m.mark(c, liveLedger)
		return nil
	}); err != nil {
		return res, err
	}
	orphans, err := s.scan(ctx, snap, m, &res)
	m = nil // the mark of a large store is large: let it go before the removals
	if err != nil || !remove {
		return res, err
	}
	if err := s.remove(ctx, orphans, &res); err != nil {
		return res, err
	}
	// The blocks of interrupted adds are gone: drop what else they stored,
	// then their markers.
	for _, mk := range markers {
		if running[mk.key] {
			continue
		}
		if err := s.forget(ctx, mk.record); err != nil {
			return res, fmt.Errorf("clean up after an interrupted add: %w", err)
		}
		if err := s.local.Delete(ctx, mk.key); err != nil {
			return res, fmt.Errorf("remove add marker: %w", err)
		}
		res.interrupted++
	}
	return res, nil
}

// marks are the live blocks found by the mark, by multihash.
type marks map[string]uint8

func (m marks) mark(c cid.Cid, kind uint8) { m[string(c.Hash())] |= kind }

// markAdds marks the blocks of the adds running, and returns their
// markers. (Adds in progress, then records in flight and pinned, then the
// ledger: an add or fetch that ends meanwhile is on the ledger or pinned by
// the time it is looked at there.)
func (s *Service) markAdds(m marks, res *sweepResult) (running map[datastore.Key]bool) {
	running = map[datastore.Key]bool{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for a := range s.adds {
		running[a.marker] = true
		a.mu.Lock()
		for _, c := range a.put {
			m.mark(c, liveBusy)
		}
		a.mu.Unlock()
	}
	res.stat.RunningAddCount = len(s.adds)
	return running
}

// markRecords marks the blocks of the records this node keeps: owned,
// pinned, in flight (their block lists, and the block index), and readable
// under a live grant (the block index).
func (s *Service) markRecords(ctx context.Context, m marks, res *sweepResult) error {
	pins, inflight := s.replicas.Holdings()

	// kept: record -> its block list (cid.Undef if not known yet).
	kept := map[cid.Cid]cid.Cid{}
	needList := map[cid.Cid]bool{} // owned or pinned: its blocks must be identifiable
	owned, err := s.ledger.OwnedRecords(ctx, s.self)
	if err != nil {
		return fmt.Errorf("list the records this node owns: %w", err)
	}
	for _, info := range owned {
		kept[info.ID] = info.Blocklist
		needList[info.ID] = true
		res.stat.OwnedRecordCount++
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
		if info, ok := s.ledger.Record(rec); ok {
			kept[rec] = info.Blocklist
		}
	}
	unlisted := map[cid.Cid]bool{}
	for rec, bl := range kept {
		if err := ctx.Err(); err != nil {
			return err
		}
		kind := liveRecord
		if busy[rec] {
			kind = liveBusy
		}
		m.mark(rec, kind)
		if !bl.Defined() {
			continue
		}
		m.mark(bl, kind)
		ids, err := s.localBlockList(ctx, bl)
		switch {
		case err == nil:
			for _, c := range ids {
				m.mark(c, kind)
			}
		case ipld.IsNotFound(err) || errors.Is(err, blockstore.ErrHashMismatch) || errors.Is(err, record.ErrMalformed):
			if needList[rec] {
				unlisted[rec] = true
			}
		default:
			return fmt.Errorf("read the block list of record %s: %w", rec, err)
		}
	}

	// The block index: blocks of kept records (also those a block list
	// does not name yet: a fetch indexes before it stores), and of
	// records this node may read.
	now := s.now()
	readable := map[cid.Cid]bool{}
	indexed := map[cid.Cid]int{}
	for b, rec := range s.records.IndexedBlocks() {
		_, keep := kept[rec]
		if !keep || busy[rec] {
			v, seen := readable[rec]
			if !seen {
				v = s.readable(rec, now)
				readable[rec] = v
			}
			keep = keep || v
		}
		if keep {
			kind := liveRecord
			if busy[rec] && !readable[rec] {
				kind = liveBusy
			}
			m.mark(b, kind)
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
			return fault.Conflictf(
				"the record's blocks are damaged or missing on this node; `medmesh status "+rec.String()+"` shows who else holds it",
				"cannot tell the blocks of record %s from garbage: its block list is not in this node's store; nothing was removed", rec)
		}
		s.log.Warn("gc: block list missing; keeping the record's indexed blocks", "record", rec)
	}
	return nil
}

// scan counts the snapshot's blocks and returns those the mark did not
// reach: the orphans.
func (s *Service) scan(ctx context.Context, snap *blockstore.Snapshot, m marks, res *sweepResult) ([]candidate, error) {
	var cands []candidate
	if err := snap.Each(ctx, func(h mh.Multihash, size int64) error {
		res.stat.BlockCount++
		res.stat.Size += size
		kind, ok := m[string(h)]
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
		return nil, err
	}
	// A candidate that is a ledger entry not yet recorded as applied is
	// kept (see ledger.EachEntry).
	orphans := cands[:0]
	for _, cd := range cands {
		if cd.size <= ledger.MaxEntrySize+64 {
			b, err := s.store.Blocks.Get(ctx, cd.c)
			switch {
			case ipld.IsNotFound(err):
				continue // gone since the snapshot
			case err == nil:
				if _, err := ledger.DecodeEntry(b.RawData()); err == nil {
					res.stat.LedgerEntryCount++
					continue
				}
			case !errors.Is(err, blockstore.ErrHashMismatch): // a damaged block is garbage too
				return nil, fmt.Errorf("read block %s: %w", cd.c, err)
			}
		}
		orphans = append(orphans, cd)
		res.stat.OrphanBlockCount++
		res.stat.OrphanSize += cd.size
	}
	return orphans, nil
}

// remove deletes the orphans no record pinned or in flight claims by now,
// and their index entries, and makes that durable.
func (s *Service) remove(ctx context.Context, orphans []candidate, res *sweepResult) error {
	lists := map[cid.Cid][]cid.Cid{} // block lists of records in flight, read once
	for _, cd := range orphans {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Exclusive: a fetch that starts now holds its record first and
		// then finds the block gone (and fetches it), never the reverse.
		var claimed bool
		var err error
		s.replicas.Exclusive(func(held func(cid.Cid) bool, inflight []cid.Cid) {
			if claimed = s.claimed(ctx, held, inflight, cd.c, lists); !claimed {
				err = s.store.Blocks.DeleteBlock(ctx, cd.c)
			}
		})
		if claimed {
			res.skipped++
			continue
		}
		if err != nil && !ipld.IsNotFound(err) {
			return fmt.Errorf("remove block %s: %w", cd.c, err)
		}
		res.removed++
		res.removedSize += cd.size
		s.removedBlocks.Inc()
		s.removedBytes.Add(float64(cd.size))
		if err := s.records.Unindex(ctx, cd.c); err != nil {
			return fmt.Errorf("block index: %w", err)
		}
	}
	if err := s.store.DS.Sync(ctx, datastore.NewKey("/")); err != nil {
		return fmt.Errorf("sync datastore: %w", err)
	}
	return nil
}

// claimed reports whether a record pinned or in flight claims block c
// (called under Replicas.Exclusive, for a block the mark found
// unreferenced).
func (s *Service) claimed(ctx context.Context, held func(cid.Cid) bool, inflight []cid.Cid, c cid.Cid, lists map[cid.Cid][]cid.Cid) bool {
	if rec, ok := s.records.RecordOf(c); ok && held(rec) {
		return true
	}
	for _, rec := range inflight {
		info, ok := s.ledger.Record(rec)
		if !ok {
			continue
		}
		if info.ID == c || info.Blocklist == c {
			return true
		}
		ids, seen := lists[rec]
		if !seen {
			ids, _ = s.localBlockList(ctx, info.Blocklist)
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

// localBlockList reads and decodes a block list from this node's store.
func (s *Service) localBlockList(ctx context.Context, bl cid.Cid) ([]cid.Cid, error) {
	b, err := s.store.Blocks.Get(ctx, bl)
	if err != nil {
		return nil, err
	}
	return record.DecodeBlockList(b.RawData())
}

// readable reports whether this node holds a current grant for rec.
func (s *Service) readable(rec cid.Cid, now time.Time) bool {
	for _, g := range s.ledger.Grants(rec) {
		if g.Grantee == s.self && g.LiveAt(now) {
			return true
		}
	}
	return false
}
