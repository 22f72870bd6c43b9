package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"sort"

	"github.com/fxamacker/cbor/v2"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/medmesh/medmesh/internal/strictcbor"
)

// Checkpoints (issue #16): a signed summary of a scope's state that lets a
// node join or catch up without replaying the history behind it, in the
// manner of tailscale tka's checkpoint AUMs and Certificate Transparency's
// signed tree heads. See doc.go, "Checkpoints", for who signs and why.

// Checkpoint bounds. They are part of the protocol.
const (
	// MaxCheckpointSize bounds an encoded checkpoint (header and signatures).
	MaxCheckpointSize = 1 << 20
	// maxCheckpointHeads bounds the heads a checkpoint names.
	maxCheckpointHeads = 4096
	// maxCheckpointBlocks bounds the state blocks (each at most
	// MaxStateBlockSize): 16 GiB of state.
	maxCheckpointBlocks = 16384
	// maxCheckpointSigners bounds the admins a checkpoint lists.
	maxCheckpointSigners = 256
	// MaxStateBlockSize bounds one block of checkpoint state.
	MaxStateBlockSize = 1 << 20
)

// ckptSignDomain separates checkpoint signatures from entries' and any
// other use of node keys.
const ckptSignDomain = "medmesh/ledger/checkpoint/v1\n"

// Errors of checkpoint verification; each wraps into a message that says
// which checkpoint and what to do.
var (
	ErrCheckpointMalformed = errors.New("ledger: malformed checkpoint")
	ErrCheckpointSignature = errors.New("ledger: checkpoint signature invalid")
	ErrCheckpointUntrusted = errors.New("ledger: checkpoint not signed by enough trusted admins")
	ErrCheckpointState     = errors.New("ledger: checkpoint state does not match the checkpoint")
	ErrCheckpointCoverage  = errors.New("ledger: checkpoint does not cover this node's entries")
)

// Checkpoint is a signed summary of one scope at a set of heads: the state
// the entries in the heads' causal past produce, as content-addressed
// blocks, and its digest. Its identity (CID) is that of its unsigned
// header, so co-signatures do not change it.
type Checkpoint struct {
	// Network is the genesis CID.
	Network cid.Cid
	// Scope is the scope summarized: ScopeGlobal, or an owner or audit
	// scope (checkpoint_scope.go).
	Scope string
	// Heads are the heads the state is the state of, sorted by bytes: the
	// scope's own.
	Heads []cid.Cid
	// Deps, for an owner or audit scope, are the heads of the scopes it
	// depends on (Closure) when it was made, sorted: the global heads at
	// which its signers (the owner's replica group) are computed, and for
	// an audit scope the owner scope's heads. A node loads it only if it
	// holds them all. Empty for the global scope.
	Deps []cid.Cid
	// Clock is the highest clock among Heads.
	Clock HLC
	// Entries is the number of entries in the heads' causal past.
	Entries uint64
	// Digest is State.Digest of the state at Heads (the view, /s/): what a
	// node that replayed every entry computes, and what `ledger verify`
	// compares.
	Digest []byte
	// Size is the total size in bytes of the state blocks.
	Size uint64
	// Blocks are the state's blocks (raw CIDv1, sha2-256), in key order.
	Blocks []cid.Cid
	// Prev is the trusted checkpoint whose Signers vouch for this one
	// (cid.Undef for the first: the genesis admin vouches).
	Prev cid.Cid
	// Signers are the admins at Heads: the keys the next checkpoint needs
	// a majority of.
	Signers []peer.ID
	// Sigs are signatures over the header by signers of Prev.
	Sigs []CheckpointSig

	cid cid.Cid
}

// CheckpointSig is one signer's signature over a checkpoint's header.
type CheckpointSig struct {
	Signer peer.ID
	Sig    []byte
}

// CID returns the checkpoint's identity: the CID of its unsigned header.
func (ck *Checkpoint) CID() cid.Cid { return ck.cid }

