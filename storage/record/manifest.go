package record

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/medmesh/medmesh/internal/strictcbor"
)

// manifestFormat is the manifest encoding version (wire field 0).
const manifestFormat = 1

// Manifest block layout: key commitment (32) || sealed length (4, big
// endian) || AES-GCM(manifest CBOR) with its tag.
const (
	manifestHeaderSize   = 32 + 4
	maxManifestBlockSize = manifestHeaderSize + MaxManifestSize + TagSize
)

// Caps on the kind, name and media type strings.
const (
	maxKindSize      = 64
	maxNameSize      = 4096
	maxMediaTypeSize = 256
	maxVersion       = math.MaxInt32
)

// wireManifest is the CBOR form: a map with small integer keys, encoded in
// Core Deterministic mode. Unknown keys are rejected.
type wireManifest struct {
	Format    uint64     `cbor:"0,keyasint"`
	Kind      string     `cbor:"1,keyasint"`
	Name      string     `cbor:"2,keyasint,omitempty"`
	MediaType string     `cbor:"3,keyasint,omitempty"`
	Created   int64      `cbor:"4,keyasint"` // Unix nanoseconds
	Version   uint64     `cbor:"5,keyasint"`
	Prev      []byte     `cbor:"6,keyasint,omitempty"` // record ID bytes
	Files     []wireFile `cbor:"7,keyasint"`
	Meta      []byte     `cbor:"8,keyasint,omitempty"`
}

// wireFile is [path, size, sha256, chunks].
type wireFile struct {
	_      struct{} `cbor:",toarray"`
	Path   string
	Size   uint64
	SHA256 []byte
	Chunks []wireChunk
}

// wireChunk is [sha256 of the sealed block, plaintext size]: every chunk
// CID is CIDv1 raw sha2-256, so only the digest is stored.
type wireChunk struct {
	_      struct{} `cbor:",toarray"`
	Digest []byte
	Size   uint64
}

var (
	encMode = strictcbor.Enc
	decMode = strictcbor.Dec(strictcbor.Limits{Nesting: 8, Array: MaxManifestSize, Map: 16})
)

// encodeManifest validates m and returns its canonical plaintext encoding.
func encodeManifest(m *Manifest) ([]byte, error) {
	if err := validateHeader(m.Kind, m.Name, m.MediaType, m.Version, m.Prev); err != nil {
		return nil, err
	}
	created := m.Created.UnixNano()
	if !time.Unix(0, created).Equal(m.Created) {
		return nil, fmt.Errorf("%w: created time %v is outside the representable range (years 1678-2262)", ErrMalformed, m.Created)
	}
	if len(m.Files) == 0 {
		return nil, fmt.Errorf("%w: a record needs at least one file", ErrMalformed)
	}
	w := wireManifest{
		Format:    manifestFormat,
		Kind:      m.Kind,
		Name:      m.Name,
		MediaType: m.MediaType,
		Created:   created,
		Version:   uint64(m.Version),
		Files:     make([]wireFile, len(m.Files)),
		Meta:      m.Meta,
	}
	if m.Prev.Defined() {
		w.Prev = m.Prev.Bytes()
	}
	for i, f := range m.Files {
		if err := validateFile(f); err != nil {
			return nil, fmt.Errorf("file %d (%q): %w", i, f.Path, err)
		}
		wf := wireFile{Path: f.Path, Size: uint64(f.Size), SHA256: f.SHA256[:], Chunks: make([]wireChunk, len(f.Chunks))}
		for j, c := range f.Chunks {
			d, _ := digestOf(c.CID) // checked by validateFile
			wf.Chunks[j] = wireChunk{Digest: d[:], Size: uint64(c.Size)}
		}
		w.Files[i] = wf
	}
	b, err := encMode.Marshal(&w)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest is %d bytes, limit %d (too many files or chunks, or Meta too big)", ErrTooLarge, len(b), MaxManifestSize)
	}
	return b, nil
}

