package dimse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Command fields (PS3.7 E.1).
const (
	CStoreRQ  uint16 = 0x0001
	CStoreRSP uint16 = 0x8001
	CGetRQ    uint16 = 0x0010
	CGetRSP   uint16 = 0x8010
	CFindRQ   uint16 = 0x0020
	CFindRSP  uint16 = 0x8020
	CMoveRQ   uint16 = 0x0021
	CMoveRSP  uint16 = 0x8021
	CEchoRQ   uint16 = 0x0030
	CEchoRSP  uint16 = 0x8030
	CCancelRQ uint16 = 0x0FFF
)

// Priorities (PS3.7 C.4.2.1.4 and friends).
const (
	PriorityMedium uint16 = 0
	PriorityHigh   uint16 = 1
	PriorityLow    uint16 = 2
)

// dataSetAbsent is the Command Data Set Type meaning "no data set"; any
// other value means one follows (PS3.7 E.1-1).
const (
	dataSetAbsent  uint16 = 0x0101
	dataSetPresent uint16 = 0x0001
)

// maxCommandLen caps an encoded command set. Real ones are a few hundred
// bytes; the cap leaves room for long error comments and attribute lists.
const maxCommandLen = 64 << 10

// maxATValues caps an attribute tag list (Offending Element, Attribute
// Identifier List).
const maxATValues = 1024

// ErrCommand is wrapped by every command set decoding error.
var ErrCommand = errors.New("dimse: malformed command set")

// Command is a DIMSE command set (group 0000, PS3.7 E.1): the union of the
// fields of the C-services, with a record of which are present. Use the
// Set* methods (or the constructors in message.go) so that presence is
// recorded; Has reports it.
type Command struct {
	AffectedSOPClassUID       string
	RequestedSOPClassUID      string
	CommandField              uint16
	MessageID                 uint16
	MessageIDBeingRespondedTo uint16
	MoveDestination           string
	Priority                  uint16
	CommandDataSetType        uint16
	Status                    uint16
	OffendingElement          []uint32
	ErrorComment              string
	ErrorID                   uint16
	AffectedSOPInstanceUID    string
	RequestedSOPInstanceUID   string
	EventTypeID               uint16
	AttributeIdentifierList   []uint32
	ActionTypeID              uint16
	Remaining                 uint16 // Number of Remaining Sub-operations
	Completed                 uint16 // Number of Completed Sub-operations
	Failed                    uint16 // Number of Failed Sub-operations
	Warning                   uint16 // Number of Warning Sub-operations
	MoveOriginatorAE          string
	MoveOriginatorMessageID   uint16

	present uint32 // bit i: cmdTags[i] present
}

type vrKind uint8

const (
	vrUL vrKind = iota
	vrUS
	vrUI
	vrAE
	vrLO
	vrAT
)

// Command set elements we know, in ascending tag order (element numbers of
// group 0000).
const (
	tGroupLength             uint16 = 0x0000
	tAffectedSOPClassUID     uint16 = 0x0002
	tRequestedSOPClassUID    uint16 = 0x0003
	tCommandField            uint16 = 0x0100
	tMessageID               uint16 = 0x0110
	tMessageIDRespondedTo    uint16 = 0x0120
	tMoveDestination         uint16 = 0x0600
	tPriority                uint16 = 0x0700
	tCommandDataSetType      uint16 = 0x0800
	tStatus                  uint16 = 0x0900
	tOffendingElement        uint16 = 0x0901
	tErrorComment            uint16 = 0x0902
	tErrorID                 uint16 = 0x0903
	tAffectedSOPInstanceUID  uint16 = 0x1000
	tRequestedSOPInstanceUID uint16 = 0x1001
	tEventTypeID             uint16 = 0x1002
	tAttributeIdentifierList uint16 = 0x1005
	tActionTypeID            uint16 = 0x1008
	tRemaining               uint16 = 0x1020
	tCompleted               uint16 = 0x1021
	tFailed                  uint16 = 0x1022
	tWarning                 uint16 = 0x1023
	tMoveOriginatorAE        uint16 = 0x1030
	tMoveOriginatorMessageID uint16 = 0x1031
)