// ckptWire is the canonical CBOR form of a checkpoint.
type ckptWire struct {
	Network []byte        `cbor:"1,keyasint"`
	Scope   string        `cbor:"2,keyasint"`
	Heads   [][]byte      `cbor:"3,keyasint"`
	Wall    uint64        `cbor:"4,keyasint"`
	Counter uint32        `cbor:"5,keyasint"`
	Entries uint64        `cbor:"6,keyasint"`
	Digest  []byte        `cbor:"7,keyasint"`
	Size    uint64        `cbor:"8,keyasint"`
	Blocks  [][]byte      `cbor:"9,keyasint"`
	Prev    []byte        `cbor:"10,keyasint,omitempty"`
	Signers [][]byte      `cbor:"11,keyasint"`
	Sigs    []ckptSigWire `cbor:"12,keyasint,omitempty"`
	Deps    [][]byte      `cbor:"13,keyasint,omitempty"`
}

type ckptSigWire struct {
	Signer []byte `cbor:"1,keyasint"`
	Sig    []byte `cbor:"2,keyasint"`
}

// ckptDec returns the decoder of checkpoints: its array limit admits the
// block list. (Built per call: checkpoints are rare, and the package keeps
// no state.)
func ckptDec() cbor.DecMode {
	return strictcbor.Dec(strictcbor.Limits{Nesting: 8, Array: maxCheckpointBlocks, Map: 32})
}

func (ck *Checkpoint) wire(withSigs bool) *ckptWire {
	w := &ckptWire{Network: ck.Network.Bytes(), Scope: ck.Scope, Wall: ck.Clock.Wall, Counter: ck.Clock.Counter,
		Entries: ck.Entries, Digest: ck.Digest, Size: ck.Size, Heads: [][]byte{}, Blocks: [][]byte{}, Signers: [][]byte{}}
	for _, h := range ck.Heads {
		w.Heads = append(w.Heads, h.Bytes())
	}
	for _, b := range ck.Blocks {
		w.Blocks = append(w.Blocks, b.Bytes())
	}
	for _, d := range ck.Deps {
		w.Deps = append(w.Deps, d.Bytes())
	}
	if ck.Prev.Defined() {
		w.Prev = ck.Prev.Bytes()
	}
	for _, s := range ck.Signers {
		w.Signers = append(w.Signers, []byte(s))
	}
	if withSigs {
		for _, s := range ck.Sigs {
			w.Sigs = append(w.Sigs, ckptSigWire{Signer: []byte(s.Signer), Sig: s.Sig})
		}
	}
	return w
}

// header returns the canonical encoding of the unsigned header: what is
// signed and what the CID names.
func (ck *Checkpoint) header() ([]byte, error) { return encMode.Marshal(ck.wire(false)) }

// Encode returns the checkpoint's canonical encoding, signatures included
// (sorted by signer).
func (ck *Checkpoint) Encode() ([]byte, error) {
	sort.Slice(ck.Sigs, func(i, j int) bool { return ck.Sigs[i].Signer < ck.Sigs[j].Signer })
	return encMode.Marshal(ck.wire(true))
}

// seal sorts what must be sorted and computes the CID.
func (ck *Checkpoint) seal() error {
	ck.Heads = sortedCids(ck.Heads)
	if len(ck.Deps) > 0 {
		ck.Deps = sortedCids(ck.Deps)
	}
	sort.Slice(ck.Signers, func(i, j int) bool { return ck.Signers[i] < ck.Signers[j] })
	h, err := ck.header()
	if err != nil {
		return err
	}
	ck.cid = checkpointCID(h)
	return nil
}

func checkpointCID(header []byte) cid.Cid {
	h, _ := mh.Sum(header, mh.SHA2_256, -1)
	return cid.NewCidV1(cid.DagCBOR, h)
}

// Sign adds key's signature over the header (replacing an earlier one by
// the same key).
func (ck *Checkpoint) Sign(key crypto.PrivKey) error {
	if key.Type() != crypto.Ed25519 {
		return errors.New("ledger: checkpoint signing key must be Ed25519")
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return err
	}
	h, err := ck.header()
	if err != nil {
		return err
	}
	sig, err := key.Sign(append([]byte(ckptSignDomain), h...))
	if err != nil {
		return err
	}
	out := ck.Sigs[:0]
	for _, s := range ck.Sigs {
		if s.Signer != id {
			out = append(out, s)
		}
	}
	ck.Sigs = append(out, CheckpointSig{Signer: id, Sig: sig})
	sort.Slice(ck.Sigs, func(i, j int) bool { return ck.Sigs[i].Signer < ck.Sigs[j].Signer })
	return nil
}

