package dimse

import (
	"encoding/binary"
	"fmt"
)

// Item and sub-item types of the A-ASSOCIATE PDUs (PS3.8 9.3.2, PS3.7 D.3).
const (
	itemApplicationContext   byte = 0x10
	itemContextRQ            byte = 0x20
	itemContextAC            byte = 0x21
	itemAbstractSyntax       byte = 0x30
	itemTransferSyntax       byte = 0x40
	itemUserInfo             byte = 0x50
	subMaxLength             byte = 0x51
	subImplementationClass   byte = 0x52
	subAsyncOps              byte = 0x53
	subRoleSelection         byte = 0x54
	subImplementationVersion byte = 0x55
	subExtendedNegotiation   byte = 0x56
	subCommonExtended        byte = 0x57
	subUserIdentityRQ        byte = 0x58
	subUserIdentityAC        byte = 0x59
)

// maxContexts is the number of odd presentation context IDs (1..255).
const maxContexts = 128

// Presentation context results in an A-ASSOCIATE-AC (PS3.8 Table 9-18).
const (
	ResultAcceptance                 byte = 0
	ResultUserRejection              byte = 1
	ResultNoReason                   byte = 2
	ResultAbstractSyntaxNotSupported byte = 3
	ResultTransferSyntaxNotSupported byte = 4
)

// ContextRQ is a proposed presentation context: one abstract syntax (a SOP
// class) and the transfer syntaxes the requestor can use for it.
type ContextRQ struct {
	ID               byte // odd, 1..255
	AbstractSyntax   string
	TransferSyntaxes []string
}

// ContextAC is the acceptor's answer for one proposed context. The transfer
// syntax is significant only when Result is ResultAcceptance.
type ContextAC struct {
	ID             byte
	Result         byte
	TransferSyntax string
}

// UserInfo is the user information item (PS3.7 D.3.3, PS3.8 D.1).
type UserInfo struct {
	// MaxPDULength is the largest P-DATA-TF body the sender accepts;
	// 0 means no limit.
	MaxPDULength           uint32
	ImplementationClassUID string
	ImplementationVersion  string
	AsyncOps               *AsyncOps
	Roles                  []RoleSelection
	Extended               []ExtendedNegotiation
	CommonExtended         []CommonExtendedNegotiation
	UserIdentity           *UserIdentity   // in a request
	UserIdentityResponse   *UserIdentityAC // in an accept
}

// AsyncOps is the asynchronous operations window (PS3.7 D.3.3.3).
type AsyncOps struct {
	Invoked   uint16 // maximum number of operations invoked, 0 = unlimited
	Performed uint16 // maximum number of operations performed, 0 = unlimited
}

// RoleSelection is an SCP/SCU role selection sub-item (PS3.7 D.3.3.4): in a
// request, the roles the requestor proposes for itself; in an accept, the
// roles the acceptor agrees to.
type RoleSelection struct {
	SOPClassUID string
	SCU         bool
	SCP         bool
}

// ExtendedNegotiation is an SOP class extended negotiation sub-item
// (PS3.7 D.3.3.5): service-class-specific application information.
type ExtendedNegotiation struct {
	SOPClassUID string
	Info        []byte
}

// CommonExtendedNegotiation is an SOP class common extended negotiation
// sub-item (PS3.7 D.3.3.6).
type CommonExtendedNegotiation struct {
	SOPClassUID       string
	ServiceClassUID   string
	RelatedSOPClasses []string
}

// UserIdentity is a user identity negotiation request (PS3.7 D.3.3.7).
type UserIdentity struct {
	Type                      byte // 1 username, 2 username+passcode, 3 Kerberos, 4 SAML, 5 JWT
	PositiveResponseRequested bool
	Primary                   []byte
	Secondary                 []byte
}

// UserIdentityAC is a user identity negotiation response.
type UserIdentityAC struct {
	ServerResponse []byte
}

func appendItemHeader(b []byte, t byte, n int) ([]byte, error) {
	if n > 0xFFFF {
		return nil, fmt.Errorf("dimse: item 0x%02x of %d bytes exceeds 65535", t, n)
	}
	b = append(b, t, 0)
	return binary.BigEndian.AppendUint16(b, uint16(n)), nil
}

func appendStringItem(b []byte, t byte, s string, max int) ([]byte, error) {
	if len(s) > max {
		return nil, fmt.Errorf("dimse: item 0x%02x value %q longer than %d", t, s, max)
	}
	b, err := appendItemHeader(b, t, len(s))
	if err != nil {
		return nil, err
	}
	return append(b, s...), nil
}

