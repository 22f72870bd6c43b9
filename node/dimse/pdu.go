package dimse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// PDU types (PS3.8 9.3).
const (
	TypeAssociateRQ byte = 0x01
	TypeAssociateAC byte = 0x02
	TypeAssociateRJ byte = 0x03
	TypePDataTF     byte = 0x04
	TypeReleaseRQ   byte = 0x05
	TypeReleaseRP   byte = 0x06
	TypeAbort       byte = 0x07
)

// Limits on what a peer may make us read or hold.
const (
	// MinPDULength and MaxPDULength bound the maximum P-DATA-TF length a
	// Server or Client may advertise. Anything beyond 16 MiB buys nothing
	// but memory; below 4 KiB fragments cost more than they carry.
	MinPDULength = 4096
	MaxPDULength = 16 << 20
	// DefaultMaxPDULength is what we advertise when no option says
	// otherwise (dcmtk's own upper bound for its tools).
	DefaultMaxPDULength = 128 << 10
	// maxAssociatePDU caps an A-ASSOCIATE-RQ/AC: 128 presentation contexts
	// with a dozen transfer syntaxes each, plus user identity, fit easily.
	maxAssociatePDU = 1 << 20
	// pduHeaderLen is the fixed PDU header: type, reserved, 4-byte length.
	pduHeaderLen = 6
	// pdvHeaderLen is a PDV item's header: 4-byte length, context ID,
	// message control header.
	pdvHeaderLen = 6
	// maxAETitle is the length of an AE title field.
	maxAETitle = 16
	// maxUID is the longest UID (PS3.5 9.1).
	maxUID = 64
)

// ApplicationContextName is the DICOM application context (PS3.7 A.2.1).
const ApplicationContextName = "1.2.840.10008.3.1.1.1"

// PDU is one upper-layer protocol data unit.
type PDU interface {
	// Type is the PDU type byte.
	Type() byte
	// Encode returns the whole PDU, header included.
	Encode() ([]byte, error)
}

// ErrPDU is wrapped by every decoding error: the bytes are not a valid PDU.
var ErrPDU = errors.New("dimse: malformed PDU")

// pduError describes a malformed PDU with the A-ABORT reason it deserves.
type pduError struct {
	reason byte // AbortReason*
	msg    string
}

func (e *pduError) Error() string { return "dimse: malformed PDU: " + e.msg }
func (e *pduError) Unwrap() error { return ErrPDU }

func badPDU(reason byte, format string, a ...any) error {
	return &pduError{reason: reason, msg: fmt.Sprintf(format, a...)}
}

// abortReasonOf returns the A-ABORT reason for a decoding error.
func abortReasonOf(err error) byte {
	var pe *pduError
	if errors.As(err, &pe) {
		return pe.reason
	}
	return AbortReasonNotSpecified
}

// AssociateRQ is an A-ASSOCIATE-RQ PDU (PS3.8 9.3.2).
type AssociateRQ struct {
	ProtocolVersion    uint16 // bit 0 set: version 1, the only one there is
	CalledAE           string
	CallingAE          string
	ApplicationContext string
	Contexts           []ContextRQ
	UserInfo           UserInfo
}

// AssociateAC is an A-ASSOCIATE-AC PDU (PS3.8 9.3.3). The AE titles echo
// those of the request.
type AssociateAC struct {
	ProtocolVersion    uint16
	CalledAE           string
	CallingAE          string
	ApplicationContext string
	Contexts           []ContextAC
	UserInfo           UserInfo
}

// AssociateRJ is an A-ASSOCIATE-RJ PDU (PS3.8 9.3.4).
type AssociateRJ struct {
	Result byte // RejectPermanent or RejectTransient
	Source byte // RejectSource*
	Reason byte // meaning depends on Source
}

// PDataTF is a P-DATA-TF PDU (PS3.8 9.3.5): one or more PDV items.
type PDataTF struct {
	Items []PDV
}

// PDV is one presentation data value item: a fragment of a command set or
// of a data set, on one presentation context.
type PDV struct {
	Context byte
	Command bool // message control header bit 0
	Last    bool // message control header bit 1
	Data    []byte
}

