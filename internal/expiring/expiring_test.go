package expiring

import (
	"testing"
	"time"
)

func TestMap(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	m := New[string, int](time.Minute, 2)
	m.Put("a", 1, t0)
	m.Put("b", 2, t0.Add(time.Second))
	if v, ok := m.Get("a", t0.Add(time.Minute)); !ok || v != 1 {
		t.Fatalf("a at its ttl: %v %v", v, ok)
	}
	if _, ok := m.Get("a", t0.Add(time.Minute+1)); ok {
		t.Fatal("a after its ttl")
	}
	// Full: a new key pushes out the oldest, an old key is replaced.
	m.Put("c", 3, t0.Add(2*time.Second))
	if _, ok := m.Get("a", t0.Add(3*time.Second)); ok || m.Len() != 2 {
		t.Fatalf("the oldest kept in a full map (%d entries)", m.Len())
	}
	m.Put("b", 20, t0.Add(4*time.Second))
	if v, _ := m.Get("b", t0.Add(5*time.Second)); v != 20 || m.Len() != 2 {
		t.Fatalf("b replaced: %v, %d entries", v, m.Len())
	}
	if v, _ := m.Get("c", t0.Add(5*time.Second)); v != 3 {
		t.Fatal("putting a key already held pushed another out")
	}
	// Take forgets, whether or not it expired.
	if v, ok := m.Take("c", t0.Add(6*time.Second)); !ok || v != 3 {
		t.Fatalf("take c: %v %v", v, ok)
	}
	if _, ok := m.Take("c", t0.Add(6*time.Second)); ok {
		t.Fatal("c taken twice")
	}
	if _, ok := m.Take("b", t0.Add(time.Hour)); ok || m.Len() != 0 {
		t.Fatalf("an expired take: %d entries left", m.Len())
	}
	// Expired entries go at the next put.
	m.Put("x", 1, t0)
	m.Put("y", 2, t0.Add(2*time.Minute))
	if m.Len() != 1 {
		t.Fatalf("%d entries after a put past x's ttl", m.Len())
	}
}
