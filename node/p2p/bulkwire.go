package p2p

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/go-cid"
)

// Wire format of BulkProtocol. All integers are unsigned varints (minimal
// encoding, as encoding/binary writes them).
//
//	request  = count (1..bulkMaxBatch), count × (len (1..bulkMaxCIDLen), CID bytes)
//	response = one frame per requested CID, in request order:
//	           status byte; for bulkOK: size (0..bulkMaxBlockSize), block bytes
//
// A fetcher may pipeline requests on one stream; the holder answers them in
// order and closes its side when the fetcher closes its own.

const (
	// bulkMaxBatch is the most CIDs one request may name.
	bulkMaxBatch = 1024
	// bulkMaxCIDLen bounds one encoded CID (a CIDv1 sha2-256 is 36 bytes).
	bulkMaxCIDLen = 128
	// bulkMaxBlockSize bounds one block frame: medmesh chunks are 1 MiB
	// plus a tag, bitswap's own limit is 2 MiB.
	bulkMaxBlockSize = 2 << 20
)

// Frame status bytes.
const (
	bulkOK      byte = 0
	bulkRefused byte = 1 // the holder's block filter refused it to us
	bulkMissing byte = 2 // the holder does not have it
)

var errBulkMalformed = errors.New("p2p: malformed bulk message")

// readUvarint reads a minimally encoded uvarint no larger than limit.
func readUvarint(r io.ByteReader, limit uint64) (uint64, error) {
	var v uint64
	for i := 0; ; i++ {
		if i == binary.MaxVarintLen64 {
			return 0, fmt.Errorf("%w: varint too long", errBulkMalformed)
		}
		b, err := r.ReadByte()
		if err != nil {
			if i > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		if i == binary.MaxVarintLen64-1 && b > 1 {
			return 0, fmt.Errorf("%w: varint overflows", errBulkMalformed)
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			if b == 0 && i > 0 {
				return 0, fmt.Errorf("%w: varint not minimal", errBulkMalformed)
			}
			if v > limit {
				return 0, fmt.Errorf("%w: %d exceeds the limit %d", errBulkMalformed, v, limit)
			}
			return v, nil
		}
	}
}

func putUvarint(w *bufio.Writer, v uint64) error {
	var buf [binary.MaxVarintLen64]byte
	_, err := w.Write(buf[:binary.PutUvarint(buf[:], v)])
	return err
}

// writeBulkRequest encodes a request for cids (1..bulkMaxBatch of them).
func writeBulkRequest(w *bufio.Writer, cids []cid.Cid) error {
	if len(cids) == 0 || len(cids) > bulkMaxBatch {
		return fmt.Errorf("p2p: bulk request of %d CIDs", len(cids))
	}
	if err := putUvarint(w, uint64(len(cids))); err != nil {
		return err
	}
	for _, c := range cids {
		k := c.KeyString()
		if len(k) == 0 || len(k) > bulkMaxCIDLen {
			return fmt.Errorf("p2p: CID of %d bytes in a bulk request", len(k))
		}
		if err := putUvarint(w, uint64(len(k))); err != nil {
			return err
		}
		if _, err := w.WriteString(k); err != nil {
			return err
		}
	}
	return nil
}

// readBulkRequest decodes one request, appending its CIDs to dst[:0]. It
// returns io.EOF if the stream ended cleanly before a request. Every CID
// must be a valid, canonically encoded CID; nothing larger than the limits
// is ever allocated.
func readBulkRequest(r *bufio.Reader, dst []cid.Cid) ([]cid.Cid, error) {
	dst = dst[:0]
	n, err := readUvarint(r, bulkMaxBatch)
	if err != nil {
		return dst, err
	}
	if n == 0 {
		return dst, fmt.Errorf("%w: empty request", errBulkMalformed)
	}
	var buf [bulkMaxCIDLen]byte
	for range n {
		l, err := readUvarint(r, bulkMaxCIDLen)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return dst, err
		}
		if l == 0 {
			return dst, fmt.Errorf("%w: empty CID", errBulkMalformed)
		}
		if _, err := io.ReadFull(r, buf[:l]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return dst, err
		}
		c, err := cid.Cast(buf[:l])
		if err != nil {
			return dst, fmt.Errorf("%w: %v", errBulkMalformed, err)
		}
		if c.KeyString() != string(buf[:l]) {
			return dst, fmt.Errorf("%w: CID not canonically encoded", errBulkMalformed)
		}
		dst = append(dst, c)
	}
	return dst, nil
}

// writeBulkFrame writes one response frame; data is used only for bulkOK.
func writeBulkFrame(w *bufio.Writer, status byte, data []byte) error {
	if err := w.WriteByte(status); err != nil {
		return err
	}
	if status != bulkOK {
		return nil
	}
	if len(data) > bulkMaxBlockSize {
		return fmt.Errorf("p2p: block of %d bytes exceeds the bulk limit", len(data))
	}
	if err := putUvarint(w, uint64(len(data))); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}

// readBulkFrameHeader reads a frame's status and, for bulkOK, the size of
// the block that follows (at most bulkMaxBlockSize).
func readBulkFrameHeader(r *bufio.Reader) (status byte, size int, err error) {
	status, err = r.ReadByte()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, err
	}
	switch status {
	case bulkRefused, bulkMissing:
		return status, 0, nil
	case bulkOK:
	default:
		return 0, 0, fmt.Errorf("%w: unknown frame status %d", errBulkMalformed, status)
	}
	n, err := readUvarint(r, bulkMaxBlockSize)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return status, int(n), err
}
