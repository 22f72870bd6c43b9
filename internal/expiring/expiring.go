// Package expiring is a map whose entries expire after a time to live and
// whose size is bounded (the oldest entry makes room for a new key), for
// small caches that hold something for a client's next request: a study
// a console session opened, the rest of a peer's ledger catch-up. It is not
// safe for concurrent use; its owner locks around it.
package expiring

import "time"

// Map holds at most max entries, each for ttl after it was put.
type Map[K comparable, V any] struct {
	ttl time.Duration
	max int
	m   map[K]entry[V]
}

type entry[V any] struct {
	v  V
	at time.Time
}

// New returns an empty map of entries that live ttl, at most max of them.
func New[K comparable, V any](ttl time.Duration, max int) *Map[K, V] {
	return &Map[K, V]{ttl: ttl, max: max, m: map[K]entry[V]{}}
}

// Put sets k to v at now, after dropping what expired; if the map is full
// and k is new, the oldest entry goes.
func (m *Map[K, V]) Put(k K, v V, now time.Time) {
	for k2, e := range m.m {
		if now.Sub(e.at) > m.ttl {
			delete(m.m, k2)
		}
	}
	if _, ok := m.m[k]; !ok && len(m.m) >= m.max {
		var oldest K
		var at time.Time
		for k2, e := range m.m {
			if at.IsZero() || e.at.Before(at) {
				oldest, at = k2, e.at
			}
		}
		delete(m.m, oldest)
	}
	m.m[k] = entry[V]{v: v, at: now}
}

// Get returns k's value if it has not expired at now.
func (m *Map[K, V]) Get(k K, now time.Time) (V, bool) {
	e, ok := m.m[k]
	if !ok || now.Sub(e.at) > m.ttl {
		var zero V
		return zero, false
	}
	return e.v, true
}

// Take is Get, and forgets k whatever it held.
func (m *Map[K, V]) Take(k K, now time.Time) (V, bool) {
	v, ok := m.Get(k, now)
	delete(m.m, k)
	return v, ok
}

// Len is the number of entries held, expired ones not yet dropped
// included.
func (m *Map[K, V]) Len() int { return len(m.m) }