// DecodeCheckpoint parses a checkpoint's canonical encoding and checks
// every signature it carries is valid for its signer (not whether the
// signers are trusted: VerifyCheckpointChain). It never panics on input.
func DecodeCheckpoint(raw []byte) (*Checkpoint, error) {
	if len(raw) > MaxCheckpointSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrCheckpointMalformed, len(raw), MaxCheckpointSize)
	}
	var w ckptWire
	if err := ckptDec().Unmarshal(raw, &w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCheckpointMalformed, err)
	}
	bad := func(f string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrCheckpointMalformed, fmt.Sprintf(f, a...))
	}
	ck := &Checkpoint{Scope: w.Scope, Clock: HLC{w.Wall, w.Counter}, Entries: w.Entries, Digest: w.Digest, Size: w.Size}
	var err error
	if ck.Network, err = cid.Cast(w.Network); err != nil {
		return nil, bad("network id: %v", err)
	}
	if ck.Scope == "" || len(ck.Scope) > 200 {
		return nil, bad("scope %q", ck.Scope)
	}
	if len(ck.Digest) != 32 {
		return nil, bad("digest of %d bytes, want 32", len(ck.Digest))
	}
	if len(w.Heads) == 0 || len(w.Heads) > maxCheckpointHeads {
		return nil, bad("%d heads", len(w.Heads))
	}
	for i, b := range w.Heads {
		if i > 0 && bytes.Compare(w.Heads[i-1], b) >= 0 {
			return nil, bad("heads not sorted and unique")
		}
		c, err := cid.Cast(b)
		if err != nil {
			return nil, bad("head: %v", err)
		}
		ck.Heads = append(ck.Heads, c)
	}
	if len(w.Deps) > maxCheckpointHeads {
		return nil, bad("%d deps", len(w.Deps))
	}
	for i, b := range w.Deps {
		if i > 0 && bytes.Compare(w.Deps[i-1], b) >= 0 {
			return nil, bad("deps not sorted and unique")
		}
		c, err := cid.Cast(b)
		if err != nil {
			return nil, bad("dep: %v", err)
		}
		ck.Deps = append(ck.Deps, c)
	}
	if kind, _, err := ParseScope(ck.Scope); err != nil {
		return nil, bad("%v", err)
	} else if (kind == KindGlobal) != (len(ck.Deps) == 0) {
		return nil, bad("scope %s with %d deps", ck.Scope, len(ck.Deps))
	}
	for _, b := range w.Blocks {
		c, err := cid.Cast(b)
		if err != nil {
			return nil, bad("state block: %v", err)
		}
		if c.Prefix().Codec != cid.Raw || c.Prefix().MhType != mh.SHA2_256 {
			return nil, bad("state block %s is not a raw sha2-256 CID", c)
		}
		ck.Blocks = append(ck.Blocks, c)
	}
	if len(w.Prev) > 0 {
		if ck.Prev, err = cid.Cast(w.Prev); err != nil {
			return nil, bad("prev: %v", err)
		}
	}
	if len(w.Signers) == 0 || len(w.Signers) > maxCheckpointSigners {
		return nil, bad("%d signers", len(w.Signers))
	}
	for i, b := range w.Signers {
		if i > 0 && bytes.Compare(w.Signers[i-1], b) >= 0 {
			return nil, bad("signers not sorted and unique")
		}
		p, err := peer.IDFromBytes(b)
		if err != nil {
			return nil, bad("signer: %v", err)
		}
		ck.Signers = append(ck.Signers, p)
	}
	h, err := ck.header()
	if err != nil {
		return nil, bad("%v", err)
	}
	ck.cid = checkpointCID(h)
	msg := append([]byte(ckptSignDomain), h...)
	for i, s := range w.Sigs {
		if i > 0 && bytes.Compare(w.Sigs[i-1].Signer, s.Signer) >= 0 {
			return nil, bad("signatures not sorted by signer and unique")
		}
		p, err := peer.IDFromBytes(s.Signer)
		if err != nil {
			return nil, bad("signature's signer: %v", err)
		}
		pub, err := p.ExtractPublicKey()
		if err != nil || pub.Type() != crypto.Ed25519 {
			return nil, bad("signer %s has no Ed25519 key in its ID", p)
		}
		if ok, err := pub.Verify(msg, s.Sig); err != nil || !ok {
			return nil, fmt.Errorf("%w: signature by %s on checkpoint %s", ErrCheckpointSignature, p, ck.cid)
		}
		ck.Sigs = append(ck.Sigs, CheckpointSig{Signer: p, Sig: s.Sig})
	}
	re, err := ck.Encode()
	if err != nil || !bytes.Equal(re, raw) {
		return nil, bad("non-canonical encoding")
	}
	return ck, nil
}

