package ledger

import (
	"errors"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
)

// pending buffers entries whose parents are missing, and remembers recently
// rejected CIDs so their descendants are rejected rather than buffered.
// Guarded by Ledger.mu.
type pending struct {
	max      int
	entries  map[cid.Cid]*pendEntry
	waiters  map[cid.Cid][]cid.Cid // missing parent -> waiting children
	order    []cid.Cid             // arrival order, for eviction
	rej      map[cid.Cid]struct{}
	rejOrder []cid.Cid
	wantFrom map[peer.ID]bool // peers that sent entries we could not place
}

type pendEntry struct {
	e       *Entry
	missing int
}

const maxRejectedMemory = 10000

func newPending(max int) *pending {
	return &pending{max: max, entries: map[cid.Cid]*pendEntry{}, waiters: map[cid.Cid][]cid.Cid{},
		rej: map[cid.Cid]struct{}{}, wantFrom: map[peer.ID]bool{}}
}

func (p *pending) len() int { return len(p.entries) }

// add buffers e; it returns false if e was dropped because the buffer is
// full of entries that arrived earlier (a later sync fetches it again).
func (p *pending) add(e *Entry, missing []cid.Cid) bool {
	if _, ok := p.entries[e.cid]; ok {
		return true
	}
	for len(p.entries) >= p.max && len(p.order) > 0 {
		old := p.order[0]
		p.order = p.order[1:]
		delete(p.entries, old)
	}
	if len(p.entries) >= p.max {
		return false
	}
	p.entries[e.cid] = &pendEntry{e: e, missing: len(missing)}
	p.order = append(p.order, e.cid)
	for _, m := range missing {
		p.waiters[m] = append(p.waiters[m], e.cid)
	}
	if len(p.order) > 2*p.max {
		live := p.order[:0]
		for _, c := range p.order {
			if _, ok := p.entries[c]; ok {
				live = append(live, c)
			}
		}
		p.order = live
	}
	return true
}

// release returns the buffered entries that waited for c and now have no
// missing parent left (they are re-validated by the caller).
func (p *pending) release(c cid.Cid) []*Entry {
	ws, ok := p.waiters[c]
	if !ok {
		return nil
	}
	delete(p.waiters, c)
	var out []*Entry
	for _, w := range ws {
		pe, ok := p.entries[w]
		if !ok {
			continue
		}
		pe.missing--
		if pe.missing <= 0 {
			delete(p.entries, w)
			out = append(out, pe.e)
		}
	}
	return out
}

func (p *pending) markRejected(c cid.Cid) {
	if _, ok := p.rej[c]; ok {
		return
	}
	if len(p.rejOrder) >= maxRejectedMemory {
		delete(p.rej, p.rejOrder[0])
		p.rejOrder = p.rejOrder[1:]
	}
	p.rej[c] = struct{}{}
	p.rejOrder = append(p.rejOrder, c)
}

func (p *pending) rejected(c cid.Cid) bool {
	_, ok := p.rej[c]
	return ok
}

// metrics are the ledger's Prometheus collectors.
type metrics struct {
	rejected   *prometheus.CounterVec
	applied    prometheus.Counter
	duplicates prometheus.Counter
	pending    prometheus.Gauge
	heads      prometheus.Gauge
	syncs      *prometheus.CounterVec
	fetched    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medmesh_ledger_rejected_total",
			Help: "Ledger entries rejected, by reason."}, []string{"reason"}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_ledger_applied_total",
			Help: "Ledger entries validated and applied."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_ledger_duplicates_total",
			Help: "Ledger entries received again after being applied."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "medmesh_ledger_pending_entries",
			Help: "Entries waiting for missing parents."}),
		heads: prometheus.NewGauge(prometheus.GaugeOpts{Name: "medmesh_ledger_heads",
			Help: "Current number of DAG heads."}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "medmesh_ledger_syncs_total",
			Help: "Catch-up sync sessions with peers, by result."}, []string{"result"}),
		fetched: prometheus.NewCounter(prometheus.CounterOpts{Name: "medmesh_ledger_sync_fetched_entries_total",
			Help: "Entries received through the sync protocol."}),
	}
	if reg == nil {
		return m
	}
	reg1 := func(c prometheus.Collector) prometheus.Collector {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return are.ExistingCollector
			}
		}
		return c
	}
	m.rejected = reg1(m.rejected).(*prometheus.CounterVec)
	m.applied = reg1(m.applied).(prometheus.Counter)
	m.duplicates = reg1(m.duplicates).(prometheus.Counter)
	m.pending = reg1(m.pending).(prometheus.Gauge)
	m.heads = reg1(m.heads).(prometheus.Gauge)
	m.syncs = reg1(m.syncs).(*prometheus.CounterVec)
	m.fetched = reg1(m.fetched).(prometheus.Counter)
	return m
}

// subscriber receives applied entries through an unbounded queue, so a slow
// consumer never blocks validation.
type subscriber struct {
	ch     chan *Entry
	mu     sync.Mutex
	q      []*Entry
	signal chan struct{}
	done   chan struct{}
	once   sync.Once
}

func (s *subscriber) run() {
	defer close(s.ch)
	for {
		s.mu.Lock()
		q := s.q
		s.q = nil
		s.mu.Unlock()
		for _, e := range q {
			select {
			case s.ch <- e:
			case <-s.done:
				return
			}
		}
		select {
		case <-s.signal:
		case <-s.done:
			return
		}
	}
}

func (s *subscriber) push(es []*Entry) {
	s.mu.Lock()
	s.q = append(s.q, es...)
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

func (s *subscriber) close() { s.once.Do(func() { close(s.done) }) }

// Subscribe returns a channel of entries as they are applied, in apply order,
// and a function that cancels the subscription (the channel is then closed).
// Delivery never blocks the ledger: undelivered entries queue in memory.
func (l *Ledger) Subscribe() (<-chan *Entry, func()) {
	s := &subscriber{ch: make(chan *Entry, 64), signal: make(chan struct{}, 1), done: make(chan struct{})}
	go s.run()
	l.subMu.Lock()
	select {
	case <-l.closed:
		s.close()
	default:
		l.subs[s] = struct{}{}
	}
	l.subMu.Unlock()
	return s.ch, func() {
		l.subMu.Lock()
		delete(l.subs, s)
		l.subMu.Unlock()
		s.close()
	}
}

func (l *Ledger) notify(es []*Entry) {
	if len(es) == 0 {
		return
	}
	cp := append([]*Entry(nil), es...)
	l.subMu.Lock()
	for s := range l.subs {
		s.push(cp)
	}
	l.subMu.Unlock()
}