var cmdTags = [...]struct {
	el   uint16
	kind vrKind
}{
	{tGroupLength, vrUL},
	{tAffectedSOPClassUID, vrUI},
	{tRequestedSOPClassUID, vrUI},
	{tCommandField, vrUS},
	{tMessageID, vrUS},
	{tMessageIDRespondedTo, vrUS},
	{tMoveDestination, vrAE},
	{tPriority, vrUS},
	{tCommandDataSetType, vrUS},
	{tStatus, vrUS},
	{tOffendingElement, vrAT},
	{tErrorComment, vrLO},
	{tErrorID, vrUS},
	{tAffectedSOPInstanceUID, vrUI},
	{tRequestedSOPInstanceUID, vrUI},
	{tEventTypeID, vrUS},
	{tAttributeIdentifierList, vrAT},
	{tActionTypeID, vrUS},
	{tRemaining, vrUS},
	{tCompleted, vrUS},
	{tFailed, vrUS},
	{tWarning, vrUS},
	{tMoveOriginatorAE, vrAE},
	{tMoveOriginatorMessageID, vrUS},
}

func tagIndex(el uint16) int {
	for i, t := range cmdTags {
		if t.el == el {
			return i
		}
	}
	return -1
}

// Has reports whether the element (0000,el) is present.
func (c *Command) Has(el uint16) bool {
	i := tagIndex(el)
	return i >= 0 && c.present&(1<<i) != 0
}

func (c *Command) mark(el uint16) {
	if i := tagIndex(el); i >= 0 {
		c.present |= 1 << i
	}
}

// Unset removes element (0000,el).
func (c *Command) Unset(el uint16) {
	if i := tagIndex(el); i >= 0 {
		c.present &^= 1 << i
	}
}

// SetUS sets a US element and marks it present.
func (c *Command) SetUS(el uint16, v uint16) {
	if p := c.us(el); p != nil {
		*p = v
		c.mark(el)
	}
}

// SetString sets a UI, AE or LO element and marks it present.
func (c *Command) SetString(el uint16, v string) {
	if p := c.str(el); p != nil {
		*p = v
		c.mark(el)
	}
}

// SetAT sets an AT element and marks it present.
func (c *Command) SetAT(el uint16, v []uint32) {
	if p := c.at(el); p != nil {
		*p = v
		c.mark(el)
	}
}

func (c *Command) us(el uint16) *uint16 {
	switch el {
	case tCommandField:
		return &c.CommandField
	case tMessageID:
		return &c.MessageID
	case tMessageIDRespondedTo:
		return &c.MessageIDBeingRespondedTo
	case tPriority:
		return &c.Priority
	case tCommandDataSetType:
		return &c.CommandDataSetType
	case tStatus:
		return &c.Status
	case tErrorID:
		return &c.ErrorID
	case tEventTypeID:
		return &c.EventTypeID
	case tActionTypeID:
		return &c.ActionTypeID
	case tRemaining:
		return &c.Remaining
	case tCompleted:
		return &c.Completed
	case tFailed:
		return &c.Failed
	case tWarning:
		return &c.Warning
	case tMoveOriginatorMessageID:
		return &c.MoveOriginatorMessageID
	}
	return nil
}

func (c *Command) str(el uint16) *string {
	switch el {
	case tAffectedSOPClassUID:
		return &c.AffectedSOPClassUID
	case tRequestedSOPClassUID:
		return &c.RequestedSOPClassUID
	case tMoveDestination:
		return &c.MoveDestination
	case tErrorComment:
		return &c.ErrorComment
	case tAffectedSOPInstanceUID:
		return &c.AffectedSOPInstanceUID
	case tRequestedSOPInstanceUID:
		return &c.RequestedSOPInstanceUID
	case tMoveOriginatorAE:
		return &c.MoveOriginatorAE
	}
	return nil
}

func (c *Command) at(el uint16) *[]uint32 {
	switch el {
	case tOffendingElement:
		return &c.OffendingElement
	case tAttributeIdentifierList:
		return &c.AttributeIdentifierList
	}
	return nil
}

// HasDataSet reports whether a data set follows the command.
func (c *Command) HasDataSet() bool {
	return c.Has(tCommandDataSetType) && c.CommandDataSetType != dataSetAbsent
}

