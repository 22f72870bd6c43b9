package main

import (
	"context"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/ledger"
)

// attestInterval is node/records' batching of served reads: one
// access.served per (record, reader, grant) and second.
const attestInterval = time.Second

// attestTries bounds the flushes a batch is retried in when its
// attestation is refused (the server has not seen the grant or its own
// receipt yet).
const attestTries = 10

// attestor is a node's batching of the reads it served, as node/records'
// attestor does it: the first read arms a flush attestInterval later, which
// appends one attestation per batch.
type attestor struct {
	s *sim
	n *node

	mu      sync.Mutex
	pending map[attKey]*attBatch
	timer   *time.Timer
	busy    sync.WaitGroup // armed or flushing
	armed   bool
	stopped bool
}

type attKey struct {
	rec    cid.Cid
	reader peer.ID
	grant  cid.Cid
}

type attBatch struct {
	reads       []*readEvent
	first, last time.Time
	tries       int
}

func newAttestor(s *sim, n *node) *attestor {
	return &attestor{s: s, n: n, pending: map[attKey]*attBatch{}}
}

// count adds a served read.
func (a *attestor) count(ev *readEvent, grant cid.Cid) {
	k := attKey{ev.rec.id, a.s.ids[ev.reader].id, grant}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return
	}
	b := a.pending[k]
	if b == nil {
		b = &attBatch{first: ev.t0}
		a.pending[k] = b
	}
	b.reads = append(b.reads, ev)
	b.last = ev.t0
	a.arm()
}

// arm schedules a flush unless one is scheduled (a.mu held).
func (a *attestor) arm() {
	if a.armed || a.stopped {
		return
	}
	a.armed = true
	a.busy.Add(1)
	a.timer = time.AfterFunc(attestInterval, a.flush)
}

func (a *attestor) flush() {
	defer a.busy.Done()
	a.mu.Lock()
	batches := a.pending
	a.pending = map[attKey]*attBatch{}
	a.armed = false
	a.mu.Unlock()
	w := a.s.w
	for k, b := range batches {
		e, err := a.n.l.Append(context.Background(), ledger.TypeServed, ledger.ServedPayload{Record: k.rec, Reader: k.reader,
			Grant: k.grant, Reads: uint64(len(b.reads)), Blocks: uint64(3 * len(b.reads)), First: b.first, Last: b.last})
		if err != nil {
			b.tries++
			if b.tries < attestTries && a.n.alive.Load() {
				a.mu.Lock()
				if old := a.pending[k]; old != nil {
					old.reads = append(b.reads, old.reads...)
					old.first = b.first
				} else {
					a.pending[k] = b
				}
				a.arm()
				a.mu.Unlock()
				continue
			}
			w.fail("attest", err)
			continue
		}
		now := time.Now()
		a.s.notePublished(e, a.n.idx, now)
		w.readMu.Lock()
		for _, ev := range b.reads {
			ev.served, ev.servedAt = e.CID(), now
		}
		w.readMu.Unlock()
		w.stats["attest"].ok.Add(1)
	}
}

// stop drops what is pending (the node is going away) and waits for a
// flush in progress.
func (a *attestor) stop() {
	a.mu.Lock()
	a.stopped = true
	if a.armed && a.timer.Stop() {
		a.armed = false
		a.busy.Done()
	}
	a.mu.Unlock()
	a.busy.Wait()
}

// idle waits until nothing is pending or flushing.
func (a *attestor) idle() { a.busy.Wait() }