// decodeManifest decodes and validates a plaintext manifest. Only the
// canonical encoding of a valid manifest is accepted.
func decodeManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest is %d bytes, limit %d", ErrTooLarge, len(b), MaxManifestSize)
	}
	var w wireManifest
	if err := decMode.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrMalformed, err)
	}
	if w.Format != manifestFormat {
		return nil, fmt.Errorf("%w: manifest format %d, want %d", ErrMalformed, w.Format, manifestFormat)
	}
	if w.Version > maxVersion {
		return nil, fmt.Errorf("%w: manifest version %d out of range", ErrMalformed, w.Version)
	}
	m := &Manifest{
		Kind:      w.Kind,
		Name:      w.Name,
		MediaType: w.MediaType,
		Created:   time.Unix(0, w.Created).UTC(),
		Version:   int(w.Version),
		Prev:      cid.Undef,
		Meta:      w.Meta,
	}
	if w.Prev != nil {
		c, err := cid.Cast(w.Prev)
		if err != nil {
			return nil, fmt.Errorf("%w: manifest previous version: %v", ErrMalformed, err)
		}
		m.Prev = c
	}
	if err := validateHeader(m.Kind, m.Name, m.MediaType, m.Version, m.Prev); err != nil {
		return nil, err
	}
	if len(w.Files) == 0 {
		return nil, fmt.Errorf("%w: manifest lists no files", ErrMalformed)
	}
	m.Files = make([]File, len(w.Files))
	for i, wf := range w.Files {
		if len(wf.SHA256) != 32 {
			return nil, fmt.Errorf("%w: file %d: SHA-256 is %d bytes", ErrMalformed, i, len(wf.SHA256))
		}
		if wf.Size > math.MaxInt64 {
			return nil, fmt.Errorf("%w: file %d: size %d out of range", ErrMalformed, i, wf.Size)
		}
		f := File{Path: wf.Path, Size: int64(wf.Size), Chunks: make([]Chunk, len(wf.Chunks))}
		copy(f.SHA256[:], wf.SHA256)
		for j, wc := range wf.Chunks {
			if len(wc.Digest) != 32 {
				return nil, fmt.Errorf("%w: file %d chunk %d: digest is %d bytes", ErrMalformed, i, j, len(wc.Digest))
			}
			if wc.Size > MaxChunkSize {
				return nil, fmt.Errorf("%w: file %d chunk %d: size %d above %d", ErrMalformed, i, j, wc.Size, MaxChunkSize)
			}
			f.Chunks[j] = Chunk{CID: rawCID([32]byte(wc.Digest)), Size: int64(wc.Size)}
		}
		if err := validateFile(f); err != nil {
			return nil, fmt.Errorf("file %d (%q): %w", i, f.Path, err)
		}
		m.Files[i] = f
	}
	// Reject non-canonical encodings (non-minimal integers, unsorted keys,
	// an explicit empty optional field, ...): one manifest, one encoding.
	again, err := encMode.Marshal(&w)
	if err != nil || !bytes.Equal(again, b) {
		return nil, fmt.Errorf("%w: manifest is not in canonical CBOR form", ErrMalformed)
	}
	return m, nil
}

func validateHeader(kind, name, mediaType string, version int, prev cid.Cid) error {
	switch {
	case kind == "":
		return fmt.Errorf("%w: kind is empty", ErrMalformed)
	case len(kind) > maxKindSize || len(name) > maxNameSize || len(mediaType) > maxMediaTypeSize:
		return fmt.Errorf("%w: kind, name or media type too long (limits %d, %d, %d bytes)", ErrMalformed, maxKindSize, maxNameSize, maxMediaTypeSize)
	case !utf8.ValidString(kind) || !utf8.ValidString(name) || !utf8.ValidString(mediaType):
		return fmt.Errorf("%w: kind, name or media type is not valid UTF-8", ErrMalformed)
	case version < 1 || version > maxVersion:
		return fmt.Errorf("%w: version %d out of range", ErrMalformed, version)
	case version == 1 && prev.Defined():
		return fmt.Errorf("%w: version 1 has no previous version, got %s", ErrMalformed, prev)
	case version > 1 && !prev.Defined():
		return fmt.Errorf("%w: version %d needs the previous version's record ID", ErrMalformed, version)
	}
	if prev.Defined() {
		if _, ok := digestOf(prev); !ok {
			return fmt.Errorf("%w: previous version %s is not a record ID (CIDv1 raw sha2-256)", ErrMalformed, prev)
		}
	}
	return nil
}

