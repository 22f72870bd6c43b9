package main

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/medmesh/medmesh/sharing/ledger"
)

// countingStore is a ledger.Store that remembers which entries it stored
// and how many bytes they take. The Store interface is embedded, so a
// method added to it later still reaches the real store.
type countingStore struct {
	ledger.Store
	mu      sync.Mutex
	entries map[cid.Cid]entryInfo
}

type entryInfo struct {
	typ   string
	size  int
	scope string // wire scope: "" for the global scope
}

func newCountingStore(s ledger.Store) *countingStore {
	return &countingStore{Store: s, entries: map[cid.Cid]entryInfo{}}
}

// PutEntries implements ledger.Store.
func (s *countingStore) PutEntries(ctx context.Context, es []*ledger.Entry) error {
	if err := s.Store.PutEntries(ctx, es); err != nil {
		return err
	}
	s.mu.Lock()
	for _, e := range es {
		s.entries[e.CID()] = entryInfo{typ: e.Type, size: len(e.Bytes()), scope: e.Scope}
	}
	s.mu.Unlock()
	return nil
}

// stored returns a copy of what the store holds.
func (s *countingStore) stored() map[cid.Cid]entryInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[cid.Cid]entryInfo, len(s.entries))
	for c, i := range s.entries {
		out[c] = i
	}
	return out
}

// stateBytes is the size of every key and value of the ledger's state and
// indexes (everything but the entries' own bytes).
func (s *countingStore) stateBytes(ctx context.Context) (int64, error) {
	var n int64
	err := s.Store.Scan(ctx, "", false, func(k string, v []byte) bool {
		n += int64(len(k) + len(v))
		return true
	})
	return n, err
}

// traffic counts the bytes a host's streams carry, by direction and
// protocol. Mocknet has no bandwidth counter of its own
// (peernet.BandwidthTotals returns zeros), so every stream the host opens or
// accepts is wrapped.
type traffic struct {
	sent, recv         atomic.Int64
	syncSent, syncRecv atomic.Int64 // the ledger's sync protocol; the rest is GossipSub
}

func (t *traffic) snapshot() trafficSnap {
	return trafficSnap{t.sent.Load(), t.recv.Load(), t.syncSent.Load(), t.syncRecv.Load()}
}

type trafficSnap struct{ sent, recv, syncSent, syncRecv int64 }

func (a trafficSnap) minus(b trafficSnap) trafficSnap {
	return trafficSnap{a.sent - b.sent, a.recv - b.recv, a.syncSent - b.syncSent, a.syncRecv - b.syncRecv}
}

// countingHost wraps a host so that every stream is counted in t.
type countingHost struct {
	host.Host
	t *traffic
}

func (h *countingHost) wrap(s network.Stream, pids ...protocol.ID) network.Stream {
	sync := s.Protocol() == ledger.SyncProtocol || (len(pids) == 1 && pids[0] == ledger.SyncProtocol)
	return &countingStream{Stream: s, t: h.t, sync: sync}
}

func (h *countingHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, err
	}
	return h.wrap(s, pids...), nil
}

func (h *countingHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, func(s network.Stream) { handler(h.wrap(s)) })
}

func (h *countingHost) SetStreamHandlerMatch(pid protocol.ID, m func(protocol.ID) bool, handler network.StreamHandler) {
	h.Host.SetStreamHandlerMatch(pid, m, func(s network.Stream) { handler(h.wrap(s)) })
}

type countingStream struct {
	network.Stream
	t    *traffic
	sync bool
}

func (s *countingStream) Read(b []byte) (int, error) {
	n, err := s.Stream.Read(b)
	s.t.recv.Add(int64(n))
	if s.sync {
		s.t.syncRecv.Add(int64(n))
	}
	return n, err
}

func (s *countingStream) Write(b []byte) (int, error) {
	n, err := s.Stream.Write(b)
	s.t.sent.Add(int64(n))
	if s.sync {
		s.t.syncSent.Add(int64(n))
	}
	return n, err
}
