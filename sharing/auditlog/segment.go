package auditlog

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/mod/sumdb/tlog"
)

// A backup carries the leaves up to the moment it was taken (Export), but
// an owner keeps signing tree heads after it: an auditor may hold a head of
// a size no backup covers, and a log restored from the backup would append
// what it syncs after it in another order, so that head would no longer be
// consistent with it. The owner therefore keeps the order as it goes: each
// time it signs a head beyond what it kept, it writes a segment, the leaves
// since the previous one with the root (and the signed head) they end at,
// and stores it where a restore finds it again (node/auditlog keeps them
// as its own encrypted records, which replication keeps on other nodes).
// Segments chain from leaf 0, so any backup, or none, and the segments
// after it give back the whole log in its order.
//
// A segment is the magic line, uvarints From and To, the 32-byte root of
// the tree of To leaves, a uvarint-length-prefixed signed tree head of size
// To (length 0: none), then leaves From to To-1 as Export writes them.

// segmentMagic starts a segment.
const segmentMagic = "medmesh-audit-segment/1\n"

// maxSegmentLeaves bounds the leaves one segment may claim (a log of a
// trillion entries is not one clinic's).
const maxSegmentLeaves = 1 << 40

// Segment describes a segment: leaves [From, To) and what they end at.
type Segment struct {
	From, To int64
	Root     Hash
	// Head is the signed tree head of size To, when one was signed there.
	Head []byte
}

// ErrSegmentGap is returned when a segment starts past the log's end: a
// segment before it is missing.
var ErrSegmentGap = errors.New("audit log: the segment starts past the log's end")

