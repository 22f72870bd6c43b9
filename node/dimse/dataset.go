package dimse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	lib "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// Identifiers (the data sets of C-FIND, C-MOVE and C-GET) are small and
// are held whole: they are checked by a bounded walker, then decoded with
// github.com/suyashkumar/dicom under recover. C-STORE data sets are never
// decoded here: they are streamed as bytes.

// ErrIdentifier is wrapped by every identifier decoding error.
var ErrIdentifier = errors.New("dimse: malformed identifier")

// identifierSyntax reports whether a transfer syntax can carry identifiers
// (we encode and decode them ourselves).
func identifierSyntax(ts string) bool {
	return ts == ImplicitVRLittleEndian || ts == ExplicitVRLittleEndian || ts == ExplicitVRBigEndian
}

func syntaxOf(ts string) (binary.ByteOrder, bool, error) {
	switch ts {
	case ImplicitVRLittleEndian:
		return binary.LittleEndian, true, nil
	case ExplicitVRLittleEndian:
		return binary.LittleEndian, false, nil
	case ExplicitVRBigEndian:
		return binary.BigEndian, false, nil
	}
	return nil, false, fmt.Errorf("dimse: transfer syntax %s cannot carry identifiers here", ts)
}

// Limits of the identifier walker.
const (
	maxIdentDepth    = 16
	maxIdentElements = 1 << 16
)

// checkDataset walks an encoded data set and checks that every length fits
// the bytes that exist, sequences and items are well nested, and nesting
// and element count stay bounded. It allocates nothing.
func checkDataset(b []byte, bo binary.ByteOrder, implicit bool) error {
	count := 0
	n, err := walkDataset(b, bo, implicit, 0, false, &count)
	if err != nil {
		return err
	}
	if n != len(b) {
		return fmt.Errorf("%w: trailing bytes at offset %d", ErrIdentifier, n)
	}
	return nil
}

// walkDataset walks elements from b until its end or, if inItem, an item
// delimiter; it returns the bytes consumed.
func walkDataset(b []byte, bo binary.ByteOrder, implicit bool, depth int, inItem bool, count *int) (int, error) {
	bad := func(off int, f string, a ...any) (int, error) {
		return 0, fmt.Errorf("%w: at offset %d: %s", ErrIdentifier, off, fmt.Sprintf(f, a...))
	}
	if depth > maxIdentDepth {
		return bad(0, "sequences nested deeper than %d", maxIdentDepth)
	}
	off := 0
	for off < len(b) {
		if *count++; *count > maxIdentElements {
			return bad(off, "more than %d elements", maxIdentElements)
		}
		if len(b)-off < 8 {
			return bad(off, "element header truncated")
		}
		g, e := bo.Uint16(b[off:]), bo.Uint16(b[off+2:])
		if g == 0xFFFE {
			// item delimiters are always 8 bytes (tag + 4-byte length)
			switch e {
			case 0xE00D:
				if !inItem {
					return bad(off, "item delimiter outside an item")
				}
				return off + 8, nil
			default:
				return bad(off, "item tag (FFFE,%04X) outside a sequence", e)
			}
		}
		var vr string
		var n uint32
		hdr := 8
		if implicit {
			n = bo.Uint32(b[off+4:])
		} else {
			vr = string(b[off+4 : off+6])
			if !isVR(vr) {
				return bad(off, "element (%04X,%04X) has no valid VR", g, e)
			}
			if longVR(vr) {
				if len(b)-off < 12 {
					return bad(off, "element header truncated")
				}
				n, hdr = bo.Uint32(b[off+8:]), 12
			} else {
				n = uint32(bo.Uint16(b[off+6:]))
			}
		}
		off += hdr
		if n == 0xFFFFFFFF {
			if !implicit && vr != "SQ" && vr != "UN" {
				return bad(off, "undefined length on (%04X,%04X) VR %s", g, e, vr)
			}
			m, err := walkSequence(b[off:], bo, implicit, depth+1, -1, count)
			if err != nil {
				return 0, err
			}
			off += m
			continue
		}
		if uint64(n) > uint64(len(b)-off) {
			return bad(off, "element (%04X,%04X) length %d beyond the %d bytes left", g, e, n, len(b)-off)
		}
		if vr == "SQ" || implicit && isSequenceTag(g, e) {
			if _, err := walkSequence(b[off:off+int(n)], bo, implicit, depth+1, int(n), count); err != nil {
				return 0, err
			}
		}
		off += int(n)
	}
	if inItem {
		return bad(off, "item without a delimiter")
	}
	return off, nil
}

