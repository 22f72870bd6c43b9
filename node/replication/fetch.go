package replication

import (
	"context"
	"fmt"
	"github.com/medmesh/medmesh/internal/diskspace"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"

	"github.com/medmesh/medmesh/sharing/ledger"
	rules "github.com/medmesh/medmesh/sharing/replication"
	"github.com/medmesh/medmesh/storage/record"
)

// goFetch runs f in the background unless a fetch of rec is already in
// flight; rec counts as in flight until f returns.
func (m *Manager) goFetch(rec cid.Cid, f func()) {
	m.mu.Lock()
	if m.fetching[rec] {
		m.mu.Unlock()
		return
	}
	m.fetching[rec] = true
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer func() {
			m.mu.Lock()
			delete(m.fetching, rec)
			m.mu.Unlock()
		}()
		f()
	}()
}

func (m *Manager) startFetch(info ledger.RecordInfo) {
	m.goFetch(info.ID, func() {
		select {
		case m.sem <- struct{}{}:
		case <-m.ctx.Done():
			return
		}
		defer func() { <-m.sem }()
		if err := m.replicate(m.ctx, info); err != nil && m.ctx.Err() == nil {
			m.m.fetches.WithLabelValues("error").Inc()
			m.log.Warn("replicate record", "record", info.ID, "err", err)
		}
	})
}

// capacity is the room this node has for replicas at one moment.
type capacity struct {
	quota   int64 // 0: no cap
	used    int64 // bytes of the pinned records (but the one excepted)
	free    uint64
	freeOK  bool // free is known
	reserve uint64
}

// capacity measures the room for replicas; except is left out of the
// pinned bytes (a record being re-taken does not count against itself).
func (m *Manager) capacity(except cid.Cid) capacity {
	c := capacity{quota: m.cfg.Quota, reserve: uint64(m.o.DiskReserve)}
	if c.quota > 0 {
		for _, rec := range m.pins.Records() {
			if rec == except {
				continue
			}
			if ri, ok := m.ledger.Record(rec); ok {
				c.used += int64(ri.Size)
			}
		}
	}
	c.free, c.freeOK = diskspace.Free(m.cfg.DiskDir)
	return c
}

// cannotTake says why a record does not fit (empty: it does).
func (c capacity) cannotTake(info ledger.RecordInfo) string {
	if c.quota > 0 && c.used+int64(info.Size) > c.quota {
		return fmt.Sprintf("storage quota exceeded: %d + %d > %d bytes", c.used, info.Size, c.quota)
	}
	if c.freeOK && c.free < uint64(info.Size)+c.reserve {
		return fmt.Sprintf("disk full: %d bytes free, record needs %d plus a reserve of %d", c.free, info.Size, c.reserve)
	}
	return ""
}

// cannotTake says why this node cannot store a replica (empty: it can).
func (m *Manager) cannotTake(info ledger.RecordInfo) string {
	return m.capacity(info.ID).cannotTake(info)
}

// replicate fetches a record's ciphertext blocks, pins them and publishes
// a "held" receipt (or "declined" when it cannot take the record; a node
// that already declined it publishes nothing more, so it never flaps).
func (m *Manager) replicate(ctx context.Context, info ledger.RecordInfo) error {
	if why := m.cannotTake(info); why != "" {
		if rc, ok := m.myReceipt(info.ID); ok && rc.Status == rules.StatusDeclined {
			return nil
		}
		m.m.fetches.WithLabelValues("declined").Inc()
		return m.publish(ctx, info.ID, rules.StatusDeclined, why)
	}
	done := m.pins.Hold(info.ID)
	defer done()
	start := time.Now()
	timeout := m.cfg.FetchTimeout + time.Duration(info.Size/(4<<20))*time.Second
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	blb, err := m.net.Get(fctx, info.Blocklist)
	if err != nil {
		return fmt.Errorf("fetch block list: %w", err)
	}
	ids, err := record.DecodeBlockList(blb.RawData())
	if err != nil {
		return fmt.Errorf("block list of %s: %w", info.ID, err)
	}
	if !containsCid(ids, info.ID) {
		return fmt.Errorf("block list of %s does not list its manifest", info.ID)
	}
	// Placement may have changed while the block list came (a grant to
	// this node, say): fetch only while this node may still hold the
	// record, or its fetches would be counted as reads.
	if !m.ledger.HoldAuthority(info).MayHold(m.self) {
		return fmt.Errorf("no longer placed to hold record %s", info.ID)
	}
	// Index first: the blocks are served only to peers allowed to read
	// the record, from the moment they arrive.
	m.records.AddBlocks(ctx, info.ID, append(append([]cid.Cid{}, ids...), info.Blocklist))
	var n int64
	if err := m.net.GetMany(fctx, ids, func(b blocks.Block) error {
		n += int64(len(b.RawData()))
		return nil
	}); err != nil {
		return fmt.Errorf("fetch blocks: %w", err)
	}
	if err := m.cfg.Durable.Sync(ctx, datastore.NewKey("/")); err != nil {
		return err
	}
	if err := m.pin(ctx, info); err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	m.mu.Lock()
	delete(m.lost, info.ID)
	m.mu.Unlock()
	if rc, ok := m.myReceipt(info.ID); !ok || rc.Status != rules.StatusHeld {
		if err := m.publish(ctx, info.ID, rules.StatusHeld, ""); err != nil {
			return fmt.Errorf("publish receipt: %w", err)
		}
	}
	m.m.fetches.WithLabelValues("held").Inc()
	m.m.fetchSeconds.Observe(time.Since(start).Seconds())
	m.m.fetchedBytes.Add(float64(n))
	m.log.Info("holding replica", "record", info.ID, "blocks", len(ids), "bytes", n, "took", time.Since(start).Round(time.Millisecond))
	m.provideLater(append(ids, info.Blocklist))
	return nil
}

// provideLater announces a new replica's blocks in the background.
func (m *Manager) provideLater(cids []cid.Cid) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, 10*time.Minute)
		defer cancel()
		if err := m.net.Provide(ctx, cids); err != nil && m.ctx.Err() == nil {
			m.log.Warn("provide chunks", "n", len(cids), "err", err)
		}
	}()
}

func containsCid(cs []cid.Cid, c cid.Cid) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

func (m *Manager) blockList(ctx context.Context, info ledger.RecordInfo) ([]cid.Cid, error) {
	b, err := m.net.Get(ctx, info.Blocklist)
	if err != nil {
		return nil, err
	}
	return record.DecodeBlockList(b.RawData())
}
