package blockstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	badgerdb "github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-base32"
)

// walkBeforeSeek is how many keys HasAll steps over before it seeks
// instead: stepping to the next key is a fraction of a seek (which
// searches every level of the tree), so where the blocks asked for lie
// close together (a listing asks for every record's root, interleaved
// with its chunks and the ledger's entries) it walks, and where they are
// sparse among many other blocks it seeks.
const walkBeforeSeek = 16

// HasAll reports, for each of cids, whether the store holds its block:
// what Blocks.Has answers for each (a block is stored under its
// multihash, whatever the CID's version and codec), from the blocks'
// marks (marks.go), read in one badger transaction (one consistent view
// of the store) by one ordered walk of the marks asked for. Blocks.Has
// opens a transaction per block (a wait for badger's commit watermark
// each) and reads the table block where the block itself is stored:
// `ls` of 100,000 records spent 70% of its CPU, and most of its time
// waiting for the disk, doing that.
func (s *Store) HasAll(ctx context.Context, cids []cid.Cid) ([]bool, error) {
	out := make([]bool, len(cids))
	if len(cids) == 0 {
		return out, nil
	}
	s.closing.RLock()
	defer s.closing.RUnlock()
	if s.closed {
		return nil, errors.New("look up blocks: the blockstore is closed")
	}
	type ask struct {
		key []byte
		i   int
	}
	// Every mark asked for, in one buffer.
	size := 0
	for _, c := range cids {
		size += len(markPrefix) + base32.RawStdEncoding.EncodedLen(len(c.Hash()))
	}
	buf := make([]byte, 0, size)
	asks := make([]ask, len(cids))
	for i, c := range cids {
		start := len(buf)
		buf = appendMark(buf, c)
		asks[i] = ask{key: buf[start:len(buf):len(buf)], i: i}
	}
	slices.SortFunc(asks, func(a, b ask) int { return bytes.Compare(a.key, b.key) })

	txn := s.DS.DB.NewTransaction(false)
	defer txn.Discard()
	opts := badgerdb.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = []byte(markPrefix)
	it := txn.NewIterator(opts)
	defer it.Close()
	it.Seek(asks[0].key)
	for n, a := range asks {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("look up blocks: %w", err)
			}
		}
		for step := 0; it.Valid() && bytes.Compare(it.Item().Key(), a.key) < 0; step++ {
			if step == walkBeforeSeek {
				it.Seek(a.key)
				break
			}
			it.Next()
		}
		out[a.i] = it.Valid() && bytes.Equal(it.Item().Key(), a.key)
	}
	return out, nil
}

// appendMark appends the mark of c's block: the key Blocks stores it
// under (/blocks/<its multihash in base32, dshelp.MultihashToDsKey>) with
// the marks' prefix.
func appendMark(b []byte, c cid.Cid) []byte {
	h := c.Hash()
	b = append(b, markPrefix...)
	n := len(b)
	b = append(b, make([]byte, base32.RawStdEncoding.EncodedLen(len(h)))...)
	base32.RawStdEncoding.Encode(b[n:], h)
	return b
}
