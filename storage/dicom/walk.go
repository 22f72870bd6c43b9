package dicom

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"io"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// This file holds the bounded element walker shared by the parser (as the
// pre-scan that checks every declared length against the bytes that exist
// before anything is allocated) and by the de-identifier (which rewrites the
// element tree and streams pixel data through).

const (
	undefinedLength = 0xFFFFFFFF
	// maxValueBytes caps any single non-pixel value held in memory.
	maxValueBytes = 64 << 20
	// maxDepth caps sequence nesting.
	maxDepth = 64
	// maxInflated caps the decoded size of a deflated dataset.
	maxInflated = 1 << 30

	tagItem            = 0xFFFEE000
	tagItemDelim       = 0xFFFEE00D
	tagSeqDelim        = 0xFFFEE0DD
	tagPixelData       = 0x7FE00010
	tagTransferSyntax  = 0x00020010
	tagMetaGroupLength = 0x00020000
)

// Transfer syntax UIDs this package handles specially.
const (
	tsImplicitLE = "1.2.840.10008.1.2"
	tsExplicitLE = "1.2.840.10008.1.2.1"
	tsDeflatedLE = "1.2.840.10008.1.2.1.99"
	tsExplicitBE = "1.2.840.10008.1.2.2"
)

// element is one decoded data element. Values are kept as raw bytes in the
// byte order of the source transfer syntax.
type element struct {
	Tag   uint32
	VR    string
	VL    uint32 // declared length (undefinedLength for undefined)
	Value []byte
	Items []*item // for sequences (VR SQ, or UN of undefined length)
	IsSeq bool
	// Pixel is set for top-level pixel data elements that are streamed, not
	// held: Value is nil and the bytes are consumed by the pixel callback.
	Pixel bool
	// Encap marks a nested undefined-length non-sequence value (encapsulated
	// pixel data inside a sequence): Value holds the raw fragment items.
	Encap bool
	Off   int64
}

type item struct {
	Elems []*element
}

func (e *element) group() uint16 { return uint16(e.Tag >> 16) }

// str returns the value as a trimmed string (first value of a multi-valued one kept joined).
func (e *element) str() string {
	if e == nil {
		return ""
	}
	return strings.TrimRight(string(e.Value), " \x00")
}

type tsInfo struct {
	UID      string
	BO       binary.ByteOrder
	Implicit bool
	Deflate  bool
}

func lookupTS(uid string) (tsInfo, error) {
	if !ConformantUID(uid) {
		return tsInfo{}, perr(ErrUnsupported, -1, "invalid transfer syntax UID %q", uid)
	}
	switch uid {
	case tsImplicitLE:
		return tsInfo{uid, binary.LittleEndian, true, false}, nil
	case tsExplicitBE:
		return tsInfo{uid, binary.BigEndian, false, false}, nil
	case tsDeflatedLE:
		return tsInfo{uid, binary.LittleEndian, false, true}, nil
	}
	// Every other standard transfer syntax (explicit LE, all encapsulated
	// ones) encodes the dataset as Explicit VR Little Endian.
	if strings.HasPrefix(uid, "1.2.840.10008.1.2.") {
		return tsInfo{uid, binary.LittleEndian, false, false}, nil
	}
	return tsInfo{}, perr(ErrUnsupported, -1, "transfer syntax %q", uid)
}

// decoder walks elements from a stream with a known number of remaining
// bytes (limit >= 0) or, for deflated data, an unknown one (limit < 0).
type decoder struct {
	r        *bufio.Reader
	pos      int64
	limit    int64
	bo       binary.ByteOrder
	implicit bool
	// pixel is called for each top-level element of group 0x7FE0 (pixel
	// data and float pixel data). It must consume the value (see
	// copyPixel). nil means skip.
	pixel func(d *decoder, e *element) error
	// top holds the top-level elements read so far (for the pixel callback).
	top []*element
	buf [8]byte
}

func (d *decoder) remaining() int64 {
	if d.limit < 0 {
		return -1
	}
	return d.limit - d.pos
}

func (d *decoder) readN(n int) ([]byte, error) {
	b := d.buf[:n]
	k, err := io.ReadFull(d.r, b)
	d.pos += int64(k)
	if err != nil {
		if k == 0 && errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, perr(ErrTruncated, d.pos, "end of data inside an element header")
	}
	return b, nil
}

// peekGroup returns the next tag's group without consuming it.
func (d *decoder) peekGroup(bo binary.ByteOrder) (uint16, bool) {
	b, err := d.r.Peek(2)
	if err != nil {
		return 0, false
	}
	return bo.Uint16(b), true
}

var knownVR = map[string]bool{}

