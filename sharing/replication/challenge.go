package replication

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fxamacker/cbor/v2"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/medmesh/medmesh/internal/strictcbor"
)

// ChallengeProtocol is the proof-of-storage request/response protocol.
const ChallengeProtocol = protocol.ID("/medmesh/replica/challenge/1.0.0")

// MaxChallengeBlocks bounds the blocks one challenge asks for.
const MaxChallengeBlocks = 16

// maxMsg bounds a request or answer on the wire.
const maxMsg = 4096

// Errors a prover's lookup returns.
var (
	// ErrNotHeld: this node does not hold the record, or the block is not
	// one of its blocks. The challenge is refused.
	ErrNotHeld = errors.New("replication: record not held here")
	// ErrMissing: the record is held but the block is gone.
	ErrMissing = errors.New("replication: block missing")
)

type challengeReq struct {
	Record []byte   `cbor:"1,keyasint"`
	Nonce  []byte   `cbor:"2,keyasint"`
	Blocks [][]byte `cbor:"3,keyasint"`
}

type challengeResp struct {
	Proofs  [][]byte `cbor:"1,keyasint"` // per block; empty when missing
	Missing []uint32 `cbor:"2,keyasint,omitempty"`
	Error   string   `cbor:"3,keyasint,omitempty"`
}

var decMode = strictcbor.Dec(strictcbor.Limits{Nesting: 4, Array: MaxChallengeBlocks + 1, Map: 16})

// Proof is the answer for one block: SHA-256(nonce || block).
func Proof(nonce, data []byte) []byte {
	h := sha256.New()
	h.Write(nonce)
	h.Write(data)
	return h.Sum(nil)
}

// Lookup returns the bytes of block c of record rec on the prover.
type Lookup func(ctx context.Context, rec, c cid.Cid) ([]byte, error)

func readMsg(r io.Reader, v any) error {
	b, err := io.ReadAll(io.LimitReader(r, maxMsg+1))
	if err != nil {
		return err
	}
	if len(b) > maxMsg {
		return errors.New("replication: message too large")
	}
	return decMode.Unmarshal(b, v)
}

// Serve answers one challenge on s, then closes it. It never panics on
// malformed input; it returns the error that ended the exchange (for logs)
// and how many blocks were found missing.
func Serve(ctx context.Context, s network.Stream, lookup Lookup, timeout time.Duration) (rec cid.Cid, missing int, err error) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(timeout))
	var req challengeReq
	if err := readMsg(s, &req); err != nil {
		s.Reset()
		return cid.Undef, 0, fmt.Errorf("read challenge: %w", err)
	}
	rec, err = cid.Cast(req.Record)
	if err != nil || len(req.Nonce) != 32 || len(req.Blocks) == 0 || len(req.Blocks) > MaxChallengeBlocks {
		s.Reset()
		return cid.Undef, 0, errors.New("malformed challenge")
	}
	resp := challengeResp{Proofs: make([][]byte, len(req.Blocks))}
	for i, raw := range req.Blocks {
		c, err := cid.Cast(raw)
		if err != nil {
			resp = challengeResp{Error: "malformed block CID"}
			break
		}
		data, err := lookup(ctx, rec, c)
		if errors.Is(err, ErrMissing) {
			resp.Proofs[i] = []byte{}
			resp.Missing = append(resp.Missing, uint32(i))
			continue
		}
		if err != nil {
			resp = challengeResp{Error: ErrNotHeld.Error()}
			break
		}
		resp.Proofs[i] = Proof(req.Nonce, data)
	}
	out, err := cbor.Marshal(&resp)
	if err != nil {
		s.Reset()
		return rec, 0, err
	}
	if _, err := s.Write(out); err != nil {
		s.Reset()
		return rec, len(resp.Missing), err
	}
	return rec, len(resp.Missing), nil
}

// Result is a challenge's outcome.
type Result struct {
	Checked int
	// Missing blocks the holder admitted it lacks; Wrong proofs that did
	// not match.
	Missing, Wrong int
	// Refused: the holder says it does not hold the record.
	Refused bool
}

// OK reports whether the holder proved every block.
func (r Result) OK() bool { return r.Checked > 0 && r.Missing == 0 && r.Wrong == 0 && !r.Refused }

// Challenge asks peer p to prove it holds blocks (whose bytes the caller
// has) of record rec. A network error (peer unreachable, timeout, garbage)
// is returned as an error, not as a failed Result.
func Challenge(ctx context.Context, h host.Host, p peer.ID, rec cid.Cid, bs []blocks.Block) (Result, error) {
	if len(bs) == 0 || len(bs) > MaxChallengeBlocks {
		return Result{}, fmt.Errorf("replication: challenge needs 1..%d blocks", MaxChallengeBlocks)
	}
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return Result{}, err
	}
	req := challengeReq{Record: rec.Bytes(), Nonce: nonce}
	for _, b := range bs {
		req.Blocks = append(req.Blocks, b.Cid().Bytes())
	}
	s, err := h.NewStream(network.WithNoDial(ctx, "challenge"), p, ChallengeProtocol)
	if err != nil {
		return Result{}, err
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	out, err := cbor.Marshal(&req)
	if err != nil {
		s.Reset()
		return Result{}, err
	}
	if _, err := s.Write(out); err != nil {
		s.Reset()
		return Result{}, err
	}
	if err := s.CloseWrite(); err != nil {
		s.Reset()
		return Result{}, err
	}
	var resp challengeResp
	if err := readMsg(s, &resp); err != nil {
		s.Reset()
		return Result{}, fmt.Errorf("read answer: %w", err)
	}
	if resp.Error != "" {
		return Result{Checked: len(bs), Refused: true}, nil
	}
	if len(resp.Proofs) != len(bs) {
		return Result{}, errors.New("replication: answer has the wrong number of proofs")
	}
	res := Result{Checked: len(bs)}
	missing := map[uint32]bool{}
	for _, i := range resp.Missing {
		missing[i] = true
	}
	for i, b := range bs {
		if missing[uint32(i)] {
			res.Missing++
			continue
		}
		if !bytes.Equal(resp.Proofs[i], Proof(nonce, b.RawData())) {
			res.Wrong++
		}
	}
	return res, nil
}
