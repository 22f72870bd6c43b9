package ledger

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// A member's organisation ("St Mary", "Regional Imaging") is what
// replication spreads replicas across and what member lists show. It
// reaches the ledger at admission: the admin sets it in member.add
// (`network invite --org`); when the admission set none — always the case
// for the founding admin, whose admission is the genesis — the member states
// its own, once, with member.org (the daemon does it from its repo's
// configured org). See doc.go, "Organisations".

// TypeMemberOrg is a member's statement of its own organisation.
const TypeMemberOrg = "member.org"

// MaxOrgLen bounds an organisation label, in bytes.
const MaxOrgLen = 64

// MemberOrgPayload states the author's organisation. Peer must be the
// author: a member speaks only for itself.
type MemberOrgPayload struct {
	Peer peer.ID
	Org  string
}

type memberOrgWire struct {
	Peer []byte `cbor:"1,keyasint"`
	Org  string `cbor:"2,keyasint"`
}

func (p MemberOrgPayload) wirePayload() (any, error) {
	return &memberOrgWire{Peer: []byte(p.Peer), Org: p.Org}, nil
}

// orgIdx indexes a member.org entry under /i/o/<peer>/<entry>.
type orgIdx struct {
	Org     string `cbor:"1,keyasint"`
	Entry   []byte `cbor:"2,keyasint"`
	Wall    uint64 `cbor:"3,keyasint"`
	Counter uint32 `cbor:"4,keyasint"`
}

// CheckOrg validates an organisation label: 1 to MaxOrgLen bytes of
// letters, digits, spaces and . , & ' ( ) - / _, not starting or ending with
// a space. It is a label for a clinic, shown to every member; the limits
// keep it one.
func CheckOrg(org string) error { return checkLabel("organisation", org, MaxOrgLen) }

// CheckNetworkName validates a network's name (the genesis carries it in
// clear, and every invite token): the same characters as an organisation,
// at most 128 bytes.
func CheckNetworkName(name string) error { return checkLabel("network name", name, 128) }

func checkLabel(what, s string, max int) error {
	if s == "" || len(s) > max || !utf8.ValidString(s) {
		return fmt.Errorf("%s %q: want 1 to %d bytes", what, s, max)
	}
	if strings.TrimSpace(s) != s {
		return fmt.Errorf("%s %q starts or ends with a space", what, s)
	}
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune(" .,&'()-/_", r) {
			return fmt.Errorf("%s %q: %q is not allowed (letters, digits, spaces and . , & ' ( ) - / _)", what, s, r)
		}
	}
	return nil
}

// memberOrgIn returns p's organisation in v ("" if none is set) and whether
// p is a member there.
func memberOrgIn(v View, p peer.ID) (string, bool, error) {
	cv, ok := v.(*causalView)
	if !ok {
		return "", false, errors.New("member.org: validation needs the ledger's own view")
	}
	var m *memberIdx
	if cv.cur {
		m, ok = cv.curMember(p)
	} else {
		m, ok = cv.memberState(p)
	}
	if !ok {
		return "", false, nil
	}
	return m.Org, true, nil
}

// declaredOrg returns the organisation p stated with member.org in the
// view: the earliest such entry in (clock, CID) order, so that concurrent
// statements (which only a modified node makes) resolve the same way on
// every node. "" if none.
func (v *causalView) declaredOrg(p peer.ID) string {
	rows, err := v.t.list(v.ctx, pIdx+"o/"+p.String()+"/")
	if err != nil {
		v.fail(err)
		return ""
	}
	var best *orgIdx
	var bestCid cid.Cid
	for _, r := range rows {
		var o orgIdx
		if err := decMode.Unmarshal(r.Value, &o); err != nil {
			v.fail(err)
			return ""
		}
		c, err := cid.Cast(o.Entry)
		if err != nil {
			v.fail(err)
			return ""
		}
		if !v.InPast(c) {
			continue
		}
		if best == nil || before(HLC{o.Wall, o.Counter}, c, HLC{best.Wall, best.Counter}, bestCid) {
			oo := o
			best, bestCid = &oo, c
		}
	}
	if best == nil {
		return ""
	}
	return best.Org
}

// validateMemberOrg: a member states its own organisation, once, and only
// when its admission set none.
func validateMemberOrg(v View, e *Entry, pl any) error {
	o := pl.(*memberOrgWire)
	p, err := parsePeer(o.Peer)
	if err != nil {
		return err
	}
	if p != e.Author {
		return unauthorized("member.org by %s names %s: a member states only its own organisation", e.Author, p)
	}
	if err := CheckOrg(o.Org); err != nil {
		return err
	}
	org, member, err := memberOrgIn(v, p)
	if err != nil {
		return err
	}
	if !member {
		return unauthorized("member.org by non-member %s", p)
	}
	if org != "" {
		return unauthorized("%s's organisation is already %q (set by its admission or stated before); only the admin changes it, with member.add", p, org)
	}
	return nil
}

func applyMemberOrg(a *applier, e *Entry, pl any) error {
	o := pl.(*memberOrgWire)
	idx := orgIdx{Org: o.Org, Entry: e.cid.Bytes(), Wall: e.Clock.Wall, Counter: e.Clock.Counter}
	if err := a.putCBOR(pIdx+"o/"+e.Author.String()+"/"+e.cs, &idx); err != nil {
		return err
	}
	return a.recomputeMember(e.Author)
}
