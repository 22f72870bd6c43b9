package replication

import (
	"context"
	"fmt"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/medmesh/medmesh/sharing/ledger"
)

// restoreIfMissing fetches back an owned record whose block list or
// manifest is not in the local store: a node restored from a backup (its
// datastore started empty), or one whose datastore was lost. The blocks
// come from the record's holders, are indexed as the record's (so they
// are served to its readers again) and made durable. A failed attempt is
// retried with a growing pause while the node runs. (Blocks missing
// elsewhere in a record are found by proofs of storage: selfHeal.)
func (m *Manager) restoreIfMissing(info ledger.RecordInfo) {
	hasList, err1 := m.blocks.Has(m.ctx, info.Blocklist)
	hasMan, err2 := m.blocks.Has(m.ctx, info.ID)
	if err1 != nil || err2 != nil || hasList && hasMan {
		return
	}
	m.goFetch(info.ID, func() {
		pause := time.Second
		for attempt := 1; ; attempt++ {
			err := m.restoreOwned(info)
			if err == nil || m.ctx.Err() != nil {
				return
			}
			m.m.fetches.WithLabelValues("error").Inc()
			m.log.Warn("fetch back an owned record whose blocks are missing here", "record", info.ID, "attempt", attempt, "err", err, "retry_in", pause)
			select {
			case <-m.ctx.Done():
				return
			case <-time.After(pause):
			}
			pause = min(2*pause, time.Minute)
		}
	})
}

func (m *Manager) restoreOwned(info ledger.RecordInfo) error {
	select {
	case m.sem <- struct{}{}:
	case <-m.ctx.Done():
		return m.ctx.Err()
	}
	defer func() { <-m.sem }()
	done := m.pins.Hold(info.ID)
	defer done()
	start := time.Now()
	timeout := m.cfg.FetchTimeout + time.Duration(info.Size/(4<<20))*time.Second
	ctx, cancel := context.WithTimeout(m.ctx, timeout)
	defer cancel()
	ids, err := m.blockList(ctx, info)
	if err != nil {
		return fmt.Errorf("fetch block list: %w", err)
	}
	if !containsCid(ids, info.ID) {
		return fmt.Errorf("block list of %s does not list its manifest", info.ID)
	}
	m.records.AddBlocks(ctx, info.ID, append(append([]cid.Cid{}, ids...), info.Blocklist))
	var n int64
	if err := m.net.GetMany(ctx, ids, func(b blocks.Block) error { n += int64(len(b.RawData())); return nil }); err != nil {
		return fmt.Errorf("fetch blocks: %w", err)
	}
	if err := m.cfg.Durable.Sync(ctx, datastore.NewKey("/")); err != nil {
		return err
	}
	m.m.fetches.WithLabelValues("restored").Inc()
	m.m.fetchedBytes.Add(float64(n))
	m.log.Info("fetched back an owned record from its holders", "record", info.ID, "blocks", len(ids), "bytes", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
