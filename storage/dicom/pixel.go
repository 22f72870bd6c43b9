package dicom

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Frames: an instance's pixel data cut into frames, streamed from its Part
// 10 file (WADO-RS /frames, /rendered, bulk data). Native pixel data is cut
// at Rows x Columns x Samples x Bits Allocated; encapsulated pixel data is
// split into frames by its Basic Offset Table, else (no table, several
// frames) by the start of each codestream (JPEG SOI, JPEG 2000 SOC), one
// fragment per frame for RLE. One frame at a time is held.

// Uncompressed transfer syntaxes (native pixel data).
const (
	ImplicitVRLittleEndian = tsImplicitLE
	ExplicitVRLittleEndian = tsExplicitLE
	ExplicitVRBigEndian    = tsExplicitBE
	DeflatedExplicitVRLE   = tsDeflatedLE
	JPEGBaseline           = "1.2.840.10008.1.2.4.50"
	RLELossless            = "1.2.840.10008.1.2.5"
)

// IsUncompressed reports whether ts keeps pixel data native: the
// transcoder converts among these.
func IsUncompressed(ts string) bool {
	switch ts {
	case tsImplicitLE, tsExplicitLE, tsExplicitBE, tsDeflatedLE:
		return true
	}
	return false
}

// FrameMediaType is the media type of one frame of pixel data in transfer
// syntax ts (PS3.18 Table 8.7.3-2): application/octet-stream for native
// pixel data, the codec's type for compressed data.
func FrameMediaType(ts string) string {
	switch {
	case IsUncompressed(ts):
		return "application/octet-stream"
	case ts == RLELossless:
		return "image/x-dicom-rle"
	case ts == "1.2.840.10008.1.2.4.80" || ts == "1.2.840.10008.1.2.4.81":
		return "image/jls"
	case strings.HasPrefix(ts, "1.2.840.10008.1.2.4.9"): // JPEG 2000 (.90-.93), HTJ2K (.201-.203 below)
		return "image/jp2"
	case strings.HasPrefix(ts, "1.2.840.10008.1.2.4.20"):
		return "image/jphc"
	case strings.HasPrefix(ts, "1.2.840.10008.1.2.4.10"): // MPEG-2, MPEG-4
		return "video/mpeg"
	case strings.HasPrefix(ts, "1.2.840.10008.1.2.4."):
		return "image/jpeg" // baseline, extended, lossless
	}
	return "application/octet-stream"
}

// ErrNoPixelData is returned for an instance without pixel data.
var ErrNoPixelData = errors.New("dicom: the instance has no pixel data")

// PixelInfo describes an image: its Image Pixel module and how its pixel
// data is encoded.
type PixelInfo struct {
	TransferSyntax      string
	Rows, Columns       int
	SamplesPerPixel     int
	BitsAllocated       int
	BitsStored          int
	PixelRepresentation int // 1: signed
	PlanarConfiguration int
	Photometric         string
	Frames              int
	Encapsulated        bool
	BigEndian           bool
	// Float is set for Float / Double Float Pixel Data (7FE0,0008/0009).
	Float bool
	// Modality LUT and the first VOI window (HasWindow when present).
	RescaleSlope, RescaleIntercept float64
	WindowCenter, WindowWidth      float64
	HasWindow                      bool
}

// FrameBytes is the size of one native frame (0 when it is not a whole
// number of bytes).
func (p *PixelInfo) FrameBytes() int64 {
	bits := int64(p.Rows) * int64(p.Columns) * int64(max(p.SamplesPerPixel, 1)) * int64(p.BitsAllocated)
	if bits%8 != 0 {
		return 0
	}
	return bits / 8
}

// maxFrameBytes bounds one frame held in memory.
const maxFrameBytes = 1 << 30

var errFramesDone = errors.New("frames done")

