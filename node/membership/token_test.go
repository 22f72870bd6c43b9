package membership

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func newIdentity(t testing.TB) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

func sampleInvitation(t testing.TB, inviter peer.ID, exp time.Time) *Invitation {
	psk := make([]byte, 32)
	rand.Read(psk)
	secret := make([]byte, SecretSize)
	rand.Read(secret)
	return &Invitation{
		Genesis: []byte("genesis"), PSK: psk, Epoch: 2, Secret: secret, Expires: exp.UnixMilli(),
		Inviter: []byte(inviter), Addrs: []string{"/ip4/127.0.0.1/tcp/4101/p2p/" + inviter.String()},
	}
}

func TestTokenOpensOnlyForItsInvitee(t *testing.T) {
	_, inviter := newIdentity(t)
	inviteeKey, invitee := newIdentity(t)
	otherKey, other := newIdentity(t)
	now := time.Now()
	inv := sampleInvitation(t, inviter, now.Add(time.Hour))
	tok, err := SealToken(invitee, inv)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, TokenPrefix) {
		t.Fatalf("token %q", tok)
	}
	got, err := OpenToken(tok, inviteeKey, now)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.PSK) != string(inv.PSK) || string(got.Secret) != string(inv.Secret) || got.Epoch != 2 || got.ExpiresAt().UnixMilli() != inv.Expires {
		t.Fatalf("round trip changed the invitation: %+v", got)
	}
	// Another node: refused, naming both peers.
	if _, err := OpenToken(tok, otherKey, now); !errors.Is(err, ErrNotForThisNode) || !strings.Contains(err.Error(), invitee.String()) || !strings.Contains(err.Error(), other.String()) {
		t.Fatalf("another node opened it: %v", err)
	}
	// The same token relabelled for the other node does not open either:
	// the HPKE info binds the invitee, and the key is the invitee's.
	_, sealed, _ := TokenInvitee(tok)
	relabelled, _ := tokenEnc.Marshal(&sealedToken{Invitee: []byte(other), Sealed: sealed})
	if _, err := OpenToken(TokenPrefix+base64.RawURLEncoding.EncodeToString(relabelled), otherKey, now); !errors.Is(err, ErrNotForThisNode) {
		t.Fatalf("relabelled token: %v", err)
	}
	// Expired.
	if _, err := OpenToken(tok, inviteeKey, now.Add(2*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired token: %v", err)
	}
	// The old, unbound tokens are refused with a hint.
	if _, err := OpenToken("medmesh-invite-1:oWE", inviteeKey, now); !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), "new one") {
		t.Fatalf("old token: %v", err)
	}
}

// Every byte of a token flipped: an error, never a panic, never an
// invitation.
func TestTokenEveryByteFlipped(t *testing.T) {
	_, inviter := newIdentity(t)
	key, invitee := newIdentity(t)
	now := time.Now()
	tok, err := SealToken(invitee, sampleInvitation(t, inviter, now.Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(tok[len(TokenPrefix):])
	for i := range raw {
		b := append([]byte(nil), raw...)
		b[i] ^= 0x01
		if _, err := OpenToken(TokenPrefix+base64.RawURLEncoding.EncodeToString(b), key, now); err == nil {
			t.Fatalf("flipping byte %d still opens", i)
		}
	}
	for _, n := range []int{0, 1, len(raw) / 2, len(raw) - 1} {
		if _, err := OpenToken(TokenPrefix+base64.RawURLEncoding.EncodeToString(raw[:n]), key, now); err == nil {
			t.Fatalf("truncated to %d bytes still opens", n)
		}
	}
}

func TestX25519FromEd25519Agrees(t *testing.T) {
	// The public key converted from the peer ID and the private key
	// derived from the identity are one X25519 key pair.
	for range 20 {
		k, id := newIdentity(t)
		pub, _ := id.ExtractPublicKey()
		xpub, err := x25519Public(pub)
		if err != nil {
			t.Fatal(err)
		}
		xpriv, err := x25519Private(k)
		if err != nil {
			t.Fatal(err)
		}
		if !xpriv.PublicKey().Equal(xpub) {
			t.Fatal("converted public key does not match the derived private key")
		}
	}
}

func FuzzOpenToken(f *testing.F) {
	_, inviter := newIdentity(f)
	key, invitee := newIdentity(f)
	now := time.Now()
	tok, err := SealToken(invitee, sampleInvitation(f, inviter, now.Add(time.Hour)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add(TokenPrefix)
	f.Add(TokenPrefix + "oA")
	f.Add("medmesh-invite-1:oWE")
	f.Fuzz(func(t *testing.T, s string) {
		inv, err := OpenToken(s, key, now)
		if err == nil && (len(inv.PSK) != 32 || len(inv.Secret) != SecretSize) {
			t.Fatalf("opened a bad invitation: %+v", inv)
		}
		_, _, _ = TokenInvitee(s)
	})
}

func FuzzRedeemMessages(f *testing.F) {
	var buf strings.Builder
	writeMsg(&buf, &redeemReq{Secret: make([]byte, SecretSize)})
	f.Add([]byte(buf.String()))
	buf.Reset()
	writeMsg(&buf, &redeemResp{Outcome: redeemRefused, Error: "no"})
	f.Add([]byte(buf.String()))
	f.Add([]byte{0, 0, 0, 1, 0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var req redeemReq
		_ = readMsg(strings.NewReader(string(b)), &req)
		var resp redeemResp
		_ = readMsg(strings.NewReader(string(b)), &resp)
	})
}