func init() {
	for _, vr := range strings.Fields("AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV") {
		knownVR[vr] = true
	}
}

func isLongVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

// dictVR returns the VR of a tag for implicit VR decoding.
func dictVR(t uint32) string {
	g, el := uint16(t>>16), uint16(t)
	if g%2 == 1 {
		if el >= 0x10 && el <= 0xFF {
			return "LO" // private creator
		}
		return "UN"
	}
	if el == 0 {
		return "UL"
	}
	if g&0xFF00 == 0x6000 || g&0xFF00 == 0x5000 {
		g &= 0xFF00 // repeating groups
	}
	info, err := tag.Find(tag.Tag{Group: g, Element: el})
	if err != nil || len(info.VRs) == 0 {
		return "UN"
	}
	vr := info.VRs[0]
	if t == tagPixelData || vr == "OB or OW" || strings.Contains(vr, " or ") {
		return "OW"
	}
	return vr
}

// readHeader reads one element header. It returns io.EOF only if the data
// ends exactly at an element boundary.
func (d *decoder) readHeader() (t uint32, vr string, vl uint32, err error) {
	b, err := d.readN(4)
	if err != nil {
		return 0, "", 0, err
	}
	bo := d.bo
	g := bo.Uint16(b[0:2])
	el := bo.Uint16(b[2:4])
	t = uint32(g)<<16 | uint32(el)
	if g == 0xFFFE {
		b, err = d.readN(4)
		if err != nil {
			return 0, "", 0, truncErr(err, d.pos)
		}
		return t, "", bo.Uint32(b), nil
	}
	if d.implicit {
		b, err = d.readN(4)
		if err != nil {
			return 0, "", 0, truncErr(err, d.pos)
		}
		return t, dictVR(t), bo.Uint32(b), nil
	}
	b, err = d.readN(4)
	if err != nil {
		return 0, "", 0, truncErr(err, d.pos)
	}
	if b[0] < 'A' || b[0] > 'Z' || b[1] < 'A' || b[1] > 'Z' {
		return 0, "", 0, perr(ErrMalformed, d.pos-4, "invalid VR bytes %q for tag (%04X,%04X)", b[0:2], g, el)
	}
	vr = string(b[0:2])
	if !knownVR[vr] {
		return 0, "", 0, perr(ErrMalformed, d.pos-4, "unknown VR %q for tag (%04X,%04X)", vr, g, el)
	}
	if isLongVR(vr) {
		b, err = d.readN(4)
		if err != nil {
			return 0, "", 0, truncErr(err, d.pos)
		}
		return t, vr, bo.Uint32(b), nil
	}
	return t, vr, uint32(bo.Uint16(b[2:4])), nil
}

func truncErr(err error, off int64) error {
	if errors.Is(err, io.EOF) {
		return perr(ErrTruncated, off, "end of data inside an element header")
	}
	return err
}

// checkLen verifies that n value bytes exist before anything is read.
func (d *decoder) checkLen(t uint32, n uint32) error {
	if rem := d.remaining(); rem >= 0 && int64(n) > rem {
		return perr(ErrDeclaredLength, d.pos, "element (%04X,%04X) declares %d bytes, %d remain", t>>16, t&0xFFFF, n, rem)
	}
	return nil
}

// readValue reads n bytes. Allocation never exceeds the bytes actually
// present: for known sizes the length was checked; for deflated streams the
// buffer grows as data arrives.
func (d *decoder) readValue(t uint32, n uint32) ([]byte, error) {
	if err := d.checkLen(t, n); err != nil {
		return nil, err
	}
	if n > maxValueBytes {
		return nil, perr(ErrTooLarge, d.pos, "element (%04X,%04X) value of %d bytes exceeds cap %d", t>>16, t&0xFFFF, n, maxValueBytes)
	}
	if d.limit >= 0 {
		v := make([]byte, n)
		k, err := io.ReadFull(d.r, v)
		d.pos += int64(k)
		if err != nil {
			return nil, perr(ErrTruncated, d.pos, "end of data inside element (%04X,%04X)", t>>16, t&0xFFFF)
		}
		return v, nil
	}
	var bb bytes.Buffer
	k, err := io.CopyN(&bb, d.r, int64(n))
	d.pos += k
	if err != nil {
		return nil, perr(ErrTruncated, d.pos, "end of data inside element (%04X,%04X)", t>>16, t&0xFFFF)
	}
	return bb.Bytes(), nil
}