// ReadFrames reads the Part 10 stream r (size bytes, -1 if unknown) and
// calls emit with each frame whose 1-based number is in want (ascending,
// without repeats; nil for every frame): native frames little endian
// (swapped from a big endian syntax), encapsulated frames as their
// codestream (fragments concatenated). It stops reading after the last wanted frame. A frame
// number beyond the instance's frames is an error wrapping ErrFrameRange.
func ReadFrames(r io.Reader, size int64, want []int, emit func(n int, data []byte) error) (*PixelInfo, error) {
	for i := 1; i < len(want); i++ {
		if want[i] <= want[i-1] {
			return nil, fmt.Errorf("dicom: frames must be ascending and distinct, got %v", want)
		}
	}
	var info *PixelInfo
	var meta *file
	pixel := func(d *decoder, e *element) error {
		if info != nil || e.Tag != tagPixelData && e.Tag != 0x7FE00008 && e.Tag != 0x7FE00009 {
			return d.copyPixel(io.Discard, e) // a second pixel element
		}
		info = pixelInfo(meta, d.top, e)
		if len(want) > 0 && want[len(want)-1] > info.Frames {
			return fmt.Errorf("%w: frame %d of %d", ErrFrameRange, want[len(want)-1], info.Frames)
		}
		var err error
		if e.VL == undefinedLength {
			err = encapsulatedFrames(d, info, want, emit)
		} else {
			err = nativeFrames(d, e, info, want, emit)
		}
		if err == nil {
			return errFramesDone
		}
		return err
	}
	_, err := readPart10(r, size, pixel, func(f *file, _ *decoder) error { meta = f; return nil })
	switch {
	case errors.Is(err, errFramesDone):
		return info, nil
	case err != nil:
		return info, err
	case info == nil:
		return nil, ErrNoPixelData
	}
	return info, nil
}

// ErrFrameRange is wrapped by the error for a frame the instance does not
// have.
var ErrFrameRange = errors.New("dicom: no such frame")

func nativeFrames(d *decoder, e *element, info *PixelInfo, want []int, emit func(int, []byte) error) error {
	fb := info.FrameBytes()
	if fb <= 0 || fb > maxFrameBytes {
		return perr(ErrUnsupported, d.pos, "frames of %d x %d x %d x %d bits cannot be cut into bytes", info.Rows, info.Columns, info.SamplesPerPixel, info.BitsAllocated)
	}
	if int64(info.Frames)*fb > int64(e.VL) {
		return perr(ErrMalformed, d.pos, "pixel data holds %d bytes, %d frames of %d need more", e.VL, info.Frames, fb)
	}
	if err := d.checkLen(e.Tag, e.VL); err != nil {
		return err
	}
	left := int64(e.VL)
	wi := 0
	for n := 1; n <= info.Frames; n++ {
		if len(want) > 0 && wi == len(want) {
			return nil
		}
		if len(want) > 0 && want[wi] != n {
			if _, err := io.CopyN(io.Discard, d.r, fb); err != nil {
				return perr(ErrTruncated, d.pos, "end of data inside pixel data")
			}
			d.pos += fb
			left -= fb
			continue
		}
		buf := make([]byte, fb)
		k, err := io.ReadFull(d.r, buf)
		d.pos += int64(k)
		left -= int64(k)
		if err != nil {
			return perr(ErrTruncated, d.pos, "end of data inside pixel data")
		}
		if info.BigEndian && (info.BitsAllocated == 16 || info.BitsAllocated == 32 || info.BitsAllocated == 64) {
			swap(buf, info.BitsAllocated/8)
		}
		if err := emit(n, buf); err != nil {
			return err
		}
		wi++
	}
	return nil
}

