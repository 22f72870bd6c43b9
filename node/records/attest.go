package records

import (
	"context"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/sharing/replication"
)

// attestInterval is how long served reads are batched before this node
// attests them on the ledger: at most one access.served entry per (reader,
// record, grant) and interval, so a burst of reads costs a few entries.
// attestLead is how soon the first read after a quiet interval is attested
// (long enough for the rest of that read's blocks to be counted with its
// manifest): a lone read reaches its owner's audit in about attestLead plus
// the gossip, a read in a burst within about attestInterval.
const (
	attestInterval = time.Second
	attestLead     = 100 * time.Millisecond
)

// attestor counts the blocks this node serves to grantees and attests them
// on the ledger (ledger.ServedPayload): the audit comes from the nodes that
// served a record, not from the reader's word. It does nothing while
// nothing is served: the flush is armed by the first count.
type attestor struct {
	s       *Service
	mu      sync.Mutex
	pending map[attestKey]*attestBatch
	wake    chan struct{}
}

type attestKey struct {
	rec    cid.Cid
	reader peer.ID
	grant  cid.Cid
}

type attestBatch struct {
	reads, blocks uint64
	first, last   time.Time
}

func newAttestor(s *Service) *attestor {
	return &attestor{s: s, pending: map[attestKey]*attestBatch{}, wake: make(chan struct{}, 1)}
}

// count adds one served block: the record's manifest (a read) or another.
func (a *attestor) count(rec cid.Cid, reader peer.ID, grant cid.Cid, manifest bool, now time.Time) {
	k := attestKey{rec, reader, grant}
	a.mu.Lock()
	b := a.pending[k]
	if b == nil {
		b = &attestBatch{first: now}
		a.pending[k] = b
	}
	if manifest {
		b.reads++
	} else {
		b.blocks++
	}
	b.last = now
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// run flushes what was counted attestLead after the first count that
// follows a quiet interval, else attestInterval after the previous flush,
// until ctx ends (then once more).
func (a *attestor) run(ctx context.Context) {
	var last time.Time // the previous flush
	for {
		select {
		case <-ctx.Done():
			a.flush(context.Background())
			return
		case <-a.wake:
		}
		t := time.NewTimer(max(attestLead, attestInterval-time.Since(last)))
		select {
		case <-ctx.Done():
			t.Stop()
			a.flush(context.Background())
			return
		case <-t.C:
		}
		last = time.Now()
		a.flush(ctx)
	}
}

// flush appends one attestation per pending batch.
func (a *attestor) flush(ctx context.Context) {
	a.mu.Lock()
	batches := a.pending
	a.pending = map[attestKey]*attestBatch{}
	a.mu.Unlock()
	for k, b := range batches {
		if !a.mayAttest(k.rec) {
			// Served while fetching a replica, before its receipt: the
			// ledger would reject the attestation.
			a.s.log.Debug("served blocks of a record this node does not hold yet; not attested", "record", k.rec, "reader", k.reader)
			continue
		}
		_, err := a.s.ledger.Append(ctx, ledger.TypeServed, ledger.ServedPayload{
			Record: k.rec, Reader: k.reader, Grant: k.grant, Reads: b.reads, Blocks: b.blocks, First: b.first, Last: b.last,
		})
		if err != nil {
			a.s.log.Warn("attest served reads", "record", k.rec, "reader", k.reader, "reads", b.reads, "blocks", b.blocks, "err", err)
			continue
		}
		a.s.m.attested.Add(float64(b.reads))
	}
}

// mayAttest reports whether this node owns rec or holds it (its latest
// receipt is "held"), as the ledger requires of an attestation's author.
func (a *attestor) mayAttest(rec cid.Cid) bool {
	info, ok := a.s.ledger.Record(rec)
	if !ok {
		return false
	}
	if info.Owner == a.s.self {
		return true
	}
	for _, r := range a.s.ledger.Receipts(rec) {
		if r.Holder == a.s.self {
			return r.Status == replication.StatusHeld
		}
	}
	return false
}
