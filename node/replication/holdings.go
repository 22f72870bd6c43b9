package replication

import (
	"context"

	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/ledger"
	rules "github.com/medmesh/medmesh/sharing/replication"
)

func (m *Manager) pin(ctx context.Context, info ledger.RecordInfo) error {
	if err := m.pins.Pin(ctx, info.ID, info.Blocklist); err != nil {
		return err
	}
	m.m.pinned.Set(float64(m.pins.Len()))
	return nil
}

func (m *Manager) unpin(ctx context.Context, rec cid.Cid) error {
	err := m.pins.Unpin(ctx, rec)
	m.m.pinned.Set(float64(m.pins.Len()))
	return err
}

func (m *Manager) publish(ctx context.Context, rec cid.Cid, status, reason string) error {
	if len(reason) > 256 {
		reason = reason[:256]
	}
	if _, err := m.ledger.Append(ctx, ledger.TypeReceipt, ledger.ReceiptPayload{Record: rec, Status: status, Reason: reason}); err != nil {
		return err
	}
	m.m.receipts.WithLabelValues(status).Inc()
	m.log.Info("published replica receipt", "record", rec, "status", status, "reason", reason)
	return nil
}

// release publishes "released" and unpins; gc removes the blocks later.
func (m *Manager) release(rec cid.Cid, reason string) {
	if err := m.publish(m.ctx, rec, rules.StatusReleased, reason); err != nil {
		m.log.Warn("release replica", "record", rec, "err", err)
		return
	}
	if err := m.unpin(m.ctx, rec); err != nil {
		m.log.Warn("unpin replica", "record", rec, "err", err)
	}
}

// dropBlocks deletes the blocks of a record this node neither owns nor
// pins (now), as gc would, without waiting for it.
func (m *Manager) dropBlocks(rec cid.Cid) {
	bs := m.records.BlocksOf(rec)
	n := 0
	m.pins.Exclusive(func(held func(cid.Cid) bool, _ []cid.Cid) {
		if held(rec) || m.records.Owns(m.ctx, rec) {
			n = -1
			return
		}
		for _, b := range bs {
			if err := m.blocks.DeleteBlock(m.ctx, b); err == nil {
				n++
			} else if !ipld.IsNotFound(err) {
				m.log.Warn("drop block of a released replica", "record", rec, "block", b, "err", err)
			}
		}
	})
	if n >= 0 {
		m.log.Info("dropped the blocks of a record this node may no longer hold", "record", rec, "blocks", n)
	}
}

// reachable reports whether one of the peers is connected now (liveness
// counts a peer alive for a grace period after it went away; dropping a
// copy needs one that can serve it now).
func (m *Manager) reachable(ps []peer.ID) bool {
	for _, p := range ps {
		if p != m.self && m.host.Network().Connectedness(p) == network.Connected {
			return true
		}
	}
	return false
}

// keptAsGrantee reports whether this node still has the blocks of a record
// it held before it was granted it (unpinned, not its own).
func (m *Manager) keptAsGrantee(rec cid.Cid) bool {
	if m.pins.Pinned(rec) {
		return false
	}
	if has, _ := m.blocks.Has(m.ctx, rec); !has {
		return false
	}
	return m.isGrantee(rec) && !m.records.Owns(m.ctx, rec)
}

// isGrantee reports whether this node has or had a grant on rec.
func (m *Manager) isGrantee(rec cid.Cid) bool {
	for _, g := range m.ledger.GrantHistory(rec) {
		if g.Grantee == m.self {
			return true
		}
	}
	return false
}
