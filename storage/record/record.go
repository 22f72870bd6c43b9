package record

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
)

// Sizes and limits. See doc.go for how they relate.
const (
	// DefaultChunkSize is the plaintext size of every chunk but a file's last.
	// Each sealed chunk is one block of DefaultChunkSize+TagSize bytes, well
	// under bitswap's 2 MiB block limit.
	//
	// Chosen by benchmark (bench_test.go, go test -bench 'Ingest|Read'
	// -benchtime 6x -count 3; AMD EPYC, 2 cores shared with other jobs at
	// load average ~8, so wall-clock MB/s are the range of 3 runs and the
	// CPU cost, MiB per CPU-second of the whole process, is the steadier
	// measure):
	//
	//	                   256 KiB                 512 KiB                 1 MiB
	//	ingest, badger     121-374 MB/s  236-431   577-594 MB/s  534-543   511-534 MB/s  527-532 MiB/cpu-s
	//	ingest, in memory  433-458 MB/s  664-671   299-412 MB/s  665-693   331-429 MB/s  626-657
	//	read, badger       191-519 MB/s  493-517   518-531 MB/s  515-535   408-647 MB/s  521-526
	//	read, in memory    831-1458 MB/s 793-816   664-1167 MB/s 782-798   516-984 MB/s  746-781
	//
	// The cost per byte hardly depends on the chunk size (it is AES-GCM at
	// ~5 GiB/cpu-s, two SHA-256 passes and a copy; badger adds ~20%), and
	// 512 KiB and 1 MiB both ingest at 2.5× Kubo's ipfs add (~210 MiB/s)
	// while encrypting. The largest size wins on everything else: 4× fewer
	// blocks, provider records and want-list entries than 256 KiB, and 4×
	// the file size a manifest can hold.
	DefaultChunkSize = 1 << 20
	// MinChunkSize and MaxChunkSize bound Options.ChunkSize.
	MinChunkSize = 1 << 10
	MaxChunkSize = 1 << 20
	// TagSize is the AES-GCM authentication tag appended to every sealed
	// chunk and to the sealed manifest.
	TagSize = 16
	// MaxManifestSize caps the plaintext (CBOR) size of a manifest. A chunk
	// costs 38-40 bytes of manifest and a file about 40 bytes plus its path,
	// so 1 MiB covers a single file of ~26 GiB at 1 MiB chunks, or a study of
	// several thousand instances. Finish returns ErrTooLarge beyond it, and
	// AddFile does as soon as a file's chunk count alone exceeds it.
	MaxManifestSize = 1 << 20
	// MaxPathSize caps File.Path, in bytes.
	MaxPathSize = 4096
)

// Errors. Every error this package returns for bad input wraps one of these
// (test with errors.Is); the message says which file, chunk or block failed.
var (
	// ErrWrongKey: the manifest was sealed under a different data key.
	ErrWrongKey = errors.New("wrong data key for this record")
	// ErrTampered: a chunk or the manifest fails authentication, a chunk
	// sits at a position other than the one it was sealed for, or the
	// plaintext does not match the manifest's SHA-256.
	ErrTampered = errors.New("record data fails authentication (tampered, reordered or corrupted)")
	// ErrTruncated: a file ends before its final chunk, or a manifest block
	// is shorter than its header says.
	ErrTruncated = errors.New("record data is truncated")
	// ErrTooLarge: a manifest or block list exceeds its size limit.
	ErrTooLarge = errors.New("record too large")
	// ErrBlockMismatch: a block's bytes do not hash to the CID it was
	// fetched under (a faulty or malicious provider, or disk corruption).
	ErrBlockMismatch = errors.New("block does not match its CID")
	// ErrMalformed: an encoding (manifest plaintext, block list, File
	// description) is not well formed or not canonical.
	ErrMalformed = errors.New("malformed record encoding")
	// ErrBuilderClosed: the Builder was finished or failed earlier; its key
	// must not be used for more data (see doc.go, nonce uniqueness).
	ErrBuilderClosed = errors.New("record builder is closed")
)

// Key is a record's 256-bit data key. Use a fresh key (NewKey) for every
// record, including every new version of a record.
type Key [32]byte

// NewKey returns a fresh random data key from crypto/rand.
func NewKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("generate data key: %w", err)
	}
	return k, nil
}