// encapsulatedFrames reads the fragments of encapsulated pixel data
// (the Basic Offset Table first) and emits the wanted frames.
func encapsulatedFrames(d *decoder, info *PixelInfo, want []int, emit func(int, []byte) error) error {
	next := func() (uint32, []byte, error) {
		t, _, vl, err := d.readHeader()
		if err != nil {
			if err == io.EOF {
				return 0, nil, perr(ErrTruncated, d.pos, "end of data inside encapsulated pixel data")
			}
			return 0, nil, err
		}
		switch {
		case t == tagSeqDelim:
			return t, nil, nil
		case t != tagItem:
			return 0, nil, perr(ErrMalformed, d.pos, "expected a pixel data fragment, found (%04X,%04X)", t>>16, t&0xFFFF)
		case vl == undefinedLength:
			return 0, nil, perr(ErrMalformed, d.pos, "undefined-length pixel data fragment")
		case vl > maxFrameBytes:
			return 0, nil, perr(ErrTooLarge, d.pos, "fragment of %d bytes", vl)
		}
		if err := d.checkLen(t, vl); err != nil {
			return 0, nil, err
		}
		b := make([]byte, vl)
		k, err := io.ReadFull(d.r, b)
		d.pos += int64(k)
		if err != nil {
			return 0, nil, perr(ErrTruncated, d.pos, "end of data inside a pixel data fragment")
		}
		return t, b, nil
	}
	t, bot, err := next()
	if err != nil {
		return err
	}
	if t == tagSeqDelim {
		return perr(ErrMalformed, d.pos, "encapsulated pixel data without a Basic Offset Table item")
	}
	var offsets []uint32
	if len(bot) >= 4 && len(bot)%4 == 0 {
		for i := 0; i < len(bot); i += 4 {
			offsets = append(offsets, binary.LittleEndian.Uint32(bot[i:]))
		}
	}
	if len(offsets) > 0 && len(offsets) != info.Frames {
		offsets = nil // a table that does not describe the frames: ignore it
	}
	var frame bytes.Buffer
	n := 0         // current frame number (0: none started)
	var pos uint32 // offset of the next fragment item from the first one
	wi := 0        // next wanted index
	flush := func() error {
		if n == 0 {
			return nil
		}
		defer frame.Reset()
		if len(want) == 0 || wi < len(want) && want[wi] == n {
			wi++
			return emit(n, append([]byte(nil), frame.Bytes()...))
		}
		return nil
	}
	for {
		t, frag, err := next()
		if err != nil {
			return err
		}
		if t == tagSeqDelim {
			break
		}
		var starts bool
		switch {
		case n == 0:
			starts = true
		case info.Frames <= 1:
			starts = false // every fragment is part of the one frame
		case offsets != nil:
			starts = n < len(offsets) && pos >= offsets[n]
		case info.TransferSyntax == RLELossless:
			starts = true
		default:
			starts = bytes.HasPrefix(frag, []byte{0xFF, 0xD8}) || bytes.HasPrefix(frag, []byte{0xFF, 0x4F, 0xFF, 0x51})
		}
		if starts {
			if err := flush(); err != nil {
				return err
			}
			n++
			if len(want) > 0 && wi == len(want) {
				return nil
			}
		}
		if int64(frame.Len())+int64(len(frag)) > maxFrameBytes {
			return perr(ErrTooLarge, d.pos, "frame %d larger than %d bytes", n, maxFrameBytes)
		}
		if len(want) == 0 || wi < len(want) && want[wi] == n {
			frame.Write(frag)
		}
		pos += 8 + uint32(len(frag))
	}
	if err := flush(); err != nil {
		return err
	}
	if len(want) > 0 && wi < len(want) {
		return fmt.Errorf("%w: frame %d (the pixel data holds %d)", ErrFrameRange, want[wi], n)
	}
	return nil
}

