package keywrap

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

func TestWrapUnwrap(t *testing.T) {
	alice, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := Generate()
	key := make([]byte, KeySize)
	rand.Read(key)
	info := Info("record", "bafyA", "grantee", "peerB", "treatment")
	env, err := Wrap(alice.Public(), key, info)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unwrap(alice, env, info)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("unwrap: %v", err)
	}
	if _, err := Unwrap(bob, env, info); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("other key: got %v", err)
	}
	if _, err := Unwrap(alice, env, Info("record", "bafyB", "grantee", "peerB", "treatment")); !errors.Is(err, ErrOpen) {
		t.Fatalf("other record: got %v", err)
	}
	tampered := *env
	tampered.Sealed = append([]byte(nil), env.Sealed...)
	tampered.Sealed[len(tampered.Sealed)-1] ^= 1
	if _, err := Unwrap(alice, &tampered, info); !errors.Is(err, ErrOpen) {
		t.Fatalf("tampered: got %v", err)
	}
}

func TestPrivateKeyRoundTrip(t *testing.T) {
	k, _ := Generate()
	b, err := k.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.Public(), k2.Public()) {
		t.Fatal("public key changed after round trip")
	}
	if err := ValidatePublicKey(k.Public()); err != nil {
		t.Fatal(err)
	}
	if err := ValidatePublicKey([]byte("short")); err == nil {
		t.Fatal("short public key accepted")
	}
}

func TestInfoUnambiguous(t *testing.T) {
	if bytes.Equal(Info("ab", "c"), Info("a", "bc")) {
		t.Fatal("info parts are ambiguous")
	}
}

func TestEnvelopeEncoding(t *testing.T) {
	k, _ := Generate()
	env, _ := Wrap(k.Public(), make([]byte, KeySize), nil)
	b, _ := env.MarshalBinary()
	var e2 Envelope
	if err := e2.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if e2.KeyID != env.KeyID || !bytes.Equal(e2.Sealed, env.Sealed) {
		t.Fatal("round trip changed envelope")
	}
	for name, bad := range map[string][]byte{
		"empty":    nil,
		"trailing": append(append([]byte(nil), b...), 0),
		"short":    b[:len(b)-1],
		"magic":    append([]byte("XXXX"), b[4:]...),
	} {
		if err := new(Envelope).UnmarshalBinary(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzEnvelopeDecode(f *testing.F) {
	k, _ := Generate()
	env, _ := Wrap(k.Public(), make([]byte, KeySize), []byte("x"))
	b, _ := env.MarshalBinary()
	f.Add(b)
	f.Add([]byte("MMKW"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var e Envelope
		if err := e.UnmarshalBinary(data); err != nil {
			return
		}
		out, err := e.MarshalBinary()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("re-encode differs")
		}
		// Opening garbage must fail cleanly, never panic.
		_, _ = Unwrap(k, &e, []byte("x"))
	})
}
