package membership

import (
	"context"
	"crypto/rand"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/ledger"
)

// fakeLedger is the ledger as the service sees it, in memory.
type fakeLedger struct {
	mu      sync.Mutex
	admin   peer.ID
	members map[peer.ID]ledger.Member
	appends []string
}

func (f *fakeLedger) NetworkID() cid.Cid { return cid.Undef }
func (f *fakeLedger) IsMember(p peer.ID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.members[p]
	return ok
}
func (f *fakeLedger) IsAdmin(p peer.ID) bool { return p == f.admin }
func (f *fakeLedger) Members() []ledger.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []ledger.Member
	for _, m := range f.members {
		out = append(out, m)
	}
	return out
}
func (f *fakeLedger) KEMKey(peer.ID) ([]byte, bool)                         { return nil, false }
func (f *fakeLedger) Entry(context.Context, cid.Cid) (*ledger.Entry, error) { return nil, nil }
func (f *fakeLedger) Subscribe() (<-chan *ledger.Entry, func())             { return nil, func() {} }
func (f *fakeLedger) Ext(string, string) ([]ledger.ExtRow, error)           { return nil, nil }
func (f *fakeLedger) Append(_ context.Context, typ string, pl any) (*ledger.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.appends = append(f.appends, typ)
	if a, ok := pl.(ledger.MemberAddPayload); ok {
		f.members[a.Peer] = ledger.Member{Peer: a.Peer, Org: a.Org, Roles: a.Roles}
	}
	return &ledger.Entry{}, nil
}

func testService(t *testing.T, admin peer.ID, now *time.Time) (*Service, *fakeLedger) {
	l := &fakeLedger{admin: admin, members: map[peer.ID]ledger.Member{admin: {Peer: admin, Roles: []string{"admin"}}}}
	s := &Service{
		cfg: Config{Self: admin, Ledger: l, Local: dssync.MutexWrap(datastore.NewMapDatastore()), Now: func() time.Time { return *now }},
		log: slog.New(slog.DiscardHandler), ctx: context.Background(),
	}
	s.inv.all = map[string]*pending{}
	return s, l
}

// A pending invitation for p, with secret.
func (s *Service) testInvite(t *testing.T, p peer.ID, exp time.Time) []byte {
	secret := make([]byte, SecretSize)
	rand.Read(secret)
	s.inv.all[secretKey(secret)] = &pending{Peer: []byte(p), Org: "Lab", Expires: exp.UnixMilli()}
	return secret
}

func TestRedeemSingleUseBoundExpiring(t *testing.T) {
	_, admin := newIdentity(t)
	_, invitee := newIdentity(t)
	_, stranger := newIdentity(t)
	now := time.Now()
	s, l := testService(t, admin, &now)
	secret := s.testInvite(t, invitee, now.Add(time.Hour))
	if !s.isGuest(invitee) || s.isGuest(stranger) {
		t.Fatal("guests: only the invitee of a pending invitation")
	}

	// Presented by another node: refused, and nothing signed.
	out, _, err := s.redeem(context.Background(), stranger, secret)
	if out != redeemRefused || err == nil || !strings.Contains(err.Error(), "another node") || len(l.appends) != 0 {
		t.Fatalf("stranger: %s %v %v", out, err, l.appends)
	}
	// An unknown secret: refused.
	if out, _, err := s.redeem(context.Background(), invitee, make([]byte, SecretSize)); out != redeemRefused || err == nil {
		t.Fatalf("unknown secret: %s %v", out, err)
	}
	// The invitee: admitted once, with the invitation's org.
	out, _, err = s.redeem(context.Background(), invitee, secret)
	if out != redeemAdmitted || err != nil || !l.IsMember(invitee) || l.members[invitee].Org != "Lab" {
		t.Fatalf("invitee: %s %v", out, err)
	}
	if s.isGuest(invitee) {
		t.Fatal("a used invitation still admits a guest")
	}
	// Twice: refused.
	if out, _, err := s.redeem(context.Background(), invitee, secret); out != redeemRefused || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("second use: %s %v", out, err)
	}
	if len(l.appends) != 1 {
		t.Fatalf("appends %v", l.appends)
	}

	// Expired: refused.
	_, late := newIdentity(t)
	secret2 := s.testInvite(t, late, now.Add(time.Minute))
	now = now.Add(2 * time.Minute)
	if s.isGuest(late) {
		t.Fatal("an expired invitation still admits a guest")
	}
	if out, _, err := s.redeem(context.Background(), late, secret2); out != redeemRefused || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired: %s %v", out, err)
	}

	// Cancelled by a removal: refused.
	_, gone := newIdentity(t)
	secret3 := s.testInvite(t, gone, now.Add(time.Hour))
	s.cancelInvites(context.Background(), gone)
	if out, _, err := s.redeem(context.Background(), gone, secret3); out != redeemRefused || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("cancelled: %s %v", out, err)
	}
}