func appendUID16(b []byte, uid string) ([]byte, error) {
	if len(uid) > maxUID {
		return nil, fmt.Errorf("dimse: UID %q longer than %d", uid, maxUID)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(uid)))
	return append(b, uid...), nil
}

func (c ContextRQ) appendTo(b []byte) ([]byte, error) {
	if c.ID%2 == 0 {
		return nil, fmt.Errorf("dimse: presentation context ID %d is not odd", c.ID)
	}
	var sub []byte
	sub, err := appendStringItem(sub, itemAbstractSyntax, c.AbstractSyntax, maxUID)
	if err != nil {
		return nil, err
	}
	for _, ts := range c.TransferSyntaxes {
		if sub, err = appendStringItem(sub, itemTransferSyntax, ts, maxUID); err != nil {
			return nil, err
		}
	}
	if b, err = appendItemHeader(b, itemContextRQ, 4+len(sub)); err != nil {
		return nil, err
	}
	b = append(b, c.ID, 0, 0, 0)
	return append(b, sub...), nil
}

func (c ContextAC) appendTo(b []byte) ([]byte, error) {
	var sub []byte
	sub, err := appendStringItem(sub, itemTransferSyntax, c.TransferSyntax, maxUID)
	if err != nil {
		return nil, err
	}
	if b, err = appendItemHeader(b, itemContextAC, 4+len(sub)); err != nil {
		return nil, err
	}
	b = append(b, c.ID, 0, c.Result, 0)
	return append(b, sub...), nil
}

func decodeContextRQ(v []byte) (ContextRQ, error) {
	if len(v) < 4 {
		return ContextRQ{}, badPDU(AbortReasonInvalidParamValue, "presentation context item of %d bytes", len(v))
	}
	c := ContextRQ{ID: v[0]}
	seenAbstract := false
	err := walkItems(v[4:], 2, func(t byte, s []byte) error {
		switch t {
		case itemAbstractSyntax:
			if seenAbstract {
				return badPDU(AbortReasonUnexpectedParam, "presentation context %d has two abstract syntaxes", c.ID)
			}
			seenAbstract = true
			c.AbstractSyntax = trimUID(s)
		case itemTransferSyntax:
			if len(c.TransferSyntaxes) >= 256 {
				return badPDU(AbortReasonInvalidParamValue, "presentation context %d proposes more than 256 transfer syntaxes", c.ID)
			}
			c.TransferSyntaxes = append(c.TransferSyntaxes, trimUID(s))
		default:
			return badPDU(AbortReasonUnrecognizedParam, "presentation context %d has a sub-item of type 0x%02x", c.ID, t)
		}
		return nil
	})
	return c, err
}

func decodeContextAC(v []byte) (ContextAC, error) {
	if len(v) < 4 {
		return ContextAC{}, badPDU(AbortReasonInvalidParamValue, "presentation context item of %d bytes", len(v))
	}
	c := ContextAC{ID: v[0], Result: v[2]}
	seen := false
	err := walkItems(v[4:], 2, func(t byte, s []byte) error {
		if t != itemTransferSyntax {
			return badPDU(AbortReasonUnrecognizedParam, "presentation context %d has a sub-item of type 0x%02x", c.ID, t)
		}
		if seen {
			return badPDU(AbortReasonUnexpectedParam, "presentation context %d has two transfer syntaxes in an A-ASSOCIATE-AC", c.ID)
		}
		seen = true
		c.TransferSyntax = trimUID(s)
		return nil
	})
	return c, err
}

