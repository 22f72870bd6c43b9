package keywrap

import (
	"bytes"
	"errors"
	"testing"
)

// A keyring opens envelopes sealed to any key it keeps, by the ID they
// name, and forgets a dropped key for good; the current key is never
// dropped.
func TestKeyring(t *testing.T) {
	a, _ := Generate()
	b, _ := Generate()
	r := NewKeyring(a)
	dk := bytes.Repeat([]byte{7}, KeySize)
	envA, _ := Wrap(a.Public(), dk, Info("x"))
	r.Rotate(b)
	if !bytes.Equal(r.Public(), b.Public()) || len(r.Old()) != 1 || r.Old()[0] != a.ID() {
		t.Fatal("rotate")
	}
	k, ok := r.Key(envA.KeyID)
	if !ok {
		t.Fatal("the previous key is gone after a rotation")
	}
	if got, err := Unwrap(k, envA, Info("x")); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("unwrap with the previous key: %v", err)
	}
	r.Drop(b.ID()) // the current key: kept
	if _, ok := r.Key(b.ID()); !ok {
		t.Fatal("dropped the current key")
	}
	r.Drop(a.ID())
	if _, ok := r.Key(a.ID()); ok || len(r.Old()) != 0 {
		t.Fatal("a dropped key is still there")
	}
	if _, err := Unwrap(b, envA, Info("x")); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("another key: %v", err)
	}
}
