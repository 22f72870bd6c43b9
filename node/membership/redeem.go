package membership

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/medmesh/medmesh/internal/atomicfile"
	"github.com/medmesh/medmesh/node/repo"
)

// RedeemProtocol is the stream protocol an invitee's daemon presents its
// invitation's secret over, to the inviter: one request, one response.
const RedeemProtocol protocol.ID = "/medmesh/invite/redeem/1"

// InvitationFile is where `network join` leaves the opened invitation for
// the daemon to redeem (0600: it holds the secret). The daemon removes it
// once the node is a member.
const InvitationFile = "network/invitation"

const (
	maxRedeemMsg   = 4 << 10
	redeemTimeout  = 30 * time.Second
	redeemRetryMin = time.Second
	redeemRetryMax = time.Minute
)

type redeemReq struct {
	Secret []byte `cbor:"1,keyasint"`
}

type redeemResp struct {
	Outcome string `cbor:"1,keyasint"`
	Error   string `cbor:"2,keyasint,omitempty"`
	Entry   []byte `cbor:"3,keyasint,omitempty"`
}

// writeMsg writes a length-prefixed CBOR message.
func writeMsg(w io.Writer, v any) error {
	b, err := tokenEnc.Marshal(v)
	if err != nil {
		return err
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// readMsg reads a length-prefixed CBOR message of at most maxRedeemMsg
// bytes, strictly.
func readMsg(r io.Reader, v any) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	l := binary.BigEndian.Uint32(n[:])
	if l == 0 || l > maxRedeemMsg {
		return fmt.Errorf("message of %d bytes", l)
	}
	b := make([]byte, l)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return tokenDec.Unmarshal(b, v)
}

// handleRedeem serves the redeem protocol on the inviter's node.
func (s *Service) handleRedeem(st network.Stream) {
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(redeemTimeout))
	var req redeemReq
	if err := readMsg(bufio.NewReader(io.LimitReader(st, maxRedeemMsg+4)), &req); err != nil || len(req.Secret) != SecretSize {
		_ = st.Reset()
		return
	}
	out, entry, err := s.redeem(s.ctx, st.Conn().RemotePeer(), req.Secret)
	resp := redeemResp{Outcome: out}
	if err != nil {
		resp.Error = err.Error()
	}
	if entry.Defined() {
		resp.Entry = entry.Bytes()
	}
	if err := writeMsg(st, &resp); err != nil {
		_ = st.Reset()
		return
	}
	if out == redeemRefused {
		// The guest connection has nothing more to do here.
		go func() {
			time.Sleep(time.Second)
			s.net.MembershipChanged()
		}()
	}
}

// joining is the invitee's side: the invitation `network join` stored, and
// what became of it.
type joining struct {
	mu      sync.Mutex
	inv     *Invitation // nil: none pending
	inviter peer.ID
	state   string // "", "pending", "admitted", "refused: ..."
}

func (j *joining) isInviter(p peer.ID) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.inv != nil && p == j.inviter
}

func (j *joining) set(state string) {
	j.mu.Lock()
	j.state = state
	j.mu.Unlock()
}

// JoinState says what became of this node's invitation: "" (none),
// "pending", "admitted" or "refused: why".
func (s *Service) JoinState() string {
	s.joining.mu.Lock()
	defer s.joining.mu.Unlock()
	return s.joining.state
}

// loadJoining reads the invitation `network join` stored, unless this node
// is a member already (then it is removed).
func (s *Service) loadJoining() error {
	path := s.cfg.Repo.Path(InvitationFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("membership: read %s: %w", InvitationFile, err)
	}
	if s.cfg.Ledger.IsMember(s.cfg.Self) {
		return os.Remove(path)
	}
	var inv Invitation
	if err := tokenDec.Unmarshal(b, &inv); err != nil {
		s.log.Warn("the stored invitation is unreadable; run `network join TOKEN` again", "err", err)
		return nil
	}
	inviter, err := inv.InviterID()
	if err != nil {
		s.log.Warn("the stored invitation names no inviter; run `network join TOKEN` again", "err", err)
		return nil
	}
	s.joining.mu.Lock()
	s.joining.inv, s.joining.inviter, s.joining.state = &inv, inviter, "pending"
	s.joining.mu.Unlock()
	return nil
}

// redeemLoop presents this node's invitation to its inviter until it is
// admitted or refused, then waits for its admission to reach its ledger.
func (s *Service) redeemLoop() {
	s.joining.mu.Lock()
	inv, inviter := s.joining.inv, s.joining.inviter
	s.joining.mu.Unlock()
	if inv == nil {
		return
	}
	var addrs []peer.AddrInfo
	for _, a := range inv.Addrs {
		if ai, err := peer.AddrInfoFromString(a); err == nil {
			addrs = append(addrs, *ai)
		}
	}
	wait := redeemRetryMin
	for s.ctx.Err() == nil && !s.cfg.Ledger.IsMember(s.cfg.Self) {
		if !s.cfg.Now().Before(inv.ExpiresAt()) {
			s.joining.set("refused: the invitation expired at " + inv.ExpiresAt().Format(time.RFC3339) + "; ask the admin for a new one")
			s.log.Error("the invitation expired before its inviter could be reached; ask the admin for a new one (`medmesh network invite --peer " + s.cfg.Self.String() + "`)")
			return
		}
		out, err := s.presentInvitation(inviter, addrs, inv.Secret)
		switch {
		case err != nil:
			s.log.Info("inviter not reached yet; retrying", "inviter", inviter.String(), "err", err, "in", wait)
		case out.Outcome == redeemRefused:
			s.joining.set("refused: " + out.Error)
			s.log.Error("the inviter refused this node's invitation", "inviter", inviter.String(), "reason", out.Error)
			return
		default:
			s.joining.set("admitted")
			s.log.Info("invitation redeemed; waiting for the admission to reach this node's ledger", "outcome", out.Outcome)
			s.waitAdmitted()
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, redeemRetryMax)
	}
	s.finishJoining()
}