func (u *UserInfo) appendTo(b []byte) ([]byte, error) {
	var s []byte
	var err error
	s, _ = appendItemHeader(s, subMaxLength, 4)
	s = binary.BigEndian.AppendUint32(s, u.MaxPDULength)
	if u.ImplementationClassUID != "" {
		if s, err = appendStringItem(s, subImplementationClass, u.ImplementationClassUID, maxUID); err != nil {
			return nil, err
		}
	}
	if u.AsyncOps != nil {
		s, _ = appendItemHeader(s, subAsyncOps, 4)
		s = binary.BigEndian.AppendUint16(s, u.AsyncOps.Invoked)
		s = binary.BigEndian.AppendUint16(s, u.AsyncOps.Performed)
	}
	for _, r := range u.Roles {
		if s, err = appendItemHeader(s, subRoleSelection, 2+len(r.SOPClassUID)+2); err != nil {
			return nil, err
		}
		if s, err = appendUID16(s, r.SOPClassUID); err != nil {
			return nil, err
		}
		s = append(s, b2u(r.SCU), b2u(r.SCP))
	}
	if u.ImplementationVersion != "" {
		if s, err = appendStringItem(s, subImplementationVersion, u.ImplementationVersion, 16); err != nil {
			return nil, err
		}
	}
	for _, e := range u.Extended {
		if s, err = appendItemHeader(s, subExtendedNegotiation, 2+len(e.SOPClassUID)+len(e.Info)); err != nil {
			return nil, err
		}
		if s, err = appendUID16(s, e.SOPClassUID); err != nil {
			return nil, err
		}
		s = append(s, e.Info...)
	}
	for _, e := range u.CommonExtended {
		var rel []byte
		for _, r := range e.RelatedSOPClasses {
			if rel, err = appendUID16(rel, r); err != nil {
				return nil, err
			}
		}
		var v []byte
		if v, err = appendUID16(v, e.SOPClassUID); err != nil {
			return nil, err
		}
		if v, err = appendUID16(v, e.ServiceClassUID); err != nil {
			return nil, err
		}
		if len(rel) > 0xFFFF {
			return nil, fmt.Errorf("dimse: related general SOP classes of %d bytes", len(rel))
		}
		v = binary.BigEndian.AppendUint16(v, uint16(len(rel)))
		v = append(v, rel...)
		if s, err = appendItemHeader(s, subCommonExtended, len(v)); err != nil {
			return nil, err
		}
		s = append(s, v...)
	}
	if id := u.UserIdentity; id != nil {
		if len(id.Primary) > 0xFFFF || len(id.Secondary) > 0xFFFF {
			return nil, fmt.Errorf("dimse: user identity field longer than 65535 bytes")
		}
		if s, err = appendItemHeader(s, subUserIdentityRQ, 2+2+len(id.Primary)+2+len(id.Secondary)); err != nil {
			return nil, err
		}
		s = append(s, id.Type, b2u(id.PositiveResponseRequested))
		s = binary.BigEndian.AppendUint16(s, uint16(len(id.Primary)))
		s = append(s, id.Primary...)
		s = binary.BigEndian.AppendUint16(s, uint16(len(id.Secondary)))
		s = append(s, id.Secondary...)
	}
	if r := u.UserIdentityResponse; r != nil {
		if s, err = appendItemHeader(s, subUserIdentityAC, 2+len(r.ServerResponse)); err != nil {
			return nil, err
		}
		s = binary.BigEndian.AppendUint16(s, uint16(len(r.ServerResponse)))
		s = append(s, r.ServerResponse...)
	}
	if b, err = appendItemHeader(b, itemUserInfo, len(s)); err != nil {
		return nil, err
	}
	return append(b, s...), nil
}

