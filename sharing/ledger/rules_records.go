package ledger

import (
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/keywrap"
)

// Rules of the entries that announce keys and records and give or take away
// a record's key. Each is judged at the entry's causal position (View); see
// doc.go for what each type confers and who may sign it.

// validateKeyAnnounce: any member announces (or rotates) its own key; the
// author is the subject, so no one announces a key for another.
func validateKeyAnnounce(v View, e *Entry, pl any) error {
	return keywrap.ValidatePublicKey(pl.(*keyAnnounceWire).Pub)
}

func applyKeyAnnounce(a *applier, e *Entry, pl any) error {
	k := keyIdx{Pub: pl.(*keyAnnounceWire).Pub, Entry: e.cid.Bytes(), Wall: e.Clock.Wall, Counter: e.Clock.Counter}
	if err := a.putCBOR(pIdx+"k/"+e.Author.String()+"/"+e.cs, &k); err != nil {
		return err
	}
	v := a.view()
	cur, ok := v.keyState(e.Author)
	if v.err != nil {
		return v.err
	}
	if ok {
		return a.putCBOR(pState+"k/"+e.Author.String(), cur)
	}
	return nil
}

// validateRecordAnnounce: any member announces a new record ID, which it
// then owns; a new version only by the owner of the previous one. The owner
// envelope is sealed to the author's current key, escrow only to members
// with the emergency role, each to its current key.
func validateRecordAnnounce(v View, e *Entry, pl any) error {
	r := pl.(*recordWire)
	if len(r.Owner) > 0 || len(r.Entry) > 0 || r.Wall != 0 {
		return errors.New("state-only fields set")
	}
	id, err := parseCid(r.Record, "record id")
	if err != nil {
		return err
	}
	if _, err := parseCid(r.Blocklist, "blocklist"); err != nil {
		return err
	}
	if _, ok := viewRecord(v, id); ok {
		return fmt.Errorf("record %s already announced", id)
	}
	if r.Replicas == 0 || r.Replicas > 64 {
		return errors.New("replicas must be 1..64")
	}
	if err := CheckClass(r.Class); err != nil {
		return err
	}
	if err := validateVersion(v, e, r); err != nil {
		return err
	}
	var env keywrap.Envelope
	if err := env.UnmarshalBinary(r.OwnerEnvelope); err != nil {
		return fmt.Errorf("owner envelope: %w", err)
	}
	kid, ok := viewKeyID(v, e.Author)
	if !ok || kid != env.KeyID {
		return unauthorized("owner envelope is not sealed to the owner's current key")
	}
	return validateEscrow(v, r.Escrow)
}

// validateVersion: version 1 has no predecessor; a later version names one
// owned by the author, with a lower version number.
func validateVersion(v View, e *Entry, r *recordWire) error {
	if len(r.Prev) == 0 {
		if r.Version != 1 {
			return errors.New("first version must be 1")
		}
		return nil
	}
	_, prev, err := recordInView(v, r.Prev)
	if err != nil {
		return fmt.Errorf("previous version: %w", err)
	}
	if prev.Owner != e.Author {
		return unauthorized("new version of a record owned by %s", prev.Owner)
	}
	if r.Version <= prev.Version {
		return errors.New("version must grow")
	}
	return nil
}

// validateEscrow: at most MaxEscrow envelopes, each to a distinct emergency
// authority and sealed to its current key.
func validateEscrow(v View, escrow []escrowWire) error {
	if len(escrow) > MaxEscrow {
		return fmt.Errorf("at most %d escrow envelopes", MaxEscrow)
	}
	seen := map[peer.ID]bool{}
	for _, es := range escrow {
		a, err := parsePeer(es.Authority)
		if err != nil {
			return fmt.Errorf("escrow authority: %w", err)
		}
		if seen[a] {
			return fmt.Errorf("escrow authority %s named twice", a)
		}
		seen[a] = true
		if !v.HasRole(a, RoleEmergency) {
			return unauthorized("escrow for %s, who is not an emergency authority", a)
		}
		var env keywrap.Envelope
		if err := env.UnmarshalBinary(es.Envelope); err != nil {
			return fmt.Errorf("escrow envelope: %w", err)
		}
		if kid, ok := viewKeyID(v, a); !ok || kid != env.KeyID {
			return unauthorized("escrow envelope is not sealed to %s's current key", a)
		}
	}
	return nil
}

