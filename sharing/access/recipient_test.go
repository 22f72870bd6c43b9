package access

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/keywrap"
)

var (
	pinRecord = cid.MustParse("bafkreihwjra2w7oazsb5pbsmeyiwixhzh2sa4bxei4hxbgzhsf4qndaqh4")
	pinPeerA  = mustPeer("12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X")
	pinPeerB  = mustPeer("12D3KooWH3uVF6wv47WnArKHk5p6cvgCJEb74UTmxztmQDc298L3")
)

func mustPeer(s string) peer.ID {
	p, err := peer.Decode(s)
	if err != nil {
		panic(err)
	}
	return p
}

// The bytes bound into each envelope are a contract between nodes: an
// envelope wrapped by one release must open on every other. They are
// written out here by hand (magic, then each part as a 4-byte big-endian
// length and its bytes), not computed, so that a change to any of them, or
// to keywrap.Info, fails this test instead of slipping by.
func TestRecipientInfoPinned(t *testing.T) {
	const (
		magic  = "medmesh keywrap v1"
		record = "\x00\x00\x00\x3bbafkreihwjra2w7oazsb5pbsmeyiwixhzh2sa4bxei4hxbgzhsf4qndaqh4"
		peerA  = "\x00\x00\x00\x3412D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X"
	)
	for _, c := range []struct {
		r    Recipient
		want string
	}{
		{OwnerRecipient(pinRecord), magic + "\x00\x00\x00\x05owner" + record},
		{GrantRecipient(pinRecord, pinPeerA, "treatment"), magic + "\x00\x00\x00\x05grant" + record + peerA + "\x00\x00\x00\x09treatment"},
		{GrantRecipient(pinRecord, pinPeerA, "research"), magic + "\x00\x00\x00\x05grant" + record + peerA + "\x00\x00\x00\x08research"},
		{GrantRecipient(pinRecord, pinPeerA, ""), magic + "\x00\x00\x00\x05grant" + record + peerA + "\x00\x00\x00\x00"},
		{EscrowRecipient(pinRecord, pinPeerA), magic + "\x00\x00\x00\x09emergency" + record + peerA},
	} {
		if got := c.r.Info(); string(got) != c.want {
			t.Errorf("%s info:\n got %q\nwant %q", c.r, got, c.want)
		}
	}
}

// An envelope opens only as what it was wrapped for: another record,
// grantee, purpose or use fails, and so does another key.
func TestRecipientBinding(t *testing.T) {
	priv, err := keywrap.Generate()
	if err != nil {
		t.Fatal(err)
	}
	other, err := keywrap.Generate()
	if err != nil {
		t.Fatal(err)
	}
	rec2, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: 0x12, MhLength: -1}.Sum([]byte("another record"))
	if err != nil {
		t.Fatal(err)
	}
	all := []Recipient{
		OwnerRecipient(pinRecord), OwnerRecipient(rec2),
		GrantRecipient(pinRecord, pinPeerA, "treatment"), GrantRecipient(pinRecord, pinPeerB, "treatment"),
		GrantRecipient(pinRecord, pinPeerA, "research"), GrantRecipient(rec2, pinPeerA, "treatment"),
		EscrowRecipient(pinRecord, pinPeerA), EscrowRecipient(pinRecord, pinPeerB), EscrowRecipient(rec2, pinPeerA),
	}
	key := bytes.Repeat([]byte{7}, keywrap.KeySize)
	for i, w := range all {
		env, err := w.Wrap(priv.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		for j, u := range all {
			got, err := u.Unwrap(priv, env)
			switch {
			case i == j && (err != nil || !bytes.Equal(got, key)):
				t.Fatalf("%d (%s): does not open as itself: %v", i, w, err)
			case i != j && !errors.Is(err, keywrap.ErrOpen):
				t.Fatalf("wrapped as %d (%s), unwrapped as %d (%s): %v, want ErrOpen", i, w, j, u, err)
			}
		}
		if _, err := w.Unwrap(other, env); !errors.Is(err, keywrap.ErrWrongKey) {
			t.Fatalf("%s: another key: %v, want ErrWrongKey", w, err)
		}
	}
}

// No byte of an envelope can be changed without it failing to open.
func TestRecipientEveryByteFlipped(t *testing.T) {
	priv, err := keywrap.Generate()
	if err != nil {
		t.Fatal(err)
	}
	r := GrantRecipient(pinRecord, pinPeerA, "treatment")
	key := bytes.Repeat([]byte{9}, keywrap.KeySize)
	env, err := r.Wrap(priv.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	for i := range env {
		bad := bytes.Clone(env)
		bad[i] ^= 0x01
		if got, err := r.Unwrap(priv, bad); err == nil {
			t.Fatalf("byte %d flipped: opened as %x", i, got)
		}
	}
	for _, n := range []int{0, 1, len(env) / 2, len(env) - 1} {
		if _, err := r.Unwrap(priv, env[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: opened", n)
		}
	}
	if _, err := r.Unwrap(priv, append(bytes.Clone(env), 0)); err == nil {
		t.Fatal("a trailing byte: opened")
	}
}

func TestRecipientZero(t *testing.T) {
	priv, err := keywrap.Generate()
	if err != nil {
		t.Fatal(err)
	}
	var r Recipient
	if _, err := r.Wrap(priv.Public(), make([]byte, keywrap.KeySize)); err == nil {
		t.Fatal("the zero Recipient wrapped a key")
	}
	if _, err := r.Unwrap(priv, nil); err == nil {
		t.Fatal("the zero Recipient unwrapped")
	}
	if s := fmt.Sprint(GrantRecipient(pinRecord, pinPeerA, "x")); s != "grant envelope" {
		t.Fatalf("String = %q", s)
	}
}