// waitAdmitted waits until this node's ledger has its admission, then
// reconnects to the inviter: the connection was opened while this node was
// a guest, which the inviter's DHT and GossipSub do not take in; a new one,
// between members, they do (the bootstrap re-dialer reconnects at once).
func (s *Service) waitAdmitted() {
	for s.ctx.Err() == nil {
		if s.cfg.Ledger.IsMember(s.cfg.Self) {
			s.joining.mu.Lock()
			inviter := s.joining.inviter
			s.joining.mu.Unlock()
			s.finishJoining()
			if err := s.net.ClosePeer(inviter); err != nil {
				s.log.Debug("reconnect to the inviter", "err", err)
			}
			return
		}
		select {
		case <-s.ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// finishJoining forgets the redeemed invitation.
func (s *Service) finishJoining() {
	if !s.cfg.Ledger.IsMember(s.cfg.Self) {
		return
	}
	s.joining.mu.Lock()
	s.joining.inv = nil
	s.joining.state = "admitted"
	s.joining.mu.Unlock()
	if err := os.Remove(s.cfg.Repo.Path(InvitationFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("remove the redeemed invitation", "err", err)
	}
	s.poke()
}

func (s *Service) presentInvitation(inviter peer.ID, addrs []peer.AddrInfo, secret []byte) (*redeemResp, error) {
	ctx, cancel := context.WithTimeout(s.ctx, redeemTimeout)
	defer cancel()
	var err error
	for _, ai := range addrs {
		if err = s.net.Connect(ctx, ai); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	st, err := s.net.NewStream(ctx, inviter, RedeemProtocol)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(redeemTimeout))
	if err := writeMsg(st, &redeemReq{Secret: secret}); err != nil {
		st.Reset()
		return nil, err
	}
	var resp redeemResp
	if err := readMsg(bufio.NewReader(io.LimitReader(st, maxRedeemMsg+4)), &resp); err != nil {
		st.Reset()
		return nil, err
	}
	switch resp.Outcome {
	case redeemAdmitted, redeemMember, redeemRefused:
	default:
		return nil, fmt.Errorf("inviter answered %q", resp.Outcome)
	}
	if len(resp.Entry) > 0 {
		if _, err := cid.Cast(resp.Entry); err != nil {
			return nil, fmt.Errorf("inviter answered a bad entry: %w", err)
		}
	}
	return &resp, nil
}

// JoinResult is what Join stored.
type JoinResult struct {
	Genesis []byte
	Addrs   []string
	Expires time.Time
}

// Join opens an invitation token with the repo's identity and stores what
// the daemon needs to join: the network's genesis and key, the inviter's
// addresses as bootstrap peers, and the invitation for the daemon to
// redeem. The node's daemon must be stopped. A token for another node
// fails with ErrNotForThisNode, an expired one with ErrExpired, a
// malformed one with ErrBadToken, one for another network than the repo's
// with ErrOtherNetwork.
func Join(r *repo.Repo, token string, now time.Time) (*JoinResult, error) {
	id, err := r.Identity()
	if err != nil {
		return nil, err
	}
	inv, err := OpenToken(token, id, now)
	if err != nil {
		return nil, err
	}
	if r.HasNetwork() {
		n, err := r.Network()
		if err != nil {
			return nil, err
		}
		if string(n.Genesis) != string(inv.Genesis) {
			return nil, ErrOtherNetwork
		}
	}
	if err := r.SetNetwork(&repo.Network{Genesis: inv.Genesis, PSK: inv.PSK}); err != nil {
		return nil, err
	}
	if err := writeKeyEpoch(r, inv.Epoch); err != nil {
		return nil, err
	}
	b, err := tokenEnc.Marshal(inv)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteBytes(r.Path(InvitationFile), b, 0o600); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, b := range r.Config.Bootstrap {
		seen[b] = true
	}
	for _, a := range inv.Addrs {
		if !seen[a] {
			r.Config.Bootstrap = append(r.Config.Bootstrap, a)
		}
	}
	if err := r.SaveConfig(); err != nil {
		return nil, err
	}
	return &JoinResult{Genesis: inv.Genesis, Addrs: inv.Addrs, Expires: inv.ExpiresAt()}, nil
}

// ErrOtherNetwork: the token is for another network than the repo's.
var ErrOtherNetwork = errors.New("this node already belongs to another network")
