package ledger

import (
	"errors"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/replication"
)

// Rules of the entries about who holds and who read a record. Each is
// judged at the entry's causal position (View); see doc.go for what each
// type confers and who may sign it.

// maxServedCount bounds the counts one attestation may carry.
const maxServedCount = 1 << 40

// grantInView returns the grant entry g of record rec to grantee as v sees
// it.
func grantInView(v View, rec cid.Cid, grantee peer.ID, g cid.Cid) (GrantAt, bool) {
	if cv, ok := v.(*causalView); ok && cv.curRec(rec) {
		return cv.curGrant(rec, grantee, g)
	}
	for _, ga := range v.GrantsOf(rec) {
		if ga.Entry == g && ga.Grantee == grantee {
			return ga, true
		}
	}
	return GrantAt{}, false
}

// validateAccess: a reader's claim. Its author must hold a live grant (not
// revoked in the view, not expired at the claim's clock) on the record,
// and name it.
func validateAccess(v View, e *Entry, pl any) error {
	ac := pl.(*accessWire)
	id, rec, err := recordInView(v, ac.Record)
	if err != nil {
		return err
	}
	if !ValidPurpose(ac.Purpose) {
		return fmt.Errorf("unknown purpose %q", ac.Purpose)
	}
	if ac.Version != rec.Version {
		return fmt.Errorf("version %d is not the record's (%d)", ac.Version, rec.Version)
	}
	if rec.Owner == e.Author {
		return errors.New("an owner does not claim reads of its own record")
	}
	if ac.Reads != 0 || ac.Last != 0 {
		// A batch: 2 or more reads (one read has one encoding: without
		// them), the last after the first and not after the claim.
		if ac.Reads < 2 || ac.Reads > maxServedCount || ac.Last < ac.Time || ac.Last > int64(e.Clock.Wall)+ClockSkew.Milliseconds() {
			return errors.New("a claim of several reads counts 2 to 2^40 of them, the last between the first and the claim")
		}
	}
	gc, err := parseCid(ac.Grant, "grant")
	if err != nil {
		return unauthorized("a read claim must name the grant it was made under: %v", err)
	}
	g, ok := grantInView(v, id, e.Author, gc)
	if !ok {
		return unauthorized("%s names no grant of %s to it", e.Author, id)
	}
	at := time.UnixMilli(int64(e.Clock.Wall))
	if !g.Current || !g.LiveAt(at) {
		return unauthorized("the grant %s is revoked or expired at the claim", gc)
	}
	return nil
}

func applyAccess(a *applier, e *Entry, pl any) error {
	ac := pl.(*accessWire)
	rec, _ := cid.Cast(ac.Record)
	// A new key per entry that no apply reads back.
	a.t.putBlind(pState+"a/"+rec.String()+"/"+clockKeyS(e.Clock, e.cs), encodeAccessStored(e))
	return nil
}

// validateReceipt: a holder's statement about a record. "held" confers the
// standing of a replica holder (others' placement counts it, and it may
// attest reads it serves), so only a member that may hold the record
// (replication.Authority: within the placement window, or named by the
// owner, and never a grantee) may say it. "declined" and "released" only
// take their author out of placement.
func validateReceipt(v View, e *Entry, pl any) error {
	r := pl.(*receiptWire)
	_, rec, err := recordInView(v, r.Record)
	if err != nil {
		return err
	}
	switch r.Status {
	case replication.StatusHeld, replication.StatusDeclined, replication.StatusReleased:
	default:
		return fmt.Errorf("unknown receipt status %q", r.Status)
	}
	if len(r.Reason) > 256 {
		return errors.New("reason too long")
	}
	if rec.Owner == e.Author {
		return errors.New("an owner publishes no receipts for its own record")
	}
	if r.Status == replication.StatusHeld && !HoldAuthority(v, rec).MayHold(e.Author) {
		return unauthorized("%s may not hold record %s: it is outside the placement window, not named by the owner, or a grantee", e.Author, rec.ID)
	}
	return nil
}

func applyReceipt(a *applier, e *Entry, pl any) error {
	r := pl.(*receiptWire)
	rec, _ := cid.Cast(r.Record)
	st := receiptStored{Receipt: *r, Holder: []byte(e.Author), Entry: e.cid.Bytes(), Wall: e.Clock.Wall, Counter: e.Clock.Counter}
	if err := a.putCBOR(pIdx+"rc/"+rec.String()+"/"+e.Author.String()+"/"+e.cs, &st); err != nil {
		return err
	}
	k := pState + "rc/" + rec.String() + "/" + e.Author.String()
	old, ok, err := a.t.get(a.ctx, k)
	if err != nil {
		return err
	}
	if ok {
		var o receiptStored
		if err := decMode.Unmarshal(old, &o); err != nil {
			return err
		}
		oc, err := cid.Cast(o.Entry)
		if err != nil {
			return err
		}
		if before(e.Clock, e.cid, HLC{o.Wall, o.Counter}, oc) {
			return nil // an entry later in (clock, CID) order already decided
		}
	}
	v := a.view()
	info, known := v.curRecordShared(rec)
	if v.err != nil {
		return v.err
	}
	if r.Status == replication.StatusHeld {
		a.t.put(heldKey(e.Author, rec), nil)
		if known {
			a.t.put(ownerHeldKey(info.Owner, rec, e.Author), nil)
		}
	} else {
		a.t.del(heldKey(e.Author, rec))
		if known {
			a.t.del(ownerHeldKey(info.Owner, rec, e.Author))
		}
	}
	return a.putCBOR(k, &st)
}