func applyRecordAnnounce(a *applier, e *Entry, pl any) error {
	r := *pl.(*recordWire)
	r.Owner, r.Entry, r.Wall = []byte(e.Author), e.cid.Bytes(), e.Clock.Wall
	id, _ := cid.Cast(r.Record)
	ri := recordIdx{Info: r, Wall: e.Clock.Wall, Counter: e.Clock.Counter}
	if err := a.putCBOR(pIdx+"r/"+id.String()+"/"+e.cs, &ri); err != nil {
		return err
	}
	if len(r.Prev) > 0 {
		prev, _ := cid.Cast(r.Prev)
		a.t.put(pIdx+"v/"+prev.String()+"/"+id.String(), nil)
	}
	if a.scoped {
		if err := a.markContested(id, e); err != nil {
			return err
		}
	}
	v := a.view()
	best, ok := v.recordState(id)
	if v.err != nil {
		return v.err
	}
	if !ok {
		return nil
	}
	if err := a.indexOwner(id, best); err != nil {
		return err
	}
	return a.putCBOR(pState+"r/"+id.String(), &best.Info)
}

// markContested marks record id contested (contestedKey) when an
// announcement of it on another scope than e's is applied here.
func (a *applier) markContested(id cid.Cid, e *Entry) error {
	rows, err := a.t.list(a.ctx, pIdx+"r/"+id.String()+"/")
	if err != nil {
		return err
	}
	for _, r := range rows {
		var ri recordIdx
		if err := decMode.Unmarshal(r.Value, &ri); err != nil {
			return err
		}
		c, err := cid.Cast(ri.Info.Entry)
		if err != nil {
			return err
		}
		n, err := a.d.get(a.ctx, c)
		if err != nil {
			return err
		}
		if n != nil && n.scope != e.Scope {
			a.t.put(contestedKey(id), nil)
			return nil
		}
	}
	return nil
}

// indexOwner keeps /i/own/<owner>/<record> on the record's owning
// announcement: a concurrent announcement of the same ID by another author
// that loses (ordered later) is not its owner's record.
func (a *applier) indexOwner(id cid.Cid, best *recordIdx) error {
	rows, err := a.t.list(a.ctx, pIdx+"r/"+id.String()+"/")
	if err != nil {
		return err
	}
	for _, r := range rows {
		var ri recordIdx
		if err := decMode.Unmarshal(r.Value, &ri); err != nil {
			return err
		}
		if string(ri.Info.Owner) != string(best.Info.Owner) {
			old := peer.ID(ri.Info.Owner)
			a.t.del(ownedKey(old, id))
			// Holders follow the record to its owner.
			hs, err := a.t.list(a.ctx, pIdx+"oh/"+old.String()+"/"+id.String()+"/")
			if err != nil {
				return err
			}
			for _, h := range hs {
				a.t.del(h.Key)
				if hp, err := peer.Decode(lastSeg(h.Key)); err == nil {
					a.t.put(ownerHeldKey(peer.ID(best.Info.Owner), id, hp), nil)
				}
			}
		}
	}
	row := ownedRowOf(&best.Info)
	return a.putCBOR(ownedKey(peer.ID(best.Info.Owner), id), &row)
}

// validateGrant: the record's owner grants its key, sealed to the
// grantee's current key, to a member; an emergency authority the owner
// escrowed the key to may grant it for 24 hours at most, with purpose
// emergency. No grant lasts more than MaxGrantLifetime.
func validateGrant(v View, e *Entry, pl any) error {
	g := pl.(*grantWire)
	_, rec, err := recordInView(v, g.Record)
	if err != nil {
		return err
	}
	grantee, err := parsePeer(g.Grantee)
	if err != nil {
		return err
	}
	if !ValidPurpose(g.Purpose) {
		return fmt.Errorf("unknown purpose %q", g.Purpose)
	}
	if len(g.Label) > MaxGrantLabel {
		return fmt.Errorf("grant label of %d bytes: at most %d", len(g.Label), MaxGrantLabel)
	}
	if g.Expires < 0 || (g.Expires != 0 && g.Expires <= int64(e.Clock.Wall)) {
		return errors.New("grant expires before it is made")
	}
	if g.Expires != 0 && g.Expires-int64(e.Clock.Wall) > MaxGrantLifetime.Milliseconds() {
		return fmt.Errorf("grant expires more than %s after it is made", MaxGrantLifetime)
	}
	if rec.Owner != e.Author {
		if err := validateEmergencyGrant(v, e, g, rec); err != nil {
			return err
		}
	}
	if !v.IsMember(grantee) {
		return unauthorized("grantee is not a member")
	}
	var env keywrap.Envelope
	if err := env.UnmarshalBinary(g.Envelope); err != nil {
		return fmt.Errorf("envelope: %w", err)
	}
	kid, ok := viewKeyID(v, grantee)
	if !ok || kid != env.KeyID {
		return unauthorized("envelope is not sealed to the grantee's current key")
	}
	return nil
}