// ReleaseRQ is an A-RELEASE-RQ PDU.
type ReleaseRQ struct{}

// ReleaseRP is an A-RELEASE-RP PDU.
type ReleaseRP struct{}

// Abort is an A-ABORT PDU (PS3.8 9.3.8).
type Abort struct {
	Source byte // AbortSourceUser or AbortSourceProvider
	Reason byte // AbortReason*, significant only for the provider
}

// A-ASSOCIATE-RJ result, source and reason values (PS3.8 Table 9-21).
const (
	RejectPermanent byte = 1
	RejectTransient byte = 2

	RejectSourceUser         byte = 1 // DICOM UL service-user
	RejectSourceACSE         byte = 2 // UL service-provider, ACSE related function
	RejectSourcePresentation byte = 3 // UL service-provider, presentation related function

	// Source 1 (service-user)
	RejectNoReason                   byte = 1
	RejectApplicationContextNotSupp  byte = 2
	RejectCallingAENotRecognized     byte = 3
	RejectCalledAENotRecognized      byte = 7
	RejectACSEProtocolVersionNotSupp byte = 2 // source 2
	RejectTemporaryCongestion        byte = 1 // source 3
	RejectLocalLimitExceeded         byte = 2 // source 3
)

// A-ABORT sources and reasons (PS3.8 Table 9-26).
const (
	AbortSourceUser     byte = 0
	AbortSourceProvider byte = 2

	AbortReasonNotSpecified      byte = 0
	AbortReasonUnrecognizedPDU   byte = 1
	AbortReasonUnexpectedPDU     byte = 2
	AbortReasonUnrecognizedParam byte = 4
	AbortReasonUnexpectedParam   byte = 5
	AbortReasonInvalidParamValue byte = 6
)

const (
	protocolVersion1      uint16 = 1
	messageControlCommand byte   = 0x01
	messageControlLast    byte   = 0x02
)

func (*AssociateRQ) Type() byte { return TypeAssociateRQ }
func (*AssociateAC) Type() byte { return TypeAssociateAC }
func (*AssociateRJ) Type() byte { return TypeAssociateRJ }
func (*PDataTF) Type() byte     { return TypePDataTF }
func (*ReleaseRQ) Type() byte   { return TypeReleaseRQ }
func (*ReleaseRP) Type() byte   { return TypeReleaseRP }
func (*Abort) Type() byte       { return TypeAbort }

