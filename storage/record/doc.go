// Package record seals files into a record: fixed-size chunks, each
// encrypted with AES-256-GCM and stored as a raw block, plus an encrypted
// manifest whose block CID is the record ID.
//
// # Keys
//
// A record is sealed under one fresh random 256-bit data key (NewKey). Two
// subkeys are derived from it with HKDF-SHA256 (no salt):
//
//	aeadKey = HKDF(key, info "medmesh record v1 aead key")       AES-256-GCM key
//	commit  = HKDF(key, info "medmesh record v1 key commitment") 32 bytes
//
// # Chunks
//
// Each file of a record has an index i (its position in Manifest.Files,
// 0 ≤ i < 2³²−1) and is cut into chunks of Options.ChunkSize bytes; chunk j
// of file i is sealed as
//
//	nonce = i (4 bytes, big endian) || j (8 bytes, big endian)
//	ad    = i (4 bytes) || j (8 bytes) || last (1 byte: 1 for the file's final chunk, else 0)
//	block = AES-256-GCM-Seal(aeadKey, nonce, chunk, ad)    (ciphertext || 16-byte tag)
//
// and stored as a raw block (CIDv1, codec raw 0x55, sha2-256). Blocks are
// ciphertext only. As in age's STREAM construction, a chunk opens only at
// the position it was sealed for, so chunks cannot be reordered, moved
// between files or records, and a file cut short is detected: its new last
// chunk was sealed with last = 0 (ErrTruncated). Every file has at least one
// chunk: an empty file is a single empty final chunk, so even an empty file
// carries a final-chunk marker.
//
// # Nonce uniqueness
//
// Nonce reuse is impossible by construction: (i, j) names a distinct nonce
// for every chunk of a record; the manifest uses the reserved position
// (2³²−1, 0), which no file can have; and a key seals exactly one record.
// The Builder enforces the parts it can: it numbers files and chunks
// itself, and after any failure (or after Finish) it refuses further work,
// so no position is ever sealed twice with different contents. Callers must
// enforce the rest: never give a key to two Builders. A new version of a
// record is a new record with a new key (re-wrap it to the grantees).
//
// # Manifest
//
// The manifest is encoded as CBOR in Core Deterministic mode (a map with
// small integer keys; each file is [path, size, sha256, chunks], each chunk
// [digest, size], the chunk CID being CIDv1 raw sha2-256 of that digest).
// Decoding is strict: duplicate map keys, indefinite lengths, tags, unknown
// fields, trailing bytes, nesting deeper than 8, invalid UTF-8 and any
// non-canonical encoding are rejected, and the content is validated (chunk
// sizes consistent and summing to the file size, version/previous-version
// coherence, string lengths).
//
// The plaintext manifest is limited to MaxManifestSize (1 MiB): about 38
// bytes a chunk and 40 bytes plus the path a file, so one file of ~26 GiB
// at 1 MiB chunks, or a study of several thousand instances. Beyond it
// Finish returns ErrTooLarge (AddFile does early, as soon as the chunk
// count alone is too large).
//
// The manifest block is
//
//	commit (32) || len (4, big endian, of what follows) || AES-256-GCM-Seal(aeadKey, nonce(2³²−1, 0), manifest, ad(2³²−1, 0, last=1))
//
// The commitment makes the key check explicit (ErrWrongKey rather than a
// generic failure) and makes a record key-committing: AES-GCM alone is not,
// and a record's creator could otherwise craft one manifest block that
// opens to different contents under two keys given to two grantees. The
// commitment is a PRF output of a fresh key, so it reveals nothing; the
// length repeats the block size and lets a truncated block be reported as
// such (ErrTruncated).
//
// # Reading
//
// OpenManifest and ReadFile trust nothing they fetch: each block is checked
// against its CID (ErrBlockMismatch) before it is opened, ReadFile keeps at
// most ReadOptions.Concurrency chunks in memory, and it checks the file's
// plaintext SHA-256 at the end.
//
// # Block list
//
// EncodeBlockList gives replica holders, who never get the key, the list of
// a record's block CIDs (canonical CBOR {0: 1, 1: [cid bytes...]}).
package record
