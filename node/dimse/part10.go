package dimse

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ImplementationClassUID identifies medmesh's DICOM implementation (a
// UUID-derived UID, PS3.5 B.2) in association negotiation and in the File
// Meta Information we write.
const ImplementationClassUID = "2.25.285311918733862763146804077776426944042"

// ImplementationVersionName is sent beside ImplementationClassUID.
const ImplementationVersionName = "MEDMESH_1"

// FileMeta is the File Meta Information of a DICOM Part 10 file (PS3.10
// 7.1) that matters here.
type FileMeta struct {
	MediaStorageSOPClassUID    string
	MediaStorageSOPInstanceUID string
	TransferSyntaxUID          string
	ImplementationClassUID     string
	ImplementationVersionName  string
	SourceAETitle              string
	// Length is the number of bytes the preamble, prefix and meta group
	// took in the file (set by ReadFileMeta).
	Length int64
}

// maxFileMeta caps the File Meta Information group we read.
const maxFileMeta = 64 << 10

// ErrNotPart10 is returned for a stream that is not a DICOM Part 10 file.
var ErrNotPart10 = errors.New("dimse: not a DICOM Part 10 file")

// ReadFileMeta reads the 128-byte preamble, the "DICM" prefix and the File
// Meta Information group from r, and leaves r at the first byte of the
// data set. It reads at most 64 KiB of meta information.
func ReadFileMeta(r *bufio.Reader) (*FileMeta, error) {
	var pre [132]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, fmt.Errorf("%w: %d-byte preamble and DICM prefix: %v", ErrNotPart10, len(pre), err)
	}
	if string(pre[128:]) != "DICM" {
		return nil, fmt.Errorf("%w: no \"DICM\" prefix at offset 128", ErrNotPart10)
	}
	m := &FileMeta{Length: 132}
	// The group ends where group 0002 ends (the group length is not
	// trusted: files with a wrong one exist, and readers like dcmtk cope),
	// except before a deflated data set, whose first bytes could look like
	// anything.
	groupEnd := int64(-1)
	for {
		if groupEnd > 0 && m.Length >= groupEnd && m.TransferSyntaxUID == tsDeflatedLE {
			break
		}
		h, err := r.Peek(8)
		if len(h) >= 2 && binary.LittleEndian.Uint16(h) != 0x0002 || len(h) == 0 && errors.Is(err, io.EOF) {
			break // the data set starts (or there is none)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: File Meta Information truncated: %v", ErrNotPart10, err)
		}
		el := binary.LittleEndian.Uint16(h[2:])
		vr := string(h[4:6])
		var hdr int
		var n uint32
		switch {
		case !isVR(vr): // implicit VR meta group (old, non-conformant files)
			hdr, n = 8, binary.LittleEndian.Uint32(h[4:])
		case longVR(vr):
			if h, err = r.Peek(12); err != nil {
				return nil, fmt.Errorf("%w: File Meta Information truncated: %v", ErrNotPart10, err)
			}
			hdr, n = 12, binary.LittleEndian.Uint32(h[8:])
		default:
			hdr, n = 8, uint32(binary.LittleEndian.Uint16(h[6:]))
		}
		if m.Length+int64(hdr)+int64(n) > maxFileMeta {
			return nil, fmt.Errorf("%w: File Meta Information longer than %d bytes", ErrNotPart10, maxFileMeta)
		}
		if _, err := r.Discard(hdr); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotPart10, err)
		}
		v := make([]byte, n)
		if _, err := io.ReadFull(r, v); err != nil {
			return nil, fmt.Errorf("%w: File Meta Information element (0002,%04X) truncated", ErrNotPart10, el)
		}
		m.Length += int64(hdr) + int64(n)
		switch el {
		case 0x0000:
			if n == 4 {
				groupEnd = m.Length + int64(binary.LittleEndian.Uint32(v))
			}
		case 0x0002:
			m.MediaStorageSOPClassUID = trimUID(v)
		case 0x0003:
			m.MediaStorageSOPInstanceUID = trimUID(v)
		case 0x0010:
			m.TransferSyntaxUID = trimUID(v)
		case 0x0012:
			m.ImplementationClassUID = trimUID(v)
		case 0x0013:
			m.ImplementationVersionName = strings.TrimSpace(string(v))
		case 0x0016:
			m.SourceAETitle = strings.TrimSpace(string(v))
		}
	}
	if m.TransferSyntaxUID == "" {
		return nil, fmt.Errorf("%w: File Meta Information has no Transfer Syntax UID (0002,0010)", ErrNotPart10)
	}
	if m.MediaStorageSOPClassUID == "" || m.MediaStorageSOPInstanceUID == "" {
		return nil, fmt.Errorf("%w: File Meta Information lacks the Media Storage SOP Class or Instance UID", ErrNotPart10)
	}
	return m, nil
}

