package auditlog

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/ledger"
)

// Proof kinds.
const (
	KindInclusion   = "inclusion"
	KindConsistency = "consistency"
)

// Bounds on what a proof file may hold, so a hostile one cannot make the
// verifier allocate without limit.
const (
	MaxProofFile  = 64 << 20
	maxPathLength = 64 // hashes in one path: log2 of 2^63 leaves, and then some
	MaxProofItems = 100_000
)

// ProofFile is what `medmesh audit prove` and `audit consistency` print
// and `audit verify-proof` reads: self-contained, so an auditor checks it
// without a node. Hashes are base64 (standard, padded), as in tree heads.
type ProofFile struct {
	Kind  string `json:"kind"`  // inclusion or consistency
	Owner string `json:"owner"` // the log's owner (peer ID)

	// Inclusion: entries about record ID (any of its versions), each
	// proved in the tree that TreeHead signs.
	ID       string      `json:"id,omitempty"`
	TreeHead string      `json:"tree_head,omitempty"` // signed note
	TreeSize int64       `json:"tree_size,omitempty"`
	Root     string      `json:"root,omitempty"`
	Proofs   []Inclusion `json:"proofs,omitempty"`

	// Consistency: the tree of OldSize leaves is a prefix of the tree of
	// NewSize leaves; both heads signed.
	OldTreeHead string   `json:"old_tree_head,omitempty"`
	OldSize     int64    `json:"old_size,omitempty"`
	OldRoot     string   `json:"old_root,omitempty"`
	NewTreeHead string   `json:"new_tree_head,omitempty"`
	NewSize     int64    `json:"new_size,omitempty"`
	NewRoot     string   `json:"new_root,omitempty"`
	Path        []string `json:"consistency_path,omitempty"`
}

// Inclusion is one entry's proof: the entry (its CID and bytes, the leaf's
// data), its index in the log and the audit path.
type Inclusion struct {
	// ID is the record version the entry is about (the file's ID, or
	// another version of it).
	ID        string   `json:"id"`
	Entry     string   `json:"entry"`
	Type      string   `json:"type"`
	EntryData string   `json:"entry_data"` // base64 of the entry's bytes
	Index     int64    `json:"index"`
	Path      []string `json:"inclusion_path"`
}

// EncodeHashes renders hashes as a proof file lists them.
func EncodeHashes(hs []Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

// EncodeHash renders one hash.
func EncodeHash(h Hash) string { return base64.StdEncoding.EncodeToString(h[:]) }

func decodeHash(s, what string) (Hash, error) {
	var h Hash
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("%w: %s is not a base64 SHA-256 hash: %q", ErrMalformed, what, s)
	}
	copy(h[:], b)
	return h, nil
}