// pduHeader appends a PDU header for a body of n bytes.
func pduHeader(b []byte, t byte, n int) []byte {
	b = append(b, t, 0)
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

func fixed4(t byte, b0, b1, b2, b3 byte) []byte {
	return append(pduHeader(make([]byte, 0, 10), t, 4), b0, b1, b2, b3)
}

func (p *AssociateRJ) Encode() ([]byte, error) {
	return fixed4(TypeAssociateRJ, 0, p.Result, p.Source, p.Reason), nil
}
func (*ReleaseRQ) Encode() ([]byte, error) { return fixed4(TypeReleaseRQ, 0, 0, 0, 0), nil }
func (*ReleaseRP) Encode() ([]byte, error) { return fixed4(TypeReleaseRP, 0, 0, 0, 0), nil }
func (p *Abort) Encode() ([]byte, error) {
	return fixed4(TypeAbort, 0, 0, p.Source, p.Reason), nil
}

func (p *PDataTF) Encode() ([]byte, error) {
	n := 0
	for _, it := range p.Items {
		n += pdvHeaderLen + len(it.Data)
	}
	if n > MaxPDULength {
		return nil, fmt.Errorf("dimse: P-DATA-TF of %d bytes exceeds %d", n, MaxPDULength)
	}
	b := pduHeader(make([]byte, 0, pduHeaderLen+n), TypePDataTF, n)
	for _, it := range p.Items {
		b = binary.BigEndian.AppendUint32(b, uint32(2+len(it.Data)))
		b = append(b, it.Context, mch(it.Command, it.Last))
		b = append(b, it.Data...)
	}
	return b, nil
}

func mch(command, last bool) byte {
	var c byte
	if command {
		c |= messageControlCommand
	}
	if last {
		c |= messageControlLast
	}
	return c
}

func (p *AssociateRQ) Encode() ([]byte, error) {
	var items []byte
	items, err := appendStringItem(items, itemApplicationContext, p.ApplicationContext, maxUID)
	if err != nil {
		return nil, err
	}
	for _, c := range p.Contexts {
		if items, err = c.appendTo(items); err != nil {
			return nil, err
		}
	}
	if items, err = p.UserInfo.appendTo(items); err != nil {
		return nil, err
	}
	return encodeAssociate(TypeAssociateRQ, p.ProtocolVersion, p.CalledAE, p.CallingAE, items)
}

func (p *AssociateAC) Encode() ([]byte, error) {
	var items []byte
	items, err := appendStringItem(items, itemApplicationContext, p.ApplicationContext, maxUID)
	if err != nil {
		return nil, err
	}
	for _, c := range p.Contexts {
		if items, err = c.appendTo(items); err != nil {
			return nil, err
		}
	}
	if items, err = p.UserInfo.appendTo(items); err != nil {
		return nil, err
	}
	return encodeAssociate(TypeAssociateAC, p.ProtocolVersion, p.CalledAE, p.CallingAE, items)
}

func encodeAssociate(t byte, version uint16, called, calling string, items []byte) ([]byte, error) {
	if err := checkAETitle(called); err != nil {
		return nil, fmt.Errorf("called AE title: %w", err)
	}
	if err := checkAETitle(calling); err != nil {
		return nil, fmt.Errorf("calling AE title: %w", err)
	}
	n := 2 + 2 + 16 + 16 + 32 + len(items)
	if n > maxAssociatePDU {
		return nil, fmt.Errorf("dimse: A-ASSOCIATE PDU of %d bytes exceeds %d", n, maxAssociatePDU)
	}
	b := pduHeader(make([]byte, 0, pduHeaderLen+n), t, n)
	b = binary.BigEndian.AppendUint16(b, version)
	b = append(b, 0, 0)
	b = appendAE(b, called)
	b = appendAE(b, calling)
	b = append(b, make([]byte, 32)...)
	return append(b, items...), nil
}

func appendAE(b []byte, ae string) []byte {
	b = append(b, ae...)
	for i := len(ae); i < maxAETitle; i++ {
		b = append(b, ' ')
	}
	return b
}

// checkAETitle reports whether s is a valid AE title (PS3.5 6.2, VR AE):
// 1 to 16 characters of the default repertoire, no backslash or control
// characters, not only spaces.
func checkAETitle(s string) error {
	if len(s) == 0 || len(s) > maxAETitle {
		return fmt.Errorf("AE title %q must be 1 to 16 characters", s)
	}
	blank := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '\\' {
			return fmt.Errorf("AE title %q has a character outside the DICOM default repertoire (or a backslash)", s)
		}
		if c != ' ' {
			blank = false
		}
	}
	if blank {
		return fmt.Errorf("AE title is all spaces")
	}
	return nil
}

// trimAE returns an AE title field without its insignificant leading and
// trailing spaces (and any NUL padding, which some peers send).
func trimAE(b []byte) string {
	i, j := 0, len(b)
	for j > i && (b[j-1] == ' ' || b[j-1] == 0) {
		j--
	}
	for i < j && b[i] == ' ' {
		i++
	}
	return string(b[i:j])
}

// trimUID returns a UID field without the trailing NUL (or space) padding
// that makes its length even.
func trimUID(b []byte) string {
	j := len(b)
	for j > 0 && (b[j-1] == 0 || b[j-1] == ' ') {
		j--
	}
	return string(b[:j])
}

// ReadPDU reads one PDU from r. maxPData bounds the body of a P-DATA-TF
// (the maximum length we advertised); other PDUs have fixed bounds. A
// length beyond its bound is rejected before anything is allocated. buf is
// reused for P-DATA bodies when large enough; the returned PDataTF's items
// alias it until the next call.
func ReadPDU(r io.Reader, maxPData uint32, buf []byte) (PDU, []byte, error) {
	var h [pduHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, buf, err
	}
	t, n := h[0], binary.BigEndian.Uint32(h[2:])
	if err := checkPDULength(t, n, maxPData); err != nil {
		return nil, buf, err
	}
	var body []byte
	if t == TypePDataTF {
		if uint32(cap(buf)) < n {
			buf = make([]byte, n)
		}
		body = buf[:n]
	} else {
		body = make([]byte, n)
	}
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, buf, err
	}
	p, err := decodeBody(t, body)
	return p, buf, err
}

