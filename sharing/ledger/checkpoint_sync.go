package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ipfs/go-cid"
)

// Checkpoints travel on the sync protocol (net.go carries the bytes):
// opCheckpoints asks for a peer's trusted chain of a scope from an index
// on; opStateBlock asks for one state block of its latest checkpoint. A
// node that syncs with a peer whose chain is longer verifies it from the
// genesis, fetches the latest state's blocks, and either loads it (a node
// that has nothing but the genesis, or one whose peer pruned what it
// lacks) or keeps it to serve and prune (a node that has the entries).
const (
	opCheckpoints = 2
	opStateBlock  = 3
)

// errPruned is what a server answers when entries a client lacks were
// pruned: the client joins from the checkpoint instead.
const errPruned = "pruned: entries before the checkpoint were pruned here; join from the checkpoint"

// serveCheckpoint answers opCheckpoints and opStateBlock.
func (l *Ledger) serveCheckpoint(ctx context.Context, req *syncReq) *syncResp {
	switch req.Op {
	case opCheckpoints:
		chain, err := l.CheckpointChain(ctx, ScopeGlobal)
		if err != nil {
			l.log.Error("answer checkpoint request", "err", err)
			return &syncResp{Err: "internal error"}
		}
		resp := &syncResp{}
		size := 0
		for i := int(req.Max); i < len(chain); i++ {
			raw, err := chain[i].Encode()
			if err != nil {
				return &syncResp{Err: "internal error"}
			}
			if size+len(raw) > respEntryBytes {
				resp.More = true
				break
			}
			resp.Checkpoints = append(resp.Checkpoints, raw)
			size += len(raw)
		}
		return resp
	case opStateBlock:
		if len(req.Have) != 1 {
			return &syncResp{Err: "want one block"}
		}
		c, err := cid.Cast(req.Have[0])
		if err != nil {
			return &syncResp{Err: "bad cid"}
		}
		b, err := l.StateBlock(ctx, c)
		if err != nil {
			return &syncResp{Err: "no such state block"}
		}
		return &syncResp{Block: b}
	}
	return &syncResp{Err: "unknown op"}
}

// catchUpCheckpoints asks a peer (through ask, one request and its answer)
// for checkpoints this node lacks and adopts them (AdoptCheckpoint), or
// loads the latest (JoinFromCheckpoint) when join is set or this node has
// nothing but the genesis. It reports whether it loaded one.
func (l *Ledger) catchUpCheckpoints(ctx context.Context, ask func(*syncReq) (*syncResp, error), join bool) (bool, error) {
	ours, err := l.CheckpointChain(ctx, ScopeGlobal)
	if err != nil {
		return false, err
	}
	var theirs []*Checkpoint
	for from := len(ours); ; {
		resp, err := ask(&syncReq{Network: l.net.Bytes(), Op: opCheckpoints, Max: uint32(from)})
		if err != nil {
			return false, err
		}
		if resp.Err != "" {
			if resp.Err == "unknown op" {
				return false, nil // a peer from before checkpoints
			}
			return false, fmt.Errorf("ledger: checkpoints: %s", resp.Err)
		}
		for _, raw := range resp.Checkpoints {
			ck, err := DecodeCheckpoint(raw)
			if err != nil {
				return false, err
			}
			theirs = append(theirs, ck)
		}
		from += len(resp.Checkpoints)
		if !resp.More || len(resp.Checkpoints) == 0 {
			break
		}
	}
	if len(theirs) == 0 {
		return false, nil
	}
	chain := append(append([]*Checkpoint{}, ours...), theirs...)
	if !join {
		l.mu.Lock()
		join = l.onlyGenesis()
		l.mu.Unlock()
	}
	fetch := func(ctx context.Context, c cid.Cid) ([]byte, error) {
		resp, err := ask(&syncReq{Network: l.net.Bytes(), Op: opStateBlock, Have: [][]byte{c.Bytes()}})
		if err != nil {
			return nil, err
		}
		if resp.Err != "" {
			return nil, errors.New(resp.Err)
		}
		return resp.Block, nil
	}
	if join {
		if err := l.JoinFromCheckpoint(ctx, chain, fetch); err != nil {
			return false, err
		}
		return true, nil
	}
	if err := l.AdoptCheckpoint(ctx, chain, fetch); err != nil && !errors.Is(err, ErrCheckpointExists) {
		return false, err
	}
	return false, nil
}

// onlyGenesis reports, l.mu held, whether the genesis is the only entry
// this node has.
func (l *Ledger) onlyGenesis() bool {
	_, ok := l.core.heads[l.net]
	return ok && len(l.core.heads) == 1
}

func isPruned(msg string) bool { return strings.HasPrefix(msg, "pruned:") }

// prunedHere reports whether this node pruned or joined from a checkpoint:
// then an entry it lacks may be one it never had or dropped.
func (l *Ledger) prunedHere(ctx context.Context) bool {
	p, err1 := l.marker(ctx, pCkptPruned+ScopeGlobal)
	b, err2 := l.marker(ctx, pCkptBase+ScopeGlobal)
	return err1 == nil && err2 == nil && (p.Defined() || b.Defined())
}