func decodePath(ss []string, what string) ([]Hash, error) {
	if len(ss) > maxPathLength {
		return nil, fmt.Errorf("%w: %s has %d hashes (at most %d)", ErrMalformed, what, len(ss), maxPathLength)
	}
	out := make([]Hash, len(ss))
	for i, s := range ss {
		h, err := decodeHash(s, what)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// Report is what a verified proof file establishes.
type Report struct {
	Kind  string
	Owner peer.ID
	// Inclusion: the record, the tree head, and each entry proved in it.
	Record  cid.Cid
	Head    TreeHead
	Entries []VerifiedEntry
	// Consistency: the old head is a prefix of the new one.
	Old, New TreeHead
}

// VerifiedEntry is an entry proved in the log.
type VerifiedEntry struct {
	Record cid.Cid // the version it is about
	Entry  cid.Cid
	Type   string
	Author peer.ID
	Index  int64
}

// ReadProofFile decodes a proof file strictly (unknown fields are errors),
// reading at most MaxProofFile bytes.
func ReadProofFile(r io.Reader) (*ProofFile, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxProofFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxProofFile {
		return nil, fmt.Errorf("%w: a proof file of more than %d bytes", ErrMalformed, MaxProofFile)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f ProofFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: not a proof file: %v", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: more than one JSON value in the proof file", ErrMalformed)
	}
	return &f, nil
}

// Verify checks a proof file offline. If owner is not empty, the log must
// be that owner's (an auditor pins the clinic it audits); otherwise the
// file's owner is checked against its own signatures only. Errors wrap
// ErrMalformed or ErrVerify.
func Verify(f *ProofFile, owner peer.ID) (*Report, error) {
	fo, err := peer.Decode(f.Owner)
	if err != nil {
		return nil, fmt.Errorf("%w: owner %q is not a peer ID", ErrMalformed, f.Owner)
	}
	if owner != "" && fo != owner {
		return nil, fmt.Errorf("%w: the proof is about %s's log, not %s's", ErrVerify, fo, owner)
	}
	switch f.Kind {
	case KindInclusion:
		return verifyInclusion(f, fo)
	case KindConsistency:
		return verifyConsistency(f, fo)
	default:
		return nil, fmt.Errorf("%w: unknown proof kind %q (inclusion or consistency)", ErrMalformed, f.Kind)
	}
}

// head opens a signed head from a file and checks the size and root the
// file states beside it.
func head(note string, owner peer.ID, size int64, root string, what string) (TreeHead, error) {
	h, err := OpenHead([]byte(note), owner)
	if err != nil {
		return h, fmt.Errorf("%s: %w", what, err)
	}
	r, err := decodeHash(root, what+" root")
	if err != nil {
		return h, err
	}
	if h.Size != size || h.Root != r {
		return h, fmt.Errorf("%w: the %s signs size %d root %s, the file says size %d root %s", ErrVerify, what, h.Size, EncodeHash(h.Root), size, root)
	}
	return h, nil
}

func verifyInclusion(f *ProofFile, owner peer.ID) (*Report, error) {
	rec, err := cid.Decode(f.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: id %q is not a record ID", ErrMalformed, f.ID)
	}
	h, err := head(f.TreeHead, owner, f.TreeSize, f.Root, "tree head")
	if err != nil {
		return nil, err
	}
	if len(f.Proofs) > MaxProofItems {
		return nil, fmt.Errorf("%w: %d proofs in one file (at most %d)", ErrMalformed, len(f.Proofs), MaxProofItems)
	}
	rep := &Report{Kind: f.Kind, Owner: owner, Record: rec, Head: h, Entries: []VerifiedEntry{}}
	for i, p := range f.Proofs {
		data, err := base64.StdEncoding.DecodeString(p.EntryData)
		if err != nil {
			return nil, fmt.Errorf("%w: proof %d: entry_data is not base64", ErrMalformed, i)
		}
		c, err := cid.Decode(p.Entry)
		if err != nil {
			return nil, fmt.Errorf("%w: proof %d: entry %q is not a CID", ErrMalformed, i, p.Entry)
		}
		e, err := ledger.DecodeEntry(data)
		if err != nil {
			return nil, fmt.Errorf("%w: proof %d: entry %s does not decode or its signature is bad: %v", ErrVerify, i, p.Entry, err)
		}
		if e.CID() != c {
			return nil, fmt.Errorf("%w: proof %d: the entry's bytes are %s, not %s", ErrVerify, i, e.CID(), c)
		}
		if e.Type != p.Type || (e.Type != ledger.TypeAccess && e.Type != ledger.TypeServed) {
			return nil, fmt.Errorf("%w: proof %d: entry %s is a %s entry (the file says %q); the audit log holds access and access.served", ErrVerify, i, c, e.Type, p.Type)
		}
		ver, err := cid.Decode(p.ID)
		if err != nil {
			return nil, fmt.Errorf("%w: proof %d: id %q is not a record ID", ErrMalformed, i, p.ID)
		}
		if r, ok := ledger.RecordOf(e); !ok || r != ver {
			return nil, fmt.Errorf("%w: proof %d: entry %s is not about record %s", ErrVerify, i, c, ver)
		}
		path, err := decodePath(p.Path, fmt.Sprintf("proof %d path", i))
		if err != nil {
			return nil, err
		}
		if err := CheckInclusion(path, h.Size, h.Root, p.Index, LeafHash(data)); err != nil {
			return nil, fmt.Errorf("%w: proof %d: entry %s is not leaf %d of the signed tree: %v", ErrVerify, i, c, p.Index, err)
		}
		rep.Entries = append(rep.Entries, VerifiedEntry{Record: ver, Entry: c, Type: e.Type, Author: e.Author, Index: p.Index})
	}
	return rep, nil
}

func verifyConsistency(f *ProofFile, owner peer.ID) (*Report, error) {
	oh, err := head(f.OldTreeHead, owner, f.OldSize, f.OldRoot, "old tree head")
	if err != nil {
		return nil, err
	}
	nh, err := head(f.NewTreeHead, owner, f.NewSize, f.NewRoot, "new tree head")
	if err != nil {
		return nil, err
	}
	path, err := decodePath(f.Path, "path")
	if err != nil {
		return nil, err
	}
	if err := CheckConsistency(path, oh.Size, oh.Root, nh.Size, nh.Root); err != nil {
		return nil, fmt.Errorf("%w: the log of size %d is not a prefix of the log of size %d: %v", ErrVerify, oh.Size, nh.Size, err)
	}
	return &Report{Kind: f.Kind, Owner: owner, Old: oh, New: nh}, nil
}
