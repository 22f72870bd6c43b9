package record

import (
	"bytes"
	"fmt"

	"github.com/ipfs/go-cid"
)

// blockListFormat is the block list encoding version (wire field 0).
const blockListFormat = 1

// MaxBlockListLen is the most blocks a block list may hold: one more (the
// manifest) than the most chunks a manifest of MaxManifestSize can list.
// Its encoding (38 bytes a block) stays under 1.1 MiB, so it fits a block.
const MaxBlockListLen = MaxManifestSize/minManifestChunkCost + 1

// maxBlockListSize bounds an encoded block list: a header of a few bytes and
// 2 + 36 bytes a CID.
const maxBlockListSize = 16 + MaxBlockListLen*(2+36)

// wireBlockList is the CBOR form {0: format, 1: [cid bytes...]}.
type wireBlockList struct {
	Format uint64   `cbor:"0,keyasint"`
	Blocks [][]byte `cbor:"1,keyasint"`
}

// EncodeBlockList encodes the list of a record's block CIDs (Result.Blocks,
// or Manifest.Blocks) that replica holders fetch. It is not encrypted: it
// reveals only what holding the blocks reveals. Every CID must be a record
// block (CIDv1, raw, sha2-256); the list must be non-empty, without
// duplicates, and at most MaxBlockListLen long.
func EncodeBlockList(ids []cid.Cid) ([]byte, error) {
	if err := validateBlockList(ids); err != nil {
		return nil, err
	}
	w := wireBlockList{Format: blockListFormat, Blocks: make([][]byte, len(ids))}
	for i, c := range ids {
		w.Blocks[i] = c.Bytes()
	}
	b, err := encMode.Marshal(&w)
	if err != nil {
		return nil, fmt.Errorf("encode block list: %w", err)
	}
	return b, nil
}

// DecodeBlockList decodes a block list strictly: only the canonical
// encoding of a valid list (see EncodeBlockList) is accepted.
func DecodeBlockList(b []byte) ([]cid.Cid, error) {
	if len(b) > maxBlockListSize {
		return nil, fmt.Errorf("%w: block list is %d bytes, limit %d", ErrTooLarge, len(b), maxBlockListSize)
	}
	var w wireBlockList
	if err := decMode.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("%w: block list: %v", ErrMalformed, err)
	}
	if w.Format != blockListFormat {
		return nil, fmt.Errorf("%w: block list format %d, want %d", ErrMalformed, w.Format, blockListFormat)
	}
	ids := make([]cid.Cid, len(w.Blocks))
	for i, raw := range w.Blocks {
		c, err := cid.Cast(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: block list entry %d: %v", ErrMalformed, i, err)
		}
		ids[i] = c
	}
	if err := validateBlockList(ids); err != nil {
		return nil, err
	}
	again, err := encMode.Marshal(&w)
	if err != nil || !bytes.Equal(again, b) {
		return nil, fmt.Errorf("%w: block list is not in canonical CBOR form", ErrMalformed)
	}
	return ids, nil
}

func validateBlockList(ids []cid.Cid) error {
	switch {
	case len(ids) == 0:
		return fmt.Errorf("%w: empty block list (a record has at least its manifest)", ErrMalformed)
	case len(ids) > MaxBlockListLen:
		return fmt.Errorf("%w: block list of %d blocks, limit %d", ErrTooLarge, len(ids), MaxBlockListLen)
	}
	seen := make(map[cid.Cid]struct{}, len(ids))
	for i, c := range ids {
		if _, ok := digestOf(c); !ok {
			return fmt.Errorf("%w: block list entry %d: %s is not a CIDv1 raw sha2-256 block", ErrMalformed, i, c)
		}
		if _, dup := seen[c]; dup {
			return fmt.Errorf("%w: block list entry %d: %s listed twice", ErrMalformed, i, c)
		}
		seen[c] = struct{}{}
	}
	return nil
}