func checkPDULength(t byte, n, maxPData uint32) error {
	switch t {
	case TypeAssociateRQ, TypeAssociateAC:
		if n < 68 || n > maxAssociatePDU {
			return badPDU(AbortReasonInvalidParamValue, "A-ASSOCIATE PDU length %d outside 68..%d", n, maxAssociatePDU)
		}
	case TypePDataTF:
		if n < pdvHeaderLen || n > maxPData {
			return badPDU(AbortReasonInvalidParamValue, "P-DATA-TF length %d outside %d..%d (the maximum we accept)", n, pdvHeaderLen, maxPData)
		}
	case TypeAssociateRJ, TypeReleaseRQ, TypeReleaseRP, TypeAbort:
		if n != 4 {
			return badPDU(AbortReasonInvalidParamValue, "PDU type 0x%02x length %d, want 4", t, n)
		}
	default:
		return badPDU(AbortReasonUnrecognizedPDU, "unrecognized PDU type 0x%02x", t)
	}
	return nil
}

// DecodePDU decodes one complete PDU (header included); b must hold exactly
// one PDU. P-DATA-TF bodies may be up to MaxPDULength. Items of a decoded
// P-DATA-TF alias b.
func DecodePDU(b []byte) (PDU, error) {
	if len(b) < pduHeaderLen {
		return nil, badPDU(AbortReasonInvalidParamValue, "%d bytes, shorter than a PDU header", len(b))
	}
	t, n := b[0], binary.BigEndian.Uint32(b[2:])
	if err := checkPDULength(t, n, MaxPDULength); err != nil {
		return nil, err
	}
	if uint64(n) != uint64(len(b)-pduHeaderLen) {
		return nil, badPDU(AbortReasonInvalidParamValue, "PDU length field %d, but %d bytes follow the header", n, len(b)-pduHeaderLen)
	}
	return decodeBody(t, b[pduHeaderLen:])
}

func decodeBody(t byte, body []byte) (PDU, error) {
	switch t {
	case TypeAssociateRQ:
		return decodeAssociateRQ(body)
	case TypeAssociateAC:
		return decodeAssociateAC(body)
	case TypeAssociateRJ:
		return &AssociateRJ{Result: body[1], Source: body[2], Reason: body[3]}, nil
	case TypePDataTF:
		return decodePData(body)
	case TypeReleaseRQ:
		return &ReleaseRQ{}, nil
	case TypeReleaseRP:
		return &ReleaseRP{}, nil
	case TypeAbort:
		return &Abort{Source: body[2], Reason: body[3]}, nil
	}
	return nil, badPDU(AbortReasonUnrecognizedPDU, "unrecognized PDU type 0x%02x", t)
}

func decodePData(b []byte) (*PDataTF, error) {
	p := &PDataTF{}
	for len(b) > 0 {
		if len(b) < pdvHeaderLen {
			return nil, badPDU(AbortReasonInvalidParamValue, "PDV item header truncated (%d bytes left)", len(b))
		}
		n := binary.BigEndian.Uint32(b)
		if n < 2 || uint64(n) > uint64(len(b)-4) {
			return nil, badPDU(AbortReasonInvalidParamValue, "PDV item length %d outside 2..%d", n, len(b)-4)
		}
		id, c := b[4], b[5]
		if id%2 == 0 {
			return nil, badPDU(AbortReasonInvalidParamValue, "PDV on even presentation context ID %d", id)
		}
		p.Items = append(p.Items, PDV{Context: id, Command: c&messageControlCommand != 0, Last: c&messageControlLast != 0, Data: b[6 : 4+n]})
		b = b[4+n:]
	}
	return p, nil
}