// pixelInfo reads the Image Pixel module from the top-level elements read
// before the pixel data element e.
func pixelInfo(meta *file, top []*element, e *element) *PixelInfo {
	bo := meta.TS.BO
	us := func(t uint32, dflt int) int {
		x := find(top, t)
		if x == nil || len(x.Value) < 2 {
			return dflt
		}
		return int(bo.Uint16(x.Value))
	}
	str := func(t uint32) string { return strings.TrimSpace(find(top, t).str()) }
	ds := func(t uint32, dflt float64) (float64, bool) {
		s := str(t)
		if i := strings.IndexByte(s, '\\'); i >= 0 {
			s = s[:i]
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return dflt, false
		}
		return f, true
	}
	p := &PixelInfo{TransferSyntax: meta.TS.UID, Rows: us(0x00280010, 0), Columns: us(0x00280011, 0),
		SamplesPerPixel: us(0x00280002, 1), BitsAllocated: us(0x00280100, 0), BitsStored: us(0x00280101, 0),
		PixelRepresentation: us(0x00280103, 0), PlanarConfiguration: us(0x00280006, 0),
		Photometric: strings.ToUpper(str(0x00280004)), Frames: max(atoi(str(0x00280008)), 1),
		Encapsulated: e.VL == undefinedLength, BigEndian: bo == binary.BigEndian, Float: e.Tag != tagPixelData}
	if p.BitsStored == 0 {
		p.BitsStored = p.BitsAllocated
	}
	p.RescaleSlope, _ = ds(0x00281053, 1)
	if p.RescaleSlope == 0 {
		p.RescaleSlope = 1
	}
	p.RescaleIntercept, _ = ds(0x00281052, 0)
	c, okc := ds(0x00281050, 0)
	w, okw := ds(0x00281051, 0)
	if okc && okw && w >= 1 {
		p.WindowCenter, p.WindowWidth, p.HasWindow = c, w, true
	}
	return p
}

// ReadBulk writes the value of the top-level element tag of the Part 10
// stream r to w, little endian (as DICOMweb bulk data is): native pixel
// data streamed (byte-swapped from a big endian syntax), other binary
// values from the parsed header. It returns the element's VR; an element
// the instance does not have is ErrNoElement, encapsulated pixel data
// ErrUnsupported (its frames are read with ReadFrames).
func ReadBulk(r io.Reader, size int64, tag uint32, w io.Writer) (string, error) {
	var vr string
	found := false
	var meta *file
	pixel := func(d *decoder, e *element) error {
		if e.Tag != tag || found {
			return d.copyPixel(io.Discard, e)
		}
		found = true
		if e.VL == undefinedLength {
			return perr(ErrUnsupported, d.pos, "encapsulated pixel data: read its frames")
		}
		if err := d.checkLen(e.Tag, e.VL); err != nil {
			return err
		}
		vr = e.VR
		if vr == "" {
			vr = "OW"
		}
		n := swapSize(vr)
		if meta.TS.BO != binary.BigEndian || n == 0 {
			return d.copyN(w, e.Tag, e.VL)
		}
		buf := make([]byte, 64<<10)
		for left := int64(e.VL); left > 0; {
			k := min(int64(len(buf)), left)
			m, err := io.ReadFull(d.r, buf[:k])
			d.pos += int64(m)
			if err != nil {
				return perr(ErrTruncated, d.pos, "end of data inside pixel data")
			}
			swap(buf[:k], n)
			if _, err := w.Write(buf[:k]); err != nil {
				return err
			}
			left -= k
		}
		return errFramesDone
	}
	f, err := readPart10(r, size, pixel, func(f *file, _ *decoder) error { meta = f; return nil })
	if errors.Is(err, errFramesDone) {
		return vr, nil
	}
	if err != nil {
		return "", err
	}
	if found {
		return vr, nil
	}
	e := find(f.Data, tag)
	if e == nil || e.IsSeq {
		return "", ErrNoElement
	}
	_, err = w.Write(littleEndian(e.VR, e.Value, f.TS.BO))
	return e.VR, err
}

// ErrNoElement is returned by ReadBulk for an element the instance does
// not have.
var ErrNoElement = errors.New("dicom: no such element")