// copyN streams n value bytes to w (io.Discard to skip).
func (d *decoder) copyN(w io.Writer, t uint32, n uint32) error {
	if err := d.checkLen(t, n); err != nil {
		return err
	}
	k, err := io.CopyN(w, d.r, int64(n))
	d.pos += k
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return perr(ErrTruncated, d.pos, "end of data inside element (%04X,%04X)", t>>16, t&0xFFFF)
		}
		return err
	}
	return nil
}

// readDataset reads elements until end (absolute position, if >= 0), an item
// delimiter (if inItem and end < 0), or the end of data (top level only).
func (d *decoder) readDataset(end int64, inItem bool, depth int) ([]*element, error) {
	if depth > maxDepth {
		return nil, perr(ErrMalformed, d.pos, "sequence nesting deeper than %d", maxDepth)
	}
	var out []*element
	for {
		if end >= 0 {
			if d.pos == end {
				return out, nil
			}
			if d.pos > end {
				return nil, perr(ErrMalformed, d.pos, "element overruns its enclosing item")
			}
		}
		off := d.pos
		t, vr, vl, err := d.readHeader()
		if err == io.EOF {
			if depth == 0 && end < 0 && !inItem {
				return out, nil
			}
			return nil, perr(ErrTruncated, d.pos, "end of data inside a sequence item")
		}
		if err != nil {
			return nil, err
		}
		switch t {
		case tagItemDelim:
			if inItem && end < 0 {
				return out, nil
			}
			return nil, perr(ErrMalformed, off, "unexpected item delimiter")
		case tagSeqDelim, tagItem:
			return nil, perr(ErrMalformed, off, "unexpected (FFFE,%04X) outside a sequence", t&0xFFFF)
		}
		e := &element{Tag: t, VR: vr, VL: vl, Off: off}
		switch {
		case depth == 0 && t>>16 == 0x7FE0 && vr != "SQ" && (t&0xFFFF == 0x0010 || t&0xFFFF == 0x0008 || t&0xFFFF == 0x0009):
			e.Pixel = true
			if d.pixel != nil {
				if err := d.pixel(d, e); err != nil {
					return nil, err
				}
			} else if err := d.copyPixel(io.Discard, e); err != nil {
				return nil, err
			}
		case vr == "SQ" || (vl == undefinedLength && t != tagPixelData):
			e.IsSeq = true
			if err := d.readSequence(e, depth); err != nil {
				return nil, err
			}
		case vl == undefinedLength:
			// Encapsulated pixel data nested in a sequence (e.g. icon image).
			var bb bytes.Buffer
			if err := d.copyFragments(&bb); err != nil {
				return nil, err
			}
			e.Value = bb.Bytes()
			e.Encap = true
		default:
			v, err := d.readValue(t, vl)
			if err != nil {
				return nil, err
			}
			e.Value = v
		}
		out = append(out, e)
		if depth == 0 {
			d.top = out
		}
	}
}

// readSequence reads the items of a sequence. A UN element of undefined
// length is an Implicit VR Little Endian sequence (PS3.5 6.2.2).
func (d *decoder) readSequence(e *element, depth int) error {
	if e.VR == "UN" && e.VL == undefinedLength {
		bo, imp := d.bo, d.implicit
		d.bo, d.implicit = binary.LittleEndian, true
		defer func() { d.bo, d.implicit = bo, imp }()
	}
	var end int64 = -1
	if e.VL != undefinedLength {
		if err := d.checkLen(e.Tag, e.VL); err != nil {
			return err
		}
		end = d.pos + int64(e.VL)
	}
	for {
		if end >= 0 {
			if d.pos == end {
				return nil
			}
			if d.pos > end {
				return perr(ErrMalformed, d.pos, "item overruns sequence (%04X,%04X)", e.Tag>>16, e.Tag&0xFFFF)
			}
		}
		off := d.pos
		t, _, vl, err := d.readHeader()
		if err == io.EOF {
			return perr(ErrTruncated, d.pos, "end of data inside sequence (%04X,%04X)", e.Tag>>16, e.Tag&0xFFFF)
		}
		if err != nil {
			return err
		}
		switch t {
		case tagSeqDelim:
			if end < 0 {
				return nil
			}
			return perr(ErrMalformed, off, "sequence delimiter inside a defined-length sequence")
		case tagItem:
		default:
			return perr(ErrMalformed, off, "expected an item in sequence (%04X,%04X), found (%04X,%04X)", e.Tag>>16, e.Tag&0xFFFF, t>>16, t&0xFFFF)
		}
		it := &item{}
		if vl == undefinedLength {
			it.Elems, err = d.readDataset(-1, true, depth+1)
		} else {
			if err := d.checkLen(t, vl); err != nil {
				return err
			}
			it.Elems, err = d.readDataset(d.pos+int64(vl), false, depth+1)
		}
		if err != nil {
			return err
		}
		e.Items = append(e.Items, it)
	}
}