// String keeps the key out of logs and error messages.
func (Key) String() string { return "record.Key(redacted)" }

// GoString keeps the key out of %#v output.
func (Key) GoString() string { return "record.Key(redacted)" }

// BlockPutter stores blocks; a boxo blockstore satisfies it. The putter may
// keep the block's bytes: the Builder never reuses them.
type BlockPutter interface {
	Put(context.Context, blocks.Block) error
}

// BlockGetter fetches blocks by CID: a blockstore, or a network fetcher.
// Its answers are not trusted: every block is checked against its CID.
type BlockGetter interface {
	Get(context.Context, cid.Cid) (blocks.Block, error)
}

// Manifest describes a record. It is stored encrypted under the record's
// key; providers never see it.
type Manifest struct {
	Kind      string    // "file", "dicom-study", "dataset", ...
	Name      string    // original file name
	MediaType string    // e.g. "application/pdf"
	Created   time.Time // creation time (nanosecond precision, UTC after decoding)
	Version   int       // 1 for a new record
	Prev      cid.Cid   // previous version's record ID, cid.Undef if none
	Files     []File    // at least one; a file's index here is its nonce space
	Meta      []byte    // kind-specific, opaque here (e.g. the DICOM study index)
}

// File is one file of a record: its plaintext size and SHA-256, and its
// chunks in order. Every file has at least one chunk; an empty file has a
// single empty chunk.
type File struct {
	Path   string
	Size   int64
	SHA256 [32]byte
	Chunks []Chunk
}

// Chunk is one sealed chunk: the CID of its block (CIDv1, raw, sha2-256 of
// the ciphertext) and its plaintext size.
type Chunk struct {
	CID  cid.Cid
	Size int64
}

// Header is the part of the manifest the caller supplies to Finish.
type Header struct {
	Kind      string    // required
	Name      string    // optional
	MediaType string    // optional
	Created   time.Time // defaults to time.Now()
	Version   int       // defaults to 1; above 1 requires Prev
	Prev      cid.Cid   // previous version's record ID, or cid.Undef
	Meta      []byte    // optional
}

// Options configures a Builder.
type Options struct {
	// ChunkSize is the plaintext chunk size, between MinChunkSize and
	// MaxChunkSize; 0 means DefaultChunkSize.
	ChunkSize int
	// Progress, if set, is called after each chunk is stored with the
	// running total of plaintext bytes stored by this Builder (all files).
	Progress func(plaintextBytes int64)
}

// ReadOptions configures ReadFile.
type ReadOptions struct {
	// Concurrency is the number of chunks in flight (being fetched,
	// decrypted or waiting to be written); 0 means 16. Memory use is about
	// 2 × Concurrency × chunk size.
	Concurrency int
	// Progress, if set, is called after each chunk is written with the
	// running total of plaintext bytes written.
	Progress func(int64)
	// GetterVerifies says the getter already checks every block it returns
	// against its CID (a validating blockstore, bitswap, which derives CIDs
	// from the bytes it receives), so ReadFile does not hash each chunk a
	// second time. Leave it false for any other getter. Either way a chunk
	// that is not the one sealed at its position fails to decrypt.
	GetterVerifies bool
}

// Result is what Finish returns.
type Result struct {
	// ID is the manifest block's CID: the record ID.
	ID cid.Cid
	// Manifest is the manifest as sealed.
	Manifest *Manifest
	// Blocks lists every block of the record: each file's chunks in order,
	// then the manifest block (the same list as Manifest.Blocks(ID)).
	Blocks []cid.Cid
	// Size is the plaintext size of all files.
	Size int64
}

// Blocks lists every block of the record whose ID is id and whose manifest
// is m: each file's chunks in order, then the manifest block. This is what
// EncodeBlockList encodes for replica holders.
func (m *Manifest) Blocks(id cid.Cid) []cid.Cid {
	n := 1
	for _, f := range m.Files {
		n += len(f.Chunks)
	}
	out := make([]cid.Cid, 0, n)
	for _, f := range m.Files {
		for _, c := range f.Chunks {
			out = append(out, c.CID)
		}
	}
	return append(out, id)
}

// Size returns the plaintext size of all files.
func (m *Manifest) Size() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}
