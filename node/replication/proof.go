package replication

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/ledger"
	rules "github.com/medmesh/medmesh/sharing/replication"
	"github.com/medmesh/medmesh/storage/blockstore"
	"github.com/medmesh/medmesh/storage/record"
)

// serveChallenge answers a proof-of-storage challenge.
func (m *Manager) serveChallenge(s network.Stream) {
	var isOwner bool
	lookup := func(ctx context.Context, rec, c cid.Cid) ([]byte, error) {
		isOwner = m.records.Owns(ctx, rec)
		if !isOwner && !m.pins.Pinned(rec) {
			return nil, rules.ErrNotHeld
		}
		if br, ok := m.records.RecordOf(c); !ok || br != rec {
			return nil, rules.ErrNotHeld
		}
		b, err := m.blocks.Get(ctx, c)
		if ipld.IsNotFound(err) || errors.Is(err, blockstore.ErrHashMismatch) {
			return nil, rules.ErrMissing
		}
		if err != nil {
			return nil, err
		}
		return b.RawData(), nil
	}
	rec, missing, err := rules.Serve(m.ctx, s, lookup, 30*time.Second)
	if err != nil {
		m.log.Debug("challenge", "from", s.Conn().RemotePeer(), "err", err)
	}
	if missing == 0 || !rec.Defined() {
		return
	}
	m.log.Error("proof of storage failed: blocks of a held record are missing", "record", rec, "missing", missing, "owner", isOwner)
	if isOwner {
		// The owner cannot hand its record off: fetch the blocks back.
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.selfHeal(rec)
		}()
		return
	}
	m.mu.Lock()
	already := m.lost[rec]
	m.lost[rec] = true
	m.mu.Unlock()
	if !already {
		m.release(rec, fmt.Sprintf("%s %d challenged blocks missing", rules.ReasonLost, missing))
	}
}

// selfHeal re-fetches an owned record's missing blocks from its holders.
func (m *Manager) selfHeal(rec cid.Cid) {
	info, ok := m.ledger.Record(rec)
	if !ok {
		return
	}
	done := m.pins.Hold(rec)
	defer done()
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.FetchTimeout)
	defer cancel()
	ids, err := m.blockList(ctx, info)
	if err == nil {
		err = m.net.GetMany(ctx, ids, func(blocks.Block) error { return nil })
	}
	if err != nil {
		m.log.Error("could not restore the blocks of an owned record", "record", rec, "err", err)
		return
	}
	m.log.Info("restored the missing blocks of an owned record", "record", rec)
}

// heldRecords lists the records this node owns or pins: only a holder has
// the bytes to check a challenge's answer.
func (m *Manager) heldRecords() []cid.Cid {
	out := m.pins.Records()
	owned, err := m.records.Owned(m.ctx)
	if err != nil {
		m.log.Warn("list owned records", "err", err)
	}
	for _, c := range owned {
		if !m.pins.Pinned(c) {
			out = append(out, c)
		}
	}
	return out
}

// verifyLoop challenges the other holders of the records this node holds
// every VerifyInterval (verifyAll).
func (m *Manager) verifyLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.o.VerifyInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
			m.verifyAll()
		}
	}
}

// verifyAll challenges the other holders of some of the records this node
// holds: a random sample of ChallengeRecords, every record with a holder
// failing its proofs (to confirm or clear it), and, after a failed
// challenge, every record (a holder that lost one record's blocks may have
// lost more). Proofs of storage sample: a holder that lost everything
// fails the next round, one lost record is found in ~held/ChallengeRecords
// rounds; a round's cost does not grow with what this node holds.
func (m *Manager) verifyAll() {
	held := m.heldRecords()
	m.mu.Lock()
	full := m.fullProof
	m.fullProof = false
	var failing []cid.Cid
	for rec := range m.failing {
		failing = append(failing, rec)
	}
	m.mu.Unlock()
	if !full && len(held) > m.o.ChallengeRecords {
		rand.Shuffle(len(held), func(i, j int) { held[i], held[j] = held[j], held[i] })
		sample := held[:m.o.ChallengeRecords]
		for _, rec := range failing {
			if !slices.Contains(sample, rec) {
				sample = append(sample, rec)
			}
		}
		held = sample
	}
	for _, rec := range held {
		if m.ctx.Err() != nil {
			return
		}
		info, ok := m.ledger.Record(rec)
		if !ok {
			continue
		}
		p := m.plan(info, nil)
		var others []peer.ID
		for _, h := range p.Holders {
			if h != m.self && m.host.Network().Connectedness(h) == network.Connected {
				others = append(others, h)
			}
		}
		if len(others) == 0 {
			continue
		}
		sample, err := m.sample(m.ctx, info)
		if err != nil {
			m.log.Debug("challenge sample", "record", info.ID, "err", err)
			continue
		}
		for _, h := range others {
			m.verifyOne(info.ID, h, sample)
		}
	}
}

// sample picks random blocks of a record from the local store.
func (m *Manager) sample(ctx context.Context, info ledger.RecordInfo) ([]blocks.Block, error) {
	blb, err := m.blocks.Get(ctx, info.Blocklist)
	if err != nil {
		return nil, err
	}
	ids, err := record.DecodeBlockList(blb.RawData())
	if err != nil {
		return nil, err
	}
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	var out []blocks.Block
	for _, c := range ids {
		if len(out) == m.o.ChallengeBlocks {
			break
		}
		b, err := m.blocks.Get(ctx, c)
		if err != nil {
			continue // our own copy is damaged; the owner/holder check catches it
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, errors.New("no local blocks to challenge with")
	}
	return out, nil
}

func (m *Manager) verifyOne(rec cid.Cid, h peer.ID, sample []blocks.Block) {
	ctx, cancel := context.WithTimeout(m.ctx, 30*time.Second)
	defer cancel()
	res, err := rules.Challenge(ctx, m.host, h, rec, sample)
	now := m.now()
	switch {
	case err != nil:
		m.m.challenges.WithLabelValues("error").Inc()
		m.log.Debug("challenge holder", "record", rec, "holder", h, "err", err)
	case res.OK():
		m.m.challenges.WithLabelValues("ok").Inc()
		m.live.Verified(rec, h, true, now)
		m.mu.Lock()
		delete(m.failing, rec)
		m.mu.Unlock()
	default:
		m.m.challenges.WithLabelValues("failed").Inc()
		m.live.Verified(rec, h, false, now)
		m.mu.Lock()
		m.failing[rec] = true
		m.fullProof = true
		m.mu.Unlock()
		m.log.Warn("holder failed proof of storage", "record", rec, "holder", h, "missing", res.Missing, "wrong", res.Wrong, "refused", res.Refused)
		m.kick()
	}
}