func isVR(s string) bool {
	return len(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z'
}

// longVR reports VRs with a 2-byte reserved field and a 4-byte length in
// explicit VR encodings (PS3.5 7.1.2).
func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

// Encode returns the preamble, prefix and File Meta Information group
// (Explicit VR Little Endian, PS3.10 7.1). ImplementationClassUID and
// ImplementationVersionName default to medmesh's.
func (m FileMeta) Encode() ([]byte, error) {
	if m.ImplementationClassUID == "" {
		m.ImplementationClassUID = ImplementationClassUID
		if m.ImplementationVersionName == "" {
			m.ImplementationVersionName = ImplementationVersionName
		}
	}
	for _, u := range []string{m.MediaStorageSOPClassUID, m.MediaStorageSOPInstanceUID, m.TransferSyntaxUID} {
		if u == "" || len(u) > maxUID {
			return nil, fmt.Errorf("dimse: file meta: UID %q empty or longer than 64", u)
		}
	}
	var g []byte
	el := func(e uint16, vr string, v []byte, pad byte) {
		if len(v)%2 == 1 {
			v = append(v, pad)
		}
		g = binary.LittleEndian.AppendUint16(g, 2)
		g = binary.LittleEndian.AppendUint16(g, e)
		g = append(g, vr...)
		if longVR(vr) {
			g = append(g, 0, 0)
			g = binary.LittleEndian.AppendUint32(g, uint32(len(v)))
		} else {
			g = binary.LittleEndian.AppendUint16(g, uint16(len(v)))
		}
		g = append(g, v...)
	}
	el(0x0001, "OB", []byte{0, 1}, 0)
	el(0x0002, "UI", []byte(m.MediaStorageSOPClassUID), 0)
	el(0x0003, "UI", []byte(m.MediaStorageSOPInstanceUID), 0)
	el(0x0010, "UI", []byte(m.TransferSyntaxUID), 0)
	el(0x0012, "UI", []byte(m.ImplementationClassUID), 0)
	if m.ImplementationVersionName != "" {
		el(0x0013, "SH", []byte(m.ImplementationVersionName), ' ')
	}
	if m.SourceAETitle != "" {
		el(0x0016, "AE", []byte(m.SourceAETitle), ' ')
	}
	b := make([]byte, 128, 128+4+12+len(g))
	b = append(b, "DICM"...)
	b = append(b, 2, 0, 0, 0, 'U', 'L', 4, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(g)))
	return append(b, g...), nil
}

// Part10 returns a DICOM Part 10 stream: the File Meta Information for the
// instance followed by its data set, read from data as it is read. A C-STORE
// handler uses it to write what it receives as a file, without buffering.
func Part10(m FileMeta, data io.Reader) (io.Reader, error) {
	h, err := m.Encode()
	if err != nil {
		return nil, err
	}
	return io.MultiReader(bytes.NewReader(h), data), nil
}

// OpenPart10 reads the File Meta Information of a Part 10 stream and
// returns it with a reader positioned at the data set (the bytes a C-STORE
// sends).
func OpenPart10(r io.Reader) (*FileMeta, io.Reader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	m, err := ReadFileMeta(br)
	if err != nil {
		return nil, nil, err
	}
	return m, br, nil
}

// peekSOPUIDs looks for the SOP Class UID (0008,0016) and SOP Instance UID
// (0008,0018) at the start of a data set in transfer syntax ts, without
// consuming it (at most the reader's buffer is peeked). It returns "" for
// what it cannot find there (deflated data sets are not looked into).
func peekSOPUIDs(br *bufio.Reader, ts string) (class, inst string) {
	var bo binary.ByteOrder = binary.LittleEndian
	implicit := false
	switch ts {
	case ImplicitVRLittleEndian:
		implicit = true
	case ExplicitVRBigEndian:
		bo = binary.BigEndian
	case tsDeflatedLE:
		return "", ""
	}
	b, _ := br.Peek(br.Size())
	for off := 0; off+8 <= len(b); {
		g, e := bo.Uint16(b[off:]), bo.Uint16(b[off+2:])
		if g > 0x0008 || g == 0xFFFE {
			break
		}
		var n, hdr int
		switch {
		case implicit:
			n, hdr = int(bo.Uint32(b[off+4:])), 8
		case longVR(string(b[off+4 : off+6])):
			if off+12 > len(b) {
				return
			}
			n, hdr = int(bo.Uint32(b[off+8:])), 12
		default:
			n, hdr = int(bo.Uint16(b[off+6:])), 8
		}
		if n < 0 || n == 0xFFFFFFFF || off+hdr+n > len(b) {
			break
		}
		v := b[off+hdr : off+hdr+n]
		switch {
		case g == 0x0008 && e == 0x0016:
			class = trimUID(v)
		case g == 0x0008 && e == 0x0018:
			inst = trimUID(v)
			return
		}
		off += hdr + n
	}
	return
}