// walkSequence walks the items of a sequence of length n (-1: undefined,
// ended by a sequence delimiter) and returns the bytes consumed.
func walkSequence(b []byte, bo binary.ByteOrder, implicit bool, depth, n int, count *int) (int, error) {
	bad := func(off int, f string, a ...any) (int, error) {
		return 0, fmt.Errorf("%w: in a sequence at offset %d: %s", ErrIdentifier, off, fmt.Sprintf(f, a...))
	}
	if depth > maxIdentDepth {
		return bad(0, "sequences nested deeper than %d", maxIdentDepth)
	}
	off := 0
	for {
		if n >= 0 && off == n {
			return off, nil
		}
		if *count++; *count > maxIdentElements {
			return bad(off, "more than %d elements", maxIdentElements)
		}
		if len(b)-off < 8 {
			return bad(off, "item header truncated")
		}
		g, e, l := bo.Uint16(b[off:]), bo.Uint16(b[off+2:]), bo.Uint32(b[off+4:])
		if g != 0xFFFE {
			return bad(off, "(%04X,%04X) where an item was expected", g, e)
		}
		off += 8
		switch e {
		case 0xE0DD:
			if n >= 0 {
				return bad(off, "sequence delimiter in a sequence of defined length")
			}
			return off, nil
		case 0xE000:
		default:
			return bad(off, "(FFFE,%04X) where an item was expected", e)
		}
		if l == 0xFFFFFFFF {
			m, err := walkDataset(b[off:], bo, implicit, depth, true, count)
			if err != nil {
				return 0, err
			}
			off += m
			continue
		}
		if uint64(l) > uint64(len(b)-off) {
			return bad(off, "item length %d beyond the %d bytes left", l, len(b)-off)
		}
		if _, err := walkDataset(b[off:off+int(l)], bo, implicit, depth, false, count); err != nil {
			return 0, err
		}
		off += int(l)
	}
}

// isSequenceTag reports whether the data dictionary says (g,e) is a
// sequence: in Implicit VR the walker must know to descend into it.
func isSequenceTag(g, e uint16) bool {
	info, err := tag.Find(tag.Tag{Group: g, Element: e})
	return err == nil && len(info.VRs) > 0 && info.VRs[0] == "SQ"
}

// DecodeIdentifier decodes an identifier encoded in transfer syntax ts
// (Implicit or Explicit VR Little Endian, or Explicit VR Big Endian).
func DecodeIdentifier(b []byte, ts string) (ds *lib.Dataset, err error) {
	bo, implicit, err := syntaxOf(ts)
	if err != nil {
		return nil, err
	}
	if len(b) > maxIdentifierLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrIdentifier, len(b))
	}
	if err := checkDataset(b, bo, implicit); err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return &lib.Dataset{}, nil
	}
	defer func() {
		if p := recover(); p != nil {
			ds, err = nil, fmt.Errorf("%w: decoder failed: %v", ErrIdentifier, p)
		}
	}()
	// The library reads a data set only after a File Meta Information
	// group that names its transfer syntax: give it one.
	meta, err := FileMeta{MediaStorageSOPClassUID: "1.2", MediaStorageSOPInstanceUID: "1.2", TransferSyntaxUID: ts}.Encode()
	if err != nil {
		return nil, err
	}
	all := append(meta, b...)
	parsed, err := lib.Parse(bytes.NewReader(all), int64(len(all)), nil,
		lib.AllowUnknownSpecificCharacterSet(), lib.SkipPixelData())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIdentifier, err)
	}
	out := &lib.Dataset{}
	for _, e := range parsed.Elements {
		if e.Tag.Group != 0x0002 {
			out.Elements = append(out.Elements, e)
		}
	}
	return out, nil
}

// EncodeIdentifier encodes ds (File Meta elements excluded) in transfer
// syntax ts.
func EncodeIdentifier(ds *lib.Dataset, ts string) (b []byte, err error) {
	bo, implicit, err := syntaxOf(ts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			b, err = nil, fmt.Errorf("dimse: encoding identifier: %v", p)
		}
	}()
	var buf bytes.Buffer
	w, err := lib.NewWriter(&buf, lib.SkipVRVerification(), lib.SkipValueTypeVerification())
	if err != nil {
		return nil, err
	}
	w.SetTransferSyntax(bo, implicit)
	for _, e := range ds.Elements {
		if e.Tag.Group == 0x0002 {
			continue
		}
		if err := w.WriteElement(e); err != nil {
			return nil, fmt.Errorf("dimse: encoding identifier element %v: %w", e.Tag, err)
		}
	}
	if buf.Len() > maxIdentifierLen {
		return nil, fmt.Errorf("dimse: identifier of %d bytes exceeds %d", buf.Len(), maxIdentifierLen)
	}
	return buf.Bytes(), nil
}

// stringValue returns the first value of a string element of ds, trimmed,
// or "".
func stringValue(ds *lib.Dataset, t tag.Tag) string {
	if ds == nil {
		return ""
	}
	e, err := ds.FindElementByTag(t)
	if err != nil || e.Value == nil {
		return ""
	}
	v, ok := e.Value.GetValue().([]string)
	if !ok || len(v) == 0 {
		return ""
	}
	return strings.Trim(v[0], " \x00")
}

// withLevel returns ds with Query/Retrieve Level set to level if absent
// (responses carry it, PS3.4 C.4.1.1.3.2). ds is not modified.
func withLevel(ds *lib.Dataset, level string) *lib.Dataset {
	if level == "" || ds == nil {
		return ds
	}
	if _, err := ds.FindElementByTag(tag.QueryRetrieveLevel); err == nil {
		return ds
	}
	e, err := lib.NewElement(tag.QueryRetrieveLevel, []string{level})
	if err != nil {
		return ds
	}
	out := &lib.Dataset{Elements: make([]*lib.Element, 0, len(ds.Elements)+1)}
	inserted := false
	for _, x := range ds.Elements {
		if !inserted && x.Tag.Compare(tag.QueryRetrieveLevel) > 0 {
			out.Elements = append(out.Elements, e)
			inserted = true
		}
		out.Elements = append(out.Elements, x)
	}
	if !inserted {
		out.Elements = append(out.Elements, e)
	}
	return out
}