// associate header: version(2) reserved(2) called(16) calling(16) reserved(32)
func decodeAssociateHeader(b []byte) (version uint16, called, calling string, items []byte) {
	return binary.BigEndian.Uint16(b), trimAE(b[4:20]), trimAE(b[20:36]), b[68:]
}

func decodeAssociateRQ(b []byte) (*AssociateRQ, error) {
	p := &AssociateRQ{}
	var items []byte
	p.ProtocolVersion, p.CalledAE, p.CallingAE, items = decodeAssociateHeader(b)
	var seenApp, seenUser bool
	err := walkItems(items, 2, func(t byte, v []byte) error {
		switch t {
		case itemApplicationContext:
			if seenApp {
				return badPDU(AbortReasonUnexpectedParam, "two application context items")
			}
			seenApp = true
			p.ApplicationContext = trimUID(v)
		case itemContextRQ:
			c, err := decodeContextRQ(v)
			if err != nil {
				return err
			}
			if len(p.Contexts) >= maxContexts {
				return badPDU(AbortReasonInvalidParamValue, "more than %d presentation contexts", maxContexts)
			}
			p.Contexts = append(p.Contexts, c)
		case itemUserInfo:
			if seenUser {
				return badPDU(AbortReasonUnexpectedParam, "two user information items")
			}
			seenUser = true
			u, err := decodeUserInfo(v)
			if err != nil {
				return err
			}
			p.UserInfo = u
		case itemContextAC:
			return badPDU(AbortReasonUnexpectedParam, "presentation context AC item in an A-ASSOCIATE-RQ")
		}
		// other item types: ignored (PS3.8 9.3.1: unrecognized items)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !seenApp {
		return nil, badPDU(AbortReasonInvalidParamValue, "A-ASSOCIATE-RQ without an application context item")
	}
	return p, nil
}

func decodeAssociateAC(b []byte) (*AssociateAC, error) {
	p := &AssociateAC{}
	var items []byte
	p.ProtocolVersion, p.CalledAE, p.CallingAE, items = decodeAssociateHeader(b)
	var seenApp, seenUser bool
	err := walkItems(items, 2, func(t byte, v []byte) error {
		switch t {
		case itemApplicationContext:
			if seenApp {
				return badPDU(AbortReasonUnexpectedParam, "two application context items")
			}
			seenApp = true
			p.ApplicationContext = trimUID(v)
		case itemContextAC:
			c, err := decodeContextAC(v)
			if err != nil {
				return err
			}
			if len(p.Contexts) >= maxContexts {
				return badPDU(AbortReasonInvalidParamValue, "more than %d presentation contexts", maxContexts)
			}
			p.Contexts = append(p.Contexts, c)
		case itemUserInfo:
			if seenUser {
				return badPDU(AbortReasonUnexpectedParam, "two user information items")
			}
			seenUser = true
			u, err := decodeUserInfo(v)
			if err != nil {
				return err
			}
			p.UserInfo = u
		case itemContextRQ:
			return badPDU(AbortReasonUnexpectedParam, "presentation context RQ item in an A-ASSOCIATE-AC")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !seenApp {
		return nil, badPDU(AbortReasonInvalidParamValue, "A-ASSOCIATE-AC without an application context item")
	}
	return p, nil
}

// walkItems calls fn for each item of b: type(1) reserved(1) length(lenBytes).
func walkItems(b []byte, lenBytes int, fn func(t byte, v []byte) error) error {
	for len(b) > 0 {
		if len(b) < 2+lenBytes {
			return badPDU(AbortReasonInvalidParamValue, "item header truncated (%d bytes left)", len(b))
		}
		t := b[0]
		var n uint32
		if lenBytes == 2 {
			n = uint32(binary.BigEndian.Uint16(b[2:]))
		} else {
			n = binary.BigEndian.Uint32(b[2:])
		}
		h := 2 + lenBytes
		if uint64(n) > uint64(len(b)-h) {
			return badPDU(AbortReasonInvalidParamValue, "item 0x%02x length %d beyond the %d bytes left", t, n, len(b)-h)
		}
		if err := fn(t, b[h:h+int(n)]); err != nil {
			return err
		}
		b = b[h+int(n):]
	}
	return nil
}
