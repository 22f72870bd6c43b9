package ledger

import "sync"

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

// TypeStateLoaded is the type of a notification Subscribe delivers, never an
// entry on the wire or in the store: the ledger loaded a scope's state from
// a checkpoint (joining the network, or starting to follow a scope with
// nothing of it) instead of applying the entries behind it. Its Scope is
// the wire scope ("" for the global one); it has no payload, author or
// CID. A service that derives something from applied entries (a record to
// place, a network key to install, an erasure to carry out, a grant to
// index) re-derives it from the state on this notification.
const TypeStateLoaded = "ledger.state-loaded"

// notifyStateLoaded tells the subscribers that scope's state was loaded
// from a checkpoint (TypeStateLoaded).
func (l *Ledger) notifyStateLoaded(scope string) {
	l.hints.forget(nil, true)
	l.notify([]*Entry{{Type: TypeStateLoaded, Scope: wireScope(scope)}})
}

// Subscribe returns a channel of entries as they are applied, in apply order,
// and a function that cancels the subscription (the channel is then closed).
// Delivery never blocks the ledger: undelivered entries queue in memory. It
// also delivers TypeStateLoaded notifications.
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
