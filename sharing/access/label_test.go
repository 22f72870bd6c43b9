package access

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/internal/strictcbor"
	"github.com/medmesh/medmesh/sharing/ledger"
)

func TestLabel(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	rec, other := cidOf("rec"), cidOf("other")
	grantee, _ := peer.Decode("12D3KooWJqJwc1tvCkrUkqgnkPr4zGjXmQKWgQtQahbqnwqcrVE9")
	stranger, _ := peer.Decode("12D3KooWRYzZ7djC8E3NtHxdg3K1CVqUo9ztdgRZmVZjoHGYtPGz")
	l := Label{Name: "Discharge summary – Müller.pdf", MediaType: "application/pdf"}
	sealed, err := SealLabel(key, rec, grantee, "treatment", l)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("Discharge")) || bytes.Contains(sealed, []byte("pdf")) {
		t.Fatal("the sealed label carries the name in clear")
	}
	if got, err := OpenLabel(key, rec, grantee, "treatment", sealed); err != nil || got != l {
		t.Fatalf("open: %+v %v", got, err)
	}
	wrongKey := make([]byte, 32)
	rand.Read(wrongKey)
	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)-1] ^= 1
	for name, open := range map[string]func() (Label, error){
		"other record":  func() (Label, error) { return OpenLabel(key, other, grantee, "treatment", sealed) },
		"other grantee": func() (Label, error) { return OpenLabel(key, rec, stranger, "treatment", sealed) },
		"other purpose": func() (Label, error) { return OpenLabel(key, rec, grantee, "research", sealed) },
		"other key":     func() (Label, error) { return OpenLabel(wrongKey, rec, grantee, "treatment", sealed) },
		"tampered":      func() (Label, error) { return OpenLabel(key, rec, grantee, "treatment", tampered) },
		"truncated":     func() (Label, error) { return OpenLabel(key, rec, grantee, "treatment", sealed[:10]) },
		"empty":         func() (Label, error) { return OpenLabel(key, rec, grantee, "treatment", nil) },
	} {
		if _, err := open(); !errors.Is(err, ErrLabel) {
			t.Errorf("%s: %v, want ErrLabel", name, err)
		}
	}
	// A long name is cut at a rune boundary and the label stays within
	// what the ledger accepts.
	long := Label{Name: strings.Repeat("é", 2000), MediaType: strings.Repeat("x", 1000)}
	sealed, err = SealLabel(key, rec, grantee, "treatment", long)
	if err != nil || len(sealed) > ledger.MaxGrantLabel {
		t.Fatalf("long label: %d bytes, %v", len(sealed), err)
	}
	got, err := OpenLabel(key, rec, grantee, "treatment", sealed)
	if err != nil || len(got.Name) != MaxLabelName || !strings.HasPrefix(long.Name, got.Name) || len(got.MediaType) != MaxLabelMediaType {
		t.Fatalf("long label opened: %d %d %v", len(got.Name), len(got.MediaType), err)
	}
}

// FuzzLabel: neither a sealed label off the ledger nor a label's plaintext
// (should a key open a forged one) makes the decoder panic, and a
// plaintext that decodes re-encodes to a label that decodes the same.
func FuzzLabel(f *testing.F) {
	key := make([]byte, 32)
	rec := cidOf("rec")
	grantee, _ := peer.Decode("12D3KooWJqJwc1tvCkrUkqgnkPr4zGjXmQKWgQtQahbqnwqcrVE9")
	sealed, err := SealLabel(key, rec, grantee, "treatment", Label{Name: "report.pdf", MediaType: "application/pdf"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed)
	for _, l := range []Label{{Name: "report.pdf", MediaType: "application/pdf"}, {Name: ""}, {Name: "Ünïcode ✓"}} {
		pt, _ := strictcbor.Enc.Marshal(l)
		f.Add(pt)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		OpenLabel(key, rec, grantee, "treatment", b)
		l, err := decodeLabel(b)
		if err != nil {
			return
		}
		pt, err := strictcbor.Enc.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		if l2, err := decodeLabel(pt); err != nil || l2 != l {
			t.Fatalf("re-decoded %+v %v, want %+v", l2, err, l)
		}
	})
}