// WriteSegment writes leaves [from, to) with the root of the tree of to
// leaves and head (a signed head of size to, or nil), and returns the
// bytes written.
func (l *Log) WriteSegment(ctx context.Context, from, to int64, head []byte, w io.Writer) (int64, error) {
	if from < 0 || from >= to || to > l.Size() {
		return 0, fmt.Errorf("audit log: no segment [%d, %d) of a log of %d leaves", from, to, l.Size())
	}
	root, err := l.Root(ctx, to)
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var hdr []byte
	hdr = append(hdr, segmentMagic...)
	hdr = binary.AppendUvarint(hdr, uint64(from))
	hdr = binary.AppendUvarint(hdr, uint64(to))
	hdr = append(hdr, root[:]...)
	hdr = binary.AppendUvarint(hdr, uint64(len(head)))
	hdr = append(hdr, head...)
	if _, err := bw.Write(hdr); err != nil {
		return 0, err
	}
	n := int64(len(hdr))
	for i := from; i < to; i++ {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		lf, err := l.Leaf(ctx, i)
		if err != nil {
			return n, err
		}
		k, err := writeLeaf(bw, lf)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, bw.Flush()
}

// ImportSegment reads a segment of owner's log from r and appends the
// leaves the log lacks. The leaves it already has must be the segment's,
// at the same indexes; each leaf's data must be the entry its CID names;
// the tree of To leaves must have the segment's root, and its head, when
// it has one, must be owner's signature of that root. A segment that does
// not hold leaves nothing appended (the log is cut back to where it was);
// one that starts past the log's end is ErrSegmentGap. The signed head is
// stored, so the log answers with it again. It returns the segment and how
// many leaves it appended.
func (l *Log) ImportSegment(ctx context.Context, r io.Reader, owner peer.ID) (Segment, int64, error) {
	var seg Segment
	br := bufio.NewReaderSize(r, 64<<10)
	magic := make([]byte, len(segmentMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != segmentMagic {
		return seg, 0, fmt.Errorf("%w: not an audit log segment", ErrImport)
	}
	from, err1 := binary.ReadUvarint(br)
	to, err2 := binary.ReadUvarint(br)
	_, err3 := io.ReadFull(br, seg.Root[:])
	hlen, err4 := binary.ReadUvarint(br)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return seg, 0, fmt.Errorf("%w: segment header: %v", ErrImport, err)
	}
	if from >= to || to > maxSegmentLeaves || hlen > maxHeadSize {
		return seg, 0, fmt.Errorf("%w: a segment of leaves [%d, %d) with a head of %d bytes", ErrImport, from, to, hlen)
	}
	seg.From, seg.To = int64(from), int64(to)
	if hlen > 0 {
		seg.Head = make([]byte, hlen)
		if _, err := io.ReadFull(br, seg.Head); err != nil {
			return seg, 0, fmt.Errorf("%w: segment head: %v", ErrImport, err)
		}
		h, err := OpenHead(seg.Head, owner)
		if err != nil {
			return seg, 0, fmt.Errorf("%w: segment head: %v", ErrImport, err)
		}
		if h.Size != seg.To || h.Root != seg.Root {
			return seg, 0, fmt.Errorf("%w: the segment's head is of size %d, the segment ends at %d", ErrImport, h.Size, seg.To)
		}
	}
	l.importMu.Lock()
	defer l.importMu.Unlock()
	start := l.Size()
	if seg.From > start {
		return seg, 0, fmt.Errorf("%w: it starts at leaf %d, the log has %d", ErrSegmentGap, seg.From, start)
	}
	fail := func(err error) (Segment, int64, error) {
		if l.Size() > start {
			if terr := l.truncate(ctx, start); terr != nil {
				return seg, 0, errors.Join(err, terr)
			}
		}
		return seg, 0, err
	}
	batch := make([]Leaf, 0, 256)
	flush := func() error {
		err := l.appendAll(ctx, batch, "an entry of the segment is already in the log at another index")
		batch = batch[:0]
		return err
	}
	for i := seg.From; i < seg.To; i++ {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		lf, err := readLeaf(br)
		if err != nil {
			return fail(fmt.Errorf("%w: segment leaf %d: %v", ErrImport, i, err))
		}
		if i < start {
			have, err := l.Leaf(ctx, i)
			if err != nil {
				return fail(err)
			}
			if !have.Entry.Equals(lf.Entry) {
				return fail(fmt.Errorf("%w: the log's leaf %d is entry %s, the segment's %s: the log diverged from the order it signed", ErrImport, i, have.Entry, lf.Entry))
			}
			continue
		}
		batch = append(batch, lf)
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return fail(err)
			}
		}
	}
	if err := flush(); err != nil {
		return fail(err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return fail(fmt.Errorf("%w: the segment holds more than its %d leaves", ErrImport, seg.To-seg.From))
	}
	root, err := l.Root(ctx, seg.To)
	if err != nil {
		return fail(err)
	}
	if root != seg.Root {
		return fail(fmt.Errorf("%w: leaves [0, %d) make root %x, the segment says %x", ErrImport, seg.To, root[:8], seg.Root[:8]))
	}
	if seg.Head != nil {
		if _, ok, err := l.Head(ctx, seg.To); err != nil {
			return seg, l.Size() - start, err
		} else if !ok {
			if err := l.PutHead(ctx, seg.To, seg.Head); err != nil {
				return seg, l.Size() - start, err
			}
		}
	}
	return seg, l.Size() - start, nil
}

// truncate cuts the log back to size leaves (an import that did not
// hold). Appends must not run beside it.
func (l *Log) truncate(ctx context.Context, size int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.Size()
	if size < 0 || size > cur {
		return fmt.Errorf("audit log: cut %d leaves back to %d", cur, size)
	}
	batch, err := l.ds.Batch(ctx)
	if err != nil {
		return err
	}
	for n := size; n < cur; n++ {
		lf, err := l.Leaf(ctx, n)
		if err != nil {
			return err
		}
		for _, k := range []datastore.Key{leafKey(n), entryKey(lf.Entry), recordKey(lf.Record, n), headKey(n + 1)} {
			if err := batch.Delete(ctx, k); err != nil {
				return err
			}
		}
	}
	for i := tlog.StoredHashCount(size); i < tlog.StoredHashCount(cur); i++ {
		if err := batch.Delete(ctx, hashKey(i)); err != nil {
			return err
		}
	}
	var sz [8]byte
	binary.BigEndian.PutUint64(sz[:], uint64(size))
	if err := batch.Put(ctx, keySize, sz[:]); err != nil {
		return err
	}
	if err := batch.Commit(ctx); err != nil {
		return fmt.Errorf("audit log: cut back to %d leaves: %w", size, err)
	}
	l.smu.Lock()
	l.size = size
	l.smu.Unlock()
	return nil
}
