package auditlog

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
)

// A log's leaves in order are the one part of it no other node can give
// back: the entries themselves come back from the owner's replica group,
// but in the order the restored node syncs them, and a log rebuilt in
// another order has other roots, so the tree heads auditors hold would no
// longer be consistent with it. A backup (`medmesh backup`) therefore
// carries the leaves (Export), and a restore writes them back (Import)
// before the node appends what it syncs after them.
//
// The export is, for each leaf in order, three uvarint-length-prefixed
// fields: the entry's CID, the record's CID and the leaf data.

// maxExportField bounds one field of an export (a leaf's data is a ledger
// entry, at most a few KiB).
const maxExportField = 1 << 20

// ExportSize returns the number of bytes Export writes for the first size
// leaves.
func (l *Log) ExportSize(ctx context.Context, size int64) (int64, error) {
	var n int64
	err := l.eachLeaf(ctx, size, func(lf Leaf) error {
		for _, f := range leafFields(lf) {
			n += int64(uvarintLen(uint64(len(f))) + len(f))
		}
		return nil
	})
	return n, err
}

// Export writes the first size leaves to w, in order, and returns the bytes
// written.
func (l *Log) Export(ctx context.Context, size int64, w io.Writer) (int64, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	var n int64
	err := l.eachLeaf(ctx, size, func(lf Leaf) error {
		k, err := writeLeaf(bw, lf)
		n += k
		return err
	})
	if err != nil {
		return n, err
	}
	return n, bw.Flush()
}

func leafFields(lf Leaf) [3][]byte { return [3][]byte{lf.Entry.Bytes(), lf.Record.Bytes(), lf.Data} }

// writeLeaf writes a leaf's three fields, each uvarint-length-prefixed,
// and returns the bytes written.
func writeLeaf(w io.Writer, lf Leaf) (int64, error) {
	var pre [binary.MaxVarintLen64]byte
	var n int64
	for _, f := range leafFields(lf) {
		k := binary.PutUvarint(pre[:], uint64(len(f)))
		if _, err := w.Write(pre[:k]); err != nil {
			return n, err
		}
		if _, err := w.Write(f); err != nil {
			return n, err
		}
		n += int64(k + len(f))
	}
	return n, nil
}

// readLeaf reads a leaf writeLeaf wrote: two CIDs, and data whose hash is
// the entry's CID.
func readLeaf(br *bufio.Reader) (Leaf, error) {
	var fs [3][]byte
	for k := range fs {
		var err error
		if fs[k], err = readField(br); err != nil {
			return Leaf{}, err
		}
	}
	e, err := cid.Cast(fs[0])
	if err != nil {
		return Leaf{}, fmt.Errorf("entry: %v", err)
	}
	rec, err := cid.Cast(fs[1])
	if err != nil {
		return Leaf{}, fmt.Errorf("record: %v", err)
	}
	sum, err := e.Prefix().Sum(fs[2])
	if err != nil || !sum.Equals(e) {
		return Leaf{}, fmt.Errorf("its data is not entry %s", e)
	}
	return Leaf{Entry: e, Record: rec, Data: fs[2]}, nil
}

func uvarintLen(x uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], x)
}

func (l *Log) eachLeaf(ctx context.Context, size int64, f func(Leaf) error) error {
	if size < 0 || size > l.Size() {
		return fmt.Errorf("audit log: export of %d leaves from a log of %d", size, l.Size())
	}
	for i := int64(0); i < size; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		lf, err := l.Leaf(ctx, i)
		if err != nil {
			return err
		}
		if err := f(lf); err != nil {
			return err
		}
	}
	return nil
}

// readField reads one uvarint-length-prefixed field of an export or a
// segment.
func readField(br *bufio.Reader) ([]byte, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, err
	}
	if n > maxExportField {
		return nil, fmt.Errorf("a field of %d bytes", n)
	}
	b := make([]byte, n)
	_, err = io.ReadFull(br, b)
	return b, err
}

// appendAll appends leaves none of which the log may hold already (an
// import's): dup says what it means when one is.
func (l *Log) appendAll(ctx context.Context, leaves []Leaf, dup string) error {
	if len(leaves) == 0 {
		return nil
	}
	want := l.Size() + int64(len(leaves))
	if _, err := l.Append(ctx, leaves); err != nil {
		return err
	}
	if l.Size() != want {
		return fmt.Errorf("%w: %s", ErrImport, dup)
	}
	return nil
}

// ErrImport is returned when an export does not read back as the log it
// claims to be (damaged, truncated, or of another tree).
var ErrImport = errors.New("audit log: the exported log does not read back")

// Import appends to the empty log kept in ds the size leaves of an export
// read from r, and checks that they make the tree whose root is root. The
// log is written in batches; on an error it is left partial, and the
// caller discards the datastore (a restore removes the whole repo).
func Import(ctx context.Context, ds datastore.Batching, r io.Reader, size int64, root Hash) error {
	l, err := Open(ctx, ds)
	if err != nil {
		return err
	}
	if l.Size() != 0 {
		return fmt.Errorf("audit log: import into a log of %d leaves; it must be empty", l.Size())
	}
	br := bufio.NewReaderSize(r, 64<<10)
	batch := make([]Leaf, 0, 256)
	flush := func() error {
		err := l.appendAll(ctx, batch, "an entry appears twice")
		batch = batch[:0]
		return err
	}
	for i := int64(0); i < size; i++ {
		lf, err := readLeaf(br)
		if err != nil {
			return fmt.Errorf("%w: leaf %d of %d: %v", ErrImport, i, size, err)
		}
		batch = append(batch, lf)
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return fmt.Errorf("%w: more than the %d leaves it names", ErrImport, size)
	}
	got, err := l.Root(ctx, size)
	if err != nil {
		return err
	}
	if got != root {
		return fmt.Errorf("%w: its %d leaves make root %x, not %x", ErrImport, size, got[:8], root[:8])
	}
	return nil
}