// MaxAssign bounds the holders one replica.assign names.
const MaxAssign = 16

// validateAssign: only the owner names holders; it may name members that
// never had a grant on the record.
func validateAssign(v View, e *Entry, pl any) error {
	w := pl.(*assignWire)
	id, rec, err := recordInView(v, w.Record)
	if err != nil {
		return err
	}
	if rec.Owner != e.Author {
		return unauthorized("only the owner names holders of record %s", id)
	}
	if len(w.Holders) == 0 || len(w.Holders) > MaxAssign {
		return fmt.Errorf("name 1 to %d holders", MaxAssign)
	}
	granted := map[peer.ID]bool{}
	for _, g := range v.GrantsOf(id) {
		granted[g.Grantee] = true
	}
	var prev string
	for _, b := range w.Holders {
		p, err := parsePeer(b)
		if err != nil {
			return err
		}
		if string(b) <= prev {
			return errors.New("holders must be sorted and unique")
		}
		prev = string(b)
		if p == rec.Owner || !v.IsMember(p) {
			return fmt.Errorf("%s is the owner or not a member", p)
		}
		if granted[p] {
			return fmt.Errorf("%s has a grant on the record and cannot hold it", p)
		}
	}
	return nil
}

func applyAssign(a *applier, e *Entry, pl any) error {
	w := pl.(*assignWire)
	rec, _ := cid.Cast(w.Record)
	if err := a.putCBOR(pIdx+"as/"+rec.String()+"/"+e.cs, w); err != nil {
		return err
	}
	for _, b := range w.Holders {
		p, _ := peer.IDFromBytes(b)
		a.t.put(pState+"as/"+rec.String()+"/"+p.String(), nil)
	}
	return nil
}

// validateServed: an attestation of reads. Its author must be the record's
// owner or a holder (latest receipt "held"), and the reader must have had
// the grant it names; the reads fall between the grant and the entry.
func validateServed(v View, e *Entry, pl any) error {
	w := pl.(*servedWire)
	id, rec, err := recordInView(v, w.Record)
	if err != nil {
		return err
	}
	reader, err := parsePeer(w.Reader)
	if err != nil {
		return err
	}
	if reader == e.Author {
		return errors.New("a node does not attest serving itself")
	}
	if rec.Owner != e.Author {
		held := false
		for _, r := range v.Receipts(id) {
			held = held || (r.Holder == e.Author && r.Status == replication.StatusHeld)
		}
		if !held {
			return unauthorized("%s neither owns nor holds record %s", e.Author, id)
		}
	}
	gc, err := parseCid(w.Grant, "grant")
	if err != nil {
		return err
	}
	g, ok := grantInView(v, id, reader, gc)
	if !ok {
		return unauthorized("reader %s had no grant %s on %s", reader, gc, id)
	}
	if w.Reads+w.Blocks == 0 || w.Reads > maxServedCount || w.Blocks > maxServedCount {
		return errors.New("an attestation counts at least one and at most 2^40 fetches")
	}
	skew := ClockSkew.Milliseconds()
	if w.First <= 0 || w.First > w.Last || w.Last > int64(e.Clock.Wall)+skew || w.First < g.Time.UnixMilli()-skew {
		return errors.New("attested reads must fall between the grant and the attestation")
	}
	return nil
}

func applyServed(a *applier, e *Entry, pl any) error {
	w := pl.(*servedWire)
	rec, _ := cid.Cast(w.Record)
	return a.putCBOR(pState+"sv/"+rec.String()+"/"+clockKeyS(e.Clock, e.cs), &servedStored{Served: *w, Server: []byte(e.Author), Entry: e.cid.Bytes()})
}

// RecordOf returns the record a built-in entry is about (record.announce,
// grant, revoke, access, replica.receipt, replica.assign, access.served),
// so a subscriber can react to one record instead of all.
func RecordOf(e *Entry) (cid.Cid, bool) {
	var w any
	switch e.Type {
	case TypeRecordAnnounce:
		w = new(recordWire)
	case TypeGrant:
		w = new(grantWire)
	case TypeRevoke:
		w = new(revokeWire)
	case TypeAccess:
		w = new(accessWire)
	case TypeReceipt:
		w = new(receiptWire)
	case TypeAssign:
		w = new(assignWire)
	case TypeServed:
		w = new(servedWire)
	default:
		return cid.Undef, false
	}
	if decMode.Unmarshal(e.Payload, w) != nil {
		return cid.Undef, false
	}
	var rec []byte
	switch w := w.(type) {
	case *recordWire:
		rec = w.Record
	case *grantWire:
		rec = w.Record
	case *revokeWire:
		rec = w.Record
	case *accessWire:
		rec = w.Record
	case *receiptWire:
		rec = w.Record
	case *assignWire:
		rec = w.Record
	case *servedWire:
		rec = w.Record
	}
	c, err := cid.Cast(rec)
	return c, err == nil
}