func b2u(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// readUID16 reads a 2-byte length and a UID from v.
func readUID16(v []byte, what string) (string, []byte, error) {
	if len(v) < 2 {
		return "", nil, badPDU(AbortReasonInvalidParamValue, "%s: UID length truncated", what)
	}
	n := int(binary.BigEndian.Uint16(v))
	if n > len(v)-2 {
		return "", nil, badPDU(AbortReasonInvalidParamValue, "%s: UID length %d beyond the %d bytes left", what, n, len(v)-2)
	}
	return trimUID(v[2 : 2+n]), v[2+n:], nil
}

// maxUserInfoSubItems bounds the repeated sub-items (role selections,
// extended negotiations): one per presentation context is the most a peer
// has a use for.
const maxUserInfoSubItems = 4 * maxContexts

func decodeUserInfo(v []byte) (UserInfo, error) {
	var u UserInfo
	count := 0
	err := walkItems(v, 2, func(t byte, s []byte) error {
		count++
		if count > 3*maxUserInfoSubItems {
			return badPDU(AbortReasonInvalidParamValue, "more than %d user information sub-items", 3*maxUserInfoSubItems)
		}
		switch t {
		case subMaxLength:
			if len(s) != 4 {
				return badPDU(AbortReasonInvalidParamValue, "maximum length sub-item of %d bytes", len(s))
			}
			u.MaxPDULength = binary.BigEndian.Uint32(s)
		case subImplementationClass:
			u.ImplementationClassUID = trimUID(s)
		case subImplementationVersion:
			u.ImplementationVersion = trimAE(s)
		case subAsyncOps:
			if len(s) != 4 {
				return badPDU(AbortReasonInvalidParamValue, "asynchronous operations window sub-item of %d bytes", len(s))
			}
			u.AsyncOps = &AsyncOps{Invoked: binary.BigEndian.Uint16(s), Performed: binary.BigEndian.Uint16(s[2:])}
		case subRoleSelection:
			uid, rest, err := readUID16(s, "role selection")
			if err != nil {
				return err
			}
			if len(rest) != 2 {
				return badPDU(AbortReasonInvalidParamValue, "role selection for %q has %d role bytes", uid, len(rest))
			}
			if len(u.Roles) >= maxUserInfoSubItems {
				return badPDU(AbortReasonInvalidParamValue, "more than %d role selections", maxUserInfoSubItems)
			}
			u.Roles = append(u.Roles, RoleSelection{SOPClassUID: uid, SCU: rest[0] != 0, SCP: rest[1] != 0})
		case subExtendedNegotiation:
			uid, rest, err := readUID16(s, "extended negotiation")
			if err != nil {
				return err
			}
			if len(u.Extended) >= maxUserInfoSubItems {
				return badPDU(AbortReasonInvalidParamValue, "more than %d extended negotiations", maxUserInfoSubItems)
			}
			u.Extended = append(u.Extended, ExtendedNegotiation{SOPClassUID: uid, Info: append([]byte(nil), rest...)})
		case subCommonExtended:
			e, err := decodeCommonExtended(s)
			if err != nil {
				return err
			}
			if len(u.CommonExtended) >= maxUserInfoSubItems {
				return badPDU(AbortReasonInvalidParamValue, "more than %d common extended negotiations", maxUserInfoSubItems)
			}
			u.CommonExtended = append(u.CommonExtended, e)
		case subUserIdentityRQ:
			id, err := decodeUserIdentity(s)
			if err != nil {
				return err
			}
			u.UserIdentity = id
		case subUserIdentityAC:
			if len(s) < 2 || int(binary.BigEndian.Uint16(s)) != len(s)-2 {
				return badPDU(AbortReasonInvalidParamValue, "user identity response sub-item of %d bytes", len(s))
			}
			u.UserIdentityResponse = &UserIdentityAC{ServerResponse: append([]byte{}, s[2:]...)}
		}
		// unknown sub-items are ignored (PS3.7 D.3.3)
		return nil
	})
	return u, err
}

func decodeCommonExtended(s []byte) (CommonExtendedNegotiation, error) {
	var e CommonExtendedNegotiation
	var err error
	if e.SOPClassUID, s, err = readUID16(s, "common extended negotiation"); err != nil {
		return e, err
	}
	if e.ServiceClassUID, s, err = readUID16(s, "common extended negotiation"); err != nil {
		return e, err
	}
	if len(s) < 2 || int(binary.BigEndian.Uint16(s)) != len(s)-2 {
		return e, badPDU(AbortReasonInvalidParamValue, "common extended negotiation: related SOP class list length does not match")
	}
	s = s[2:]
	for len(s) > 0 {
		var r string
		if r, s, err = readUID16(s, "related general SOP class"); err != nil {
			return e, err
		}
		e.RelatedSOPClasses = append(e.RelatedSOPClasses, r)
	}
	return e, nil
}

func decodeUserIdentity(s []byte) (*UserIdentity, error) {
	if len(s) < 4 {
		return nil, badPDU(AbortReasonInvalidParamValue, "user identity sub-item of %d bytes", len(s))
	}
	id := &UserIdentity{Type: s[0], PositiveResponseRequested: s[1] != 0}
	n := int(binary.BigEndian.Uint16(s[2:]))
	s = s[4:]
	if n > len(s) {
		return nil, badPDU(AbortReasonInvalidParamValue, "user identity primary field length %d beyond the %d bytes left", n, len(s))
	}
	id.Primary = append([]byte{}, s[:n]...)
	s = s[n:]
	if len(s) < 2 {
		return nil, badPDU(AbortReasonInvalidParamValue, "user identity secondary field length truncated")
	}
	m := int(binary.BigEndian.Uint16(s))
	if m != len(s)-2 {
		return nil, badPDU(AbortReasonInvalidParamValue, "user identity secondary field length %d, %d bytes left", m, len(s)-2)
	}
	id.Secondary = append([]byte{}, s[2:]...)
	return id, nil
}