// validateFile checks a File's shape: path, chunk CIDs, and chunk sizes
// consistent with one chunk size (all chunks but the last full, the last
// non-empty unless the file is empty) and summing to Size.
func validateFile(f File) error {
	if len(f.Path) > MaxPathSize || !utf8.ValidString(f.Path) {
		return fmt.Errorf("%w: path is longer than %d bytes or not UTF-8", ErrMalformed, MaxPathSize)
	}
	if f.Size < 0 {
		return fmt.Errorf("%w: negative size %d", ErrMalformed, f.Size)
	}
	n := len(f.Chunks)
	if n == 0 {
		return fmt.Errorf("%w: file has no chunks (an empty file has one empty chunk)", ErrTruncated)
	}
	full := f.Chunks[0].Size
	var sum int64
	for i, c := range f.Chunks {
		if _, ok := digestOf(c.CID); !ok {
			return fmt.Errorf("%w: chunk %d: %s is not a CIDv1 raw sha2-256 block", ErrMalformed, i, c.CID)
		}
		switch {
		case c.Size < 0 || c.Size > MaxChunkSize:
			return fmt.Errorf("%w: chunk %d: size %d out of range", ErrMalformed, i, c.Size)
		case i < n-1 && (c.Size != full || c.Size < MinChunkSize):
			return fmt.Errorf("%w: chunk %d: size %d, but every chunk before the last must have the same size of at least %d", ErrMalformed, i, c.Size, MinChunkSize)
		case i == n-1 && c.Size > full:
			return fmt.Errorf("%w: last chunk is larger (%d) than the others (%d)", ErrMalformed, c.Size, full)
		case i == n-1 && c.Size == 0 && n > 1:
			return fmt.Errorf("%w: empty last chunk after %d chunks", ErrMalformed, n-1)
		}
		sum += c.Size
	}
	switch {
	case sum < f.Size:
		return fmt.Errorf("%w: chunks hold %d bytes of a %d-byte file", ErrTruncated, sum, f.Size)
	case sum > f.Size:
		return fmt.Errorf("%w: chunks hold %d bytes, but the file is %d bytes", ErrMalformed, sum, f.Size)
	}
	return nil
}

// sealManifest encrypts a manifest encoding into a manifest block.
func sealManifest(k *recordKeys, plaintext []byte) (blocks.Block, error) {
	out := make([]byte, manifestHeaderSize, manifestHeaderSize+len(plaintext)+TagSize)
	copy(out, k.commit[:])
	binary.BigEndian.PutUint32(out[32:36], uint32(len(plaintext)+TagSize))
	out = k.seal(out, plaintext, manifestFileIndex, 0, true)
	return blocks.NewBlockWithCid(out, rawCID(sha256Sum(out)))
}

// OpenManifest fetches the manifest block id, checks it against id, and
// decrypts and decodes it with key. Errors: ErrBlockMismatch if the getter
// returned other bytes, ErrWrongKey if key is not the record's key,
// ErrTruncated or ErrTampered if the block is damaged, ErrTooLarge or
// ErrMalformed if it is not a valid manifest.
func OpenManifest(ctx context.Context, g BlockGetter, id cid.Cid, key Key) (*Manifest, error) {
	if _, ok := digestOf(id); !ok {
		return nil, fmt.Errorf("%w: %s is not a record ID (CIDv1 raw sha2-256)", ErrMalformed, id)
	}
	blk, err := g.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("fetch manifest block %s: %w", id, err)
	}
	if blk == nil {
		return nil, fmt.Errorf("fetch manifest block %s: getter returned no block", id)
	}
	raw := blk.RawData()
	if err := verifyBlock(id, raw); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	k, err := deriveKeys(key)
	if err != nil {
		return nil, err
	}
	return openManifestBlock(k, id, raw)
}

func openManifestBlock(k *recordKeys, id cid.Cid, raw []byte) (*Manifest, error) {
	if len(raw) > maxManifestBlockSize {
		return nil, fmt.Errorf("%w: manifest block %s is %d bytes, limit %d", ErrTooLarge, id, len(raw), maxManifestBlockSize)
	}
	if len(raw) < 32 {
		return nil, fmt.Errorf("%w: manifest block %s is %d bytes, shorter than its %d-byte header", ErrTruncated, id, len(raw), manifestHeaderSize)
	}
	if subtle.ConstantTimeCompare(raw[:32], k.commit[:]) != 1 {
		return nil, fmt.Errorf("%w: record %s", ErrWrongKey, id)
	}
	if len(raw) < manifestHeaderSize+TagSize {
		return nil, fmt.Errorf("%w: manifest block %s is %d bytes, shorter than the minimum %d", ErrTruncated, id, len(raw), manifestHeaderSize+TagSize)
	}
	want := int64(binary.BigEndian.Uint32(raw[32:36]))
	have := int64(len(raw) - manifestHeaderSize)
	switch {
	case have < want:
		return nil, fmt.Errorf("%w: manifest block %s holds %d of %d sealed bytes", ErrTruncated, id, have, want)
	case have > want:
		return nil, fmt.Errorf("%w: manifest block %s has %d trailing bytes", ErrMalformed, id, have-want)
	}
	pt, err := k.open(nil, raw[manifestHeaderSize:], manifestFileIndex, 0, true)
	if err != nil {
		return nil, fmt.Errorf("%w: manifest block %s does not authenticate", ErrTampered, id)
	}
	m, err := decodeManifest(pt)
	if err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", id, err)
	}
	return m, nil
}
