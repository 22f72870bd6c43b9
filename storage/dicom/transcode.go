package dicom

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// Transcoding among the uncompressed transfer syntaxes (Implicit VR
// Little Endian, Explicit VR Little and Big Endian, Deflated Explicit VR
// Little Endian), for DICOMweb clients that ask for another one than an
// instance is stored in. Pixel data is streamed; nothing is decompressed.

// Implementation class UID and version of files medmesh re-encodes.
const (
	transcodeImplClassUID = "2.25.285311918733862763146804077776426944042"
	transcodeImplVersion  = "MEDMESH_1"
)

// CanTranscode reports whether Transcode converts from one transfer
// syntax to another (both uncompressed; a syntax to itself always).
func CanTranscode(from, to string) bool {
	return from == to || IsUncompressed(from) && IsUncompressed(to)
}

// Transcode re-encodes the Part 10 stream r (size bytes, -1 if unknown)
// into transfer syntax ts and writes it to w, streaming. Both syntaxes
// must be uncompressed. Elements keep their tags and values; values are
// byte-swapped by VR when the byte order changes, VRs come from the data
// dictionary when the source is Implicit VR, sequences and items are
// written with undefined length, and the data set's group lengths
// (retired) are dropped. The File Meta Information is kept, with the new
// Transfer Syntax UID and medmesh as the implementation that wrote it.
func Transcode(r io.Reader, size int64, w io.Writer, ts string) error {
	out, err := lookupTS(ts)
	if err != nil || !IsUncompressed(ts) {
		return perr(ErrUnsupported, -1, "cannot transcode into transfer syntax %s", ts)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	t := &transcoder{out: out}
	var meta *file
	written := 0
	started := false
	start := func() error {
		if !IsUncompressed(meta.TS.UID) {
			return perr(ErrUnsupported, -1, "cannot transcode from transfer syntax %s (compressed)", meta.TS.UID)
		}
		started = true
		t.in = meta.TS
		if err := writeMetaTS(bw, meta, ts); err != nil {
			return err
		}
		t.enc = &encoder{w: bw, bo: out.BO, implicit: out.Implicit}
		if out.Deflate {
			fw, err := flate.NewWriter(bw, flate.DefaultCompression)
			if err != nil {
				return err
			}
			t.enc.w, t.enc.closer = fw, fw
		}
		return nil
	}
	flush := func(es []*element) error {
		if !started {
			if err := start(); err != nil {
				return err
			}
		}
		for _, e := range es {
			if err := t.element(e, es); err != nil {
				return err
			}
		}
		return nil
	}
	pixel := func(d *decoder, e *element) error {
		if err := flush(d.top[written:]); err != nil {
			return err
		}
		written = len(d.top) + 1
		t.top = d.top
		return t.pixel(d, e)
	}
	f, err := readPart10(r, size, pixel, func(f *file, _ *decoder) error { meta = f; return nil })
	if err != nil {
		return err
	}
	var rest []*element
	if written < len(f.Data) {
		rest = f.Data[written:]
	}
	if err := flush(rest); err != nil {
		return err
	}
	if t.enc.closer != nil {
		if err := t.enc.closer.Close(); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// writeMetaTS writes the preamble and the File Meta Information with the
// transfer syntax replaced.
func writeMetaTS(w io.Writer, meta *file, ts string) error {
	var out []*element
	for _, e := range meta.Meta {
		switch e.Tag {
		case tagMetaGroupLength, tagTransferSyntax, 0x00020012, 0x00020013:
			continue
		}
		out = append(out, e)
	}
	out = append(out,
		&element{Tag: tagTransferSyntax, VR: "UI", Value: padValue("UI", ts)},
		&element{Tag: 0x00020012, VR: "UI", Value: padValue("UI", transcodeImplClassUID)},
		&element{Tag: 0x00020013, VR: "SH", Value: padValue("SH", transcodeImplVersion)})
	sortElems(out)
	var body bytes.Buffer
	me := &encoder{w: &body, bo: binary.LittleEndian}
	for _, e := range out {
		if err := me.element(e); err != nil {
			return err
		}
	}
	var pre [132]byte
	copy(pre[128:], "DICM")
	if _, err := w.Write(pre[:]); err != nil {
		return err
	}
	gl := make([]byte, 4)
	binary.LittleEndian.PutUint32(gl, uint32(body.Len()))
	if err := me.withWriter(w).element(&element{Tag: tagMetaGroupLength, VR: "UL", Value: gl}); err != nil {
		return err
	}
	_, err := w.Write(body.Bytes())
	return err
}

type transcoder struct {
	in, out tsInfo
	enc     *encoder
	top     []*element
}

// swapSize is the size of the units a VR's value is made of, for byte
// swapping (0: bytes, never swapped).
func swapSize(vr string) int {
	switch vr {
	case "US", "SS", "OW", "AT":
		return 2
	case "UL", "SL", "FL", "OF", "OL":
		return 4
	case "FD", "OD", "SV", "UV", "OV":
		return 8
	}
	return 0
}

func swap(b []byte, n int) {
	for i := 0; i+n <= len(b); i += n {
		for j, k := i, i+n-1; j < k; j, k = j+1, k-1 {
			b[j], b[k] = b[k], b[j]
		}
	}
}

// vrOf is the VR an element is written with: its own, or for an Implicit
// VR source the dictionary's (ambiguous ones resolved from the data set).
func (t *transcoder) vrOf(e *element, siblings []*element) string {
	if !t.in.Implicit && e.VR != "" {
		return e.VR
	}
	g, el := uint16(e.Tag>>16), uint16(e.Tag)
	if g%2 == 1 {
		return dictVR(e.Tag)
	}
	if g&0xFF00 == 0x6000 || g&0xFF00 == 0x5000 {
		g &= 0xFF00
	}
	info, err := tag.Find(tag.Tag{Group: g, Element: el})
	if err != nil || len(info.VRs) == 0 {
		return "UN"
	}
	vr := info.VRs[0]
	switch {
	case e.Tag == tagPixelData || vr == "OB or OW":
		if ba := find(siblings, 0x00280100); ba != nil && len(ba.Value) >= 2 && t.in.BO.Uint16(ba.Value) <= 8 {
			return "OB"
		}
		return "OW"
	case vr == "US or SS" || vr == "US or SS or OW":
		if pr := find(siblings, 0x00280103); pr != nil && len(pr.Value) >= 2 && t.in.BO.Uint16(pr.Value) == 1 {
			return "SS"
		}
		return "US"
	case strings.Contains(vr, " or "):
		return strings.Fields(vr)[0]
	}
	return vr
}

func (t *transcoder) element(e *element, siblings []*element) error {
	if e.Tag&0xFFFF == 0 && e.Tag>>16 != 0x0002 {
		return nil // group length: retired, and wrong once lengths change
	}
	vr := t.vrOf(e, siblings)
	if e.IsSeq {
		if err := t.enc.header(e.Tag, "SQ", undefinedLength); err != nil {
			return err
		}
		for _, it := range e.Items {
			if err := t.enc.header(tagItem, "", undefinedLength); err != nil {
				return err
			}
			for _, sub := range it.Elems {
				if err := t.element(sub, it.Elems); err != nil {
					return err
				}
			}
			if err := t.enc.header(tagItemDelim, "", 0); err != nil {
				return err
			}
		}
		return t.enc.header(tagSeqDelim, "", 0)
	}
	if e.Encap {
		return perr(ErrUnsupported, e.Off, "encapsulated data in (%04X,%04X) cannot be transcoded", e.Tag>>16, e.Tag&0xFFFF)
	}
	v := e.Value
	if n := swapSize(vr); n > 0 && t.in.BO != t.out.BO && len(v)%n == 0 {
		v = append([]byte(nil), v...)
		swap(v, n)
	}
	if len(v)%2 == 1 {
		v = append(append([]byte(nil), v...), padByte(vr))
	}
	if !t.out.Implicit && !isLongVR(vr) && len(v) > 0xFFFF {
		vr = "UN" // too long for its VR's 16-bit length
	}
	if err := t.enc.header(e.Tag, vr, uint32(len(v))); err != nil {
		return err
	}
	_, err := t.enc.w.Write(v)
	return err
}

// pixel streams a native pixel data value, byte-swapped if the byte
// order changes.
func (t *transcoder) pixel(d *decoder, e *element) error {
	if e.VL == undefinedLength {
		return perr(ErrUnsupported, d.pos, "encapsulated pixel data cannot be transcoded")
	}
	vr := t.vrOf(e, t.top)
	if err := d.checkLen(e.Tag, e.VL); err != nil {
		return err
	}
	if err := t.enc.header(e.Tag, vr, e.VL); err != nil {
		return err
	}
	n := swapSize(vr)
	if t.in.BO == t.out.BO || n == 0 || e.VL%uint32(n) != 0 {
		return d.copyN(t.enc.w, e.Tag, e.VL)
	}
	buf := make([]byte, 64<<10) // a multiple of every unit size
	left := int64(e.VL)
	for left > 0 {
		k := min(int64(len(buf)), left)
		m, err := io.ReadFull(d.r, buf[:k])
		d.pos += int64(m)
		if err != nil {
			return perr(ErrTruncated, d.pos, "end of data inside pixel data")
		}
		swap(buf[:k], n)
		if _, err := t.enc.w.Write(buf[:k]); err != nil {
			return err
		}
		left -= k
	}
	return nil
}

// TransferSyntaxName is a short name of a transfer syntax for messages.
func TransferSyntaxName(ts string) string {
	switch ts {
	case tsImplicitLE:
		return "Implicit VR Little Endian"
	case tsExplicitLE:
		return "Explicit VR Little Endian"
	case tsExplicitBE:
		return "Explicit VR Big Endian"
	case tsDeflatedLE:
		return "Deflated Explicit VR Little Endian"
	}
	return fmt.Sprintf("transfer syntax %s", ts)
}