// validateEmergencyGrant judges a grant by someone other than the owner:
// only an emergency authority the owner escrowed the key to, for purpose
// emergency and at most MaxEmergencyGrant.
func validateEmergencyGrant(v View, e *Entry, g *grantWire, rec RecordInfo) error {
	if g.Purpose != PurposeEmergency || !v.HasRole(e.Author, RoleEmergency) {
		return unauthorized("grant by non-owner")
	}
	if g.Expires == 0 || g.Expires > int64(e.Clock.Wall)+MaxEmergencyGrant.Milliseconds() {
		return fmt.Errorf("emergency grant must expire within %s", MaxEmergencyGrant)
	}
	// The owner must have opted the record into break-glass access by
	// escrowing its key to this authority.
	if _, ok := rec.EscrowFor(e.Author); !ok {
		return unauthorized("emergency grant for a record its owner did not escrow to %s", e.Author)
	}
	return nil
}

// applyGrant indexes the grant and makes it current unless a revoke of the
// same (record, grantee) that it did not see cancels it (revoke wins).
func applyGrant(a *applier, e *Entry, pl any) error {
	g := pl.(*grantWire)
	rec, _ := cid.Cast(g.Record)
	grantee, _ := peer.IDFromBytes(g.Grantee)
	pair := rec.String() + "/" + grantee.String() + "/"
	st := grantStored{Grant: *g, Grantor: []byte(e.Author), Entry: e.cid.Bytes(), Wall: e.Clock.Wall, Counter: e.Clock.Counter}
	if err := a.putCBOR(pIdx+"g/"+pair+e.cs, &st); err != nil {
		return err
	}
	a.t.put(grantedKey(grantee, rec), nil)
	revokes, err := a.t.list(a.ctx, pIdx+"rv/"+pair)
	if err != nil {
		return err
	}
	for _, r := range revokes {
		rc, err := cid.Decode(lastSeg(r.Key))
		if err != nil {
			return err
		}
		anc, err := a.d.isAncestor(a.ctx, rc, e.cid)
		if err != nil {
			return err
		}
		if !anc {
			return nil // cancelled by a revoke it did not see
		}
	}
	return a.putCBOR(pState+"g/"+pair+e.cs, &st)
}

// validateRevoke: only the record's owner revokes.
func validateRevoke(v View, e *Entry, pl any) error {
	r := pl.(*revokeWire)
	_, rec, err := recordInView(v, r.Record)
	if err != nil {
		return err
	}
	if _, err := parsePeer(r.Grantee); err != nil {
		return err
	}
	if rec.Owner != e.Author {
		return unauthorized("revoke by non-owner")
	}
	return nil
}

// applyRevoke cancels the grants of (record, grantee) that it saw and those
// concurrent with it.
func applyRevoke(a *applier, e *Entry, pl any) error {
	r := pl.(*revokeWire)
	rec, _ := cid.Cast(r.Record)
	grantee, _ := peer.IDFromBytes(r.Grantee)
	pair := rec.String() + "/" + grantee.String() + "/"
	a.t.put(pIdx+"rv/"+pair+e.cs, nil)
	grants, err := a.t.list(a.ctx, pIdx+"g/"+pair)
	if err != nil {
		return err
	}
	for _, g := range grants {
		gc, err := cid.Decode(lastSeg(g.Key))
		if err != nil {
			return err
		}
		anc, err := a.d.isAncestor(a.ctx, e.cid, gc)
		if err != nil {
			return err
		}
		if !anc {
			a.t.del(pState + "g/" + pair + gc.String())
		}
	}
	return nil
}
