package ledger

import (
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// What a subscriber (Subscribe) learns from an applied entry without
// querying state: the facts of the entries about sharing and reading a
// record, decoded from their payloads. Each returns ok false for an entry
// of another type or a payload that does not decode (an applied entry's
// always does).

// GrantOf returns the grant a grant entry makes. Its Time is the entry's
// clock; it says nothing of whether a revoke has since cancelled it.
func GrantOf(e *Entry) (Grant, bool) {
	if e.Type != TypeGrant {
		return Grant{}, false
	}
	var w grantWire
	if decMode.Unmarshal(e.Payload, &w) != nil {
		return Grant{}, false
	}
	g, err := grantStored{Grant: w, Grantor: []byte(e.Author), Entry: e.CID().Bytes(), Wall: e.Clock.Wall, Counter: e.Clock.Counter}.public()
	return g, err == nil
}

// RevokeOf returns the (record, grantee) a revoke entry cancels the
// grants of.
func RevokeOf(e *Entry) (RevokePayload, bool) {
	if e.Type != TypeRevoke {
		return RevokePayload{}, false
	}
	var w revokeWire
	if decMode.Unmarshal(e.Payload, &w) != nil {
		return RevokePayload{}, false
	}
	rec, err1 := cid.Cast(w.Record)
	grantee, err2 := peer.IDFromBytes(w.Grantee)
	if err1 != nil || err2 != nil {
		return RevokePayload{}, false
	}
	return RevokePayload{Record: rec, Grantee: grantee}, true
}

// AccessOf returns the read claim an access entry makes (its author is
// the reader).
func AccessOf(e *Entry) (AccessEvent, bool) {
	if e.Type != TypeAccess {
		return AccessEvent{}, false
	}
	var w accessWire
	if decMode.Unmarshal(e.Payload, &w) != nil {
		return AccessEvent{}, false
	}
	rec, err := cid.Cast(w.Record)
	if err != nil {
		return AccessEvent{}, false
	}
	return w.event(rec, e.Author, e.CID()), true
}

// ServedOf returns the attestation an access.served entry makes (its
// author is the node that served the reads).
func ServedOf(e *Entry) (Served, bool) {
	if e.Type != TypeServed {
		return Served{}, false
	}
	var w servedWire
	if decMode.Unmarshal(e.Payload, &w) != nil {
		return Served{}, false
	}
	rec, err1 := cid.Cast(w.Record)
	reader, err2 := peer.IDFromBytes(w.Reader)
	grant, err3 := cid.Cast(w.Grant)
	if err1 != nil || err2 != nil || err3 != nil {
		return Served{}, false
	}
	return Served{Record: rec, Reader: reader, Server: e.Author, Grant: grant, Reads: w.Reads, Blocks: w.Blocks,
		First: msTime(w.First), Last: msTime(w.Last), Entry: e.CID()}, true
}