// Quorum returns how many of n signers a checkpoint needs: a majority.
func Quorum(n int) int { return n/2 + 1 }

// VerifyCheckpointChain checks that the last checkpoint of chain is
// trusted, starting from the genesis: the first must be signed by the
// genesis admin; each later one must name the one before as Prev and be
// signed by a majority (Quorum) of that one's Signers. Every checkpoint
// must be of network net and scope, with clocks growing. It returns the
// last checkpoint. The state's own consistency (digest, signers are the
// admins of the state, coverage) is checked when it is loaded.
func VerifyCheckpointChain(genesis []byte, scope string, chain []*Checkpoint) (*Checkpoint, error) {
	g, err := DecodeEntry(genesis)
	if err != nil {
		return nil, fmt.Errorf("ledger: genesis: %w", err)
	}
	var gw genesisWire
	if err := canonicalUnmarshal(g.Payload, &gw); err != nil {
		return nil, fmt.Errorf("ledger: genesis payload: %w", err)
	}
	admin, err := peer.IDFromBytes(gw.Admin)
	if err != nil {
		return nil, fmt.Errorf("ledger: genesis admin: %w", err)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: no checkpoint", ErrCheckpointUntrusted)
	}
	trusted, prev := []peer.ID{admin}, cid.Undef
	var last HLC
	for _, ck := range chain {
		if ck.Network != g.cid {
			return nil, fmt.Errorf("%w: checkpoint %s is of network %s, not %s", ErrCheckpointUntrusted, ck.cid, ck.Network, g.cid)
		}
		if ck.Scope != scope {
			return nil, fmt.Errorf("%w: checkpoint %s is of scope %q, not %q", ErrCheckpointUntrusted, ck.cid, ck.Scope, scope)
		}
		if ck.Prev != prev {
			return nil, fmt.Errorf("%w: checkpoint %s does not extend %s (its prev is %s)", ErrCheckpointUntrusted, ck.cid, cidOrNone(prev), cidOrNone(ck.Prev))
		}
		if prev.Defined() && !last.Less(ck.Clock) {
			return nil, fmt.Errorf("%w: checkpoint %s is not later than the one it extends", ErrCheckpointUntrusted, ck.cid)
		}
		if n, need := trustedSigs(ck, trusted), Quorum(len(trusted)); n < need {
			return nil, fmt.Errorf("%w: checkpoint %s has %d valid signature(s) by the admins that vouch for it, needs %d of %v",
				ErrCheckpointUntrusted, ck.cid, n, need, trusted)
		}
		trusted, prev, last = ck.Signers, ck.cid, ck.Clock
	}
	return chain[len(chain)-1], nil
}

// trustedSigs counts the signatures (checked by DecodeCheckpoint or Sign)
// by distinct members of trusted.
func trustedSigs(ck *Checkpoint, trusted []peer.ID) int {
	n := 0
	for _, s := range ck.Sigs {
		for _, t := range trusted {
			if s.Signer == t {
				n++
				break
			}
		}
	}
	return n
}

func cidOrNone(c cid.Cid) string {
	if !c.Defined() {
		return "none (the genesis)"
	}
	return c.String()
}