// copyPixel streams a pixel data value to w: the raw value for a defined
// length, or the encoded fragments (items and the sequence delimiter
// included, exactly as read) for encapsulated data.
func (d *decoder) copyPixel(w io.Writer, e *element) error {
	if e.VL != undefinedLength {
		return d.copyN(w, e.Tag, e.VL)
	}
	return d.copyFragments(w)
}

// copyFragments copies item-encoded fragments up to and including the
// sequence delimiter, re-encoding the item headers in the stream's byte order.
func (d *decoder) copyFragments(w io.Writer) error {
	var hdr [8]byte
	for n := 0; ; n++ {
		t, _, vl, err := d.readHeader()
		if err == io.EOF {
			return perr(ErrTruncated, d.pos, "end of data inside encapsulated pixel data")
		}
		if err != nil {
			return err
		}
		d.bo.PutUint16(hdr[0:], uint16(t>>16))
		d.bo.PutUint16(hdr[2:], uint16(t))
		d.bo.PutUint32(hdr[4:], vl)
		switch t {
		case tagSeqDelim:
			_, err := w.Write(hdr[:])
			return err
		case tagItem:
			if vl == undefinedLength {
				return perr(ErrMalformed, d.pos, "undefined-length pixel data fragment")
			}
			if _, err := w.Write(hdr[:]); err != nil {
				return err
			}
			if err := d.copyN(w, t, vl); err != nil {
				return err
			}
		default:
			return perr(ErrMalformed, d.pos, "expected a pixel data fragment, found (%04X,%04X)", t>>16, t&0xFFFF)
		}
	}
}

// file is the decoded structure of a Part 10 file.
type file struct {
	Meta []*element
	TS   tsInfo
	Data []*element
}

// readPart10 reads the preamble, File Meta Information and dataset of a
// Part 10 stream of the given size (size < 0: unknown). pixel, if non-nil,
// consumes top-level pixel data; metaDone, if non-nil, is called after the
// meta group (before the dataset is read).
func readPart10(r io.Reader, size int64, pixel func(*decoder, *element) error, metaDone func(*file, *decoder) error) (*file, error) {
	d := &decoder{r: bufio.NewReaderSize(r, 64<<10), limit: size, bo: binary.LittleEndian}
	pre := make([]byte, 132)
	k, err := io.ReadFull(d.r, pre)
	d.pos += int64(k)
	if err != nil {
		return nil, perr(ErrNotDICOM, -1, "shorter than the 132-byte preamble and DICM prefix")
	}
	if string(pre[128:132]) != "DICM" {
		return nil, perr(ErrNotDICOM, 128, "no DICM prefix at offset 128")
	}
	f := &file{}
	// File Meta Information: Explicit VR Little Endian, group 0002.
	for {
		g, ok := d.peekGroup(binary.LittleEndian)
		if !ok || g != 0x0002 {
			break
		}
		t, vr, vl, err := d.readHeader()
		if err != nil {
			return nil, err
		}
		if vl == undefinedLength || vr == "SQ" {
			return nil, perr(ErrMalformed, d.pos, "sequence in File Meta Information")
		}
		v, err := d.readValue(t, vl)
		if err != nil {
			return nil, err
		}
		f.Meta = append(f.Meta, &element{Tag: t, VR: vr, VL: vl, Value: v})
	}
	tse := find(f.Meta, tagTransferSyntax)
	if len(f.Meta) == 0 || tse == nil {
		return nil, perr(ErrNotDICOM, d.pos, "no File Meta Information with a Transfer Syntax UID after DICM")
	}
	f.TS, err = lookupTS(tse.str())
	if err != nil {
		return nil, err
	}
	d.bo, d.implicit = f.TS.BO, f.TS.Implicit
	if f.TS.Deflate {
		fr := flate.NewReader(d.r)
		defer fr.Close()
		d.r = bufio.NewReaderSize(io.LimitReader(fr, maxInflated), 64<<10)
		d.pos, d.limit = 0, -1
	}
	if metaDone != nil {
		if err := metaDone(f, d); err != nil {
			return nil, err
		}
	}
	d.pixel = pixel
	f.Data, err = d.readDataset(-1, false, 0)
	if err != nil {
		var fe flate.CorruptInputError
		if errors.As(err, &fe) {
			return nil, perr(ErrMalformed, -1, "deflated dataset: %v", err)
		}
		return nil, err
	}
	return f, nil
}

// find returns the first element with tag t in a flat list.
func find(es []*element, t uint32) *element {
	for _, e := range es {
		if e.Tag == t {
			return e
		}
	}
	return nil
}