func (c *Command) setDataSet(present bool) {
	if present {
		c.SetUS(tCommandDataSetType, dataSetPresent)
	} else {
		c.SetUS(tCommandDataSetType, dataSetAbsent)
	}
}

// Encode returns the command set in Implicit VR Little Endian, with its
// group length first. Strings are padded to even length (UIDs with NUL,
// the others with spaces).
func (c *Command) Encode() ([]byte, error) {
	b := make([]byte, 0, 256)
	b = append(b, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0) // group length, filled below
	for i, t := range cmdTags {
		if t.el == tGroupLength || c.present&(1<<i) == 0 {
			continue
		}
		var v []byte
		switch t.kind {
		case vrUS:
			v = binary.LittleEndian.AppendUint16(nil, *c.us(t.el))
		case vrUI, vrAE, vrLO:
			s := *c.str(t.el)
			if err := checkCommandString(t.kind, s); err != nil {
				return nil, fmt.Errorf("dimse: command element (0000,%04X): %w", t.el, err)
			}
			v = []byte(s)
			if len(v)%2 == 1 {
				if t.kind == vrUI {
					v = append(v, 0)
				} else {
					v = append(v, ' ')
				}
			}
		case vrAT:
			vals := *c.at(t.el)
			if len(vals) > maxATValues {
				return nil, fmt.Errorf("dimse: command element (0000,%04X): %d attribute tags", t.el, len(vals))
			}
			for _, a := range vals {
				v = binary.LittleEndian.AppendUint16(v, uint16(a>>16))
				v = binary.LittleEndian.AppendUint16(v, uint16(a))
			}
		}
		b = binary.LittleEndian.AppendUint16(b, 0)
		b = binary.LittleEndian.AppendUint16(b, t.el)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	if len(b) > maxCommandLen {
		return nil, fmt.Errorf("dimse: command set of %d bytes exceeds %d", len(b), maxCommandLen)
	}
	binary.LittleEndian.PutUint32(b[8:], uint32(len(b)-12))
	return b, nil
}

func checkCommandString(k vrKind, s string) error {
	max := 64
	if k == vrAE {
		max = 16
	}
	if len(s) > max {
		return fmt.Errorf("value of %d characters, more than %d", len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f || s[i] == '\\' {
			return fmt.Errorf("value %q has a control character or backslash", s)
		}
	}
	return nil
}

// DecodeCommand decodes a command set (Implicit VR Little Endian, group
// 0000 only, ascending tags). The group length, if present, must be the
// first element and match. Unknown group 0000 elements are skipped.
// Command Field and Command Data Set Type are required.
func DecodeCommand(b []byte) (*Command, error) {
	bad := func(f string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrCommand, fmt.Sprintf(f, a...))
	}
	if len(b) > maxCommandLen {
		return nil, bad("%d bytes, more than %d", len(b), maxCommandLen)
	}
	c := &Command{}
	first := true
	last := -1
	for off := 0; off < len(b); {
		if len(b)-off < 8 {
			return nil, bad("element header truncated at offset %d", off)
		}
		g := binary.LittleEndian.Uint16(b[off:])
		el := binary.LittleEndian.Uint16(b[off+2:])
		n := binary.LittleEndian.Uint32(b[off+4:])
		off += 8
		if g != 0 {
			return nil, bad("element (%04X,%04X) outside group 0000", g, el)
		}
		if int(el) <= last {
			return nil, bad("element (0000,%04X) out of order or repeated", el)
		}
		last = int(el)
		if uint64(n) > uint64(len(b)-off) {
			return nil, bad("element (0000,%04X) length %d beyond the %d bytes left", el, n, len(b)-off)
		}
		v := b[off : off+int(n)]
		off += int(n)
		i := tagIndex(el)
		if i < 0 {
			first = false
			continue // retired or unknown element: skipped
		}
		switch cmdTags[i].kind {
		case vrUL: // group length
			if !first || n != 4 {
				return nil, bad("group length not first or not 4 bytes")
			}
			if gl := binary.LittleEndian.Uint32(v); uint64(gl) != uint64(len(b)-off) {
				return nil, bad("group length %d, but %d bytes follow", gl, len(b)-off)
			}
		case vrUS:
			if n != 2 {
				return nil, bad("element (0000,%04X) of VR US has length %d", el, n)
			}
			*c.us(el) = binary.LittleEndian.Uint16(v)
		case vrUI, vrAE, vrLO:
			var s string
			if cmdTags[i].kind == vrUI {
				s = trimUID(v)
			} else {
				s = strings.Trim(string(v), " \x00")
			}
			if err := checkCommandString(cmdTags[i].kind, s); err != nil {
				return nil, bad("element (0000,%04X): %v", el, err)
			}
			*c.str(el) = s
		case vrAT:
			if n%4 != 0 || n/4 > maxATValues {
				return nil, bad("element (0000,%04X) of VR AT has length %d", el, n)
			}
			vals := make([]uint32, 0, n/4)
			for k := 0; k < len(v); k += 4 {
				vals = append(vals, uint32(binary.LittleEndian.Uint16(v[k:]))<<16|uint32(binary.LittleEndian.Uint16(v[k+2:])))
			}
			*c.at(el) = vals
		}
		c.present |= 1 << i
		first = false
	}
	if !c.Has(tCommandField) {
		return nil, bad("no Command Field (0000,0100)")
	}
	if !c.Has(tCommandDataSetType) {
		return nil, bad("no Command Data Set Type (0000,0800)")
	}
	c.Unset(tGroupLength)
	return c, nil
}

// validate checks that the fields the message type requires are present
// (PS3.7 9.3 and 9.1.5); it does not judge their values.
func (c *Command) validate() error {
	need := func(els ...uint16) error {
		for _, el := range els {
			if !c.Has(el) {
				return fmt.Errorf("%w: %s without (0000,%04X)", ErrCommand, commandName(c.CommandField), el)
			}
		}
		return nil
	}
	switch c.CommandField {
	case CEchoRQ:
		return need(tMessageID, tAffectedSOPClassUID)
	case CStoreRQ:
		return need(tMessageID, tAffectedSOPClassUID, tAffectedSOPInstanceUID, tPriority)
	case CFindRQ, CGetRQ:
		return need(tMessageID, tAffectedSOPClassUID, tPriority)
	case CMoveRQ:
		return need(tMessageID, tAffectedSOPClassUID, tPriority, tMoveDestination)
	case CCancelRQ:
		return need(tMessageIDRespondedTo)
	case CEchoRSP, CStoreRSP, CFindRSP, CGetRSP, CMoveRSP:
		return need(tMessageIDRespondedTo, tStatus)
	}
	if c.CommandField&0x8000 != 0 {
		return need(tMessageIDRespondedTo)
	}
	return need(tMessageID)
}

func commandName(f uint16) string {
	switch f {
	case CStoreRQ:
		return "C-STORE-RQ"
	case CStoreRSP:
		return "C-STORE-RSP"
	case CGetRQ:
		return "C-GET-RQ"
	case CGetRSP:
		return "C-GET-RSP"
	case CFindRQ:
		return "C-FIND-RQ"
	case CFindRSP:
		return "C-FIND-RSP"
	case CMoveRQ:
		return "C-MOVE-RQ"
	case CMoveRSP:
		return "C-MOVE-RSP"
	case CEchoRQ:
		return "C-ECHO-RQ"
	case CEchoRSP:
		return "C-ECHO-RSP"
	case CCancelRQ:
		return "C-CANCEL-RQ"
	}
	return fmt.Sprintf("command 0x%04X", f)
}

func (c *Command) String() string {
	var sb strings.Builder
	sb.WriteString(commandName(c.CommandField))
	if c.Has(tMessageID) {
		fmt.Fprintf(&sb, " id=%d", c.MessageID)
	}
	if c.Has(tMessageIDRespondedTo) {
		fmt.Fprintf(&sb, " re=%d", c.MessageIDBeingRespondedTo)
	}
	if c.Has(tStatus) {
		fmt.Fprintf(&sb, " status=0x%04X", c.Status)
	}
	if c.AffectedSOPClassUID != "" {
		fmt.Fprintf(&sb, " class=%s", c.AffectedSOPClassUID)
	}
	return sb.String()
}
