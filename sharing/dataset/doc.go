// Package dataset holds the rules of medmesh research datasets: the consent
// ledger entry types, their deterministic evaluation, the encoding of a
// dataset manifest, and study selection by scope.
//
// # Consent
//
// A clinic (the owner of a patient's records) writes a "consent" entry on
// the patient's behalf. The patient is named by a keyed pseudonym,
// HMAC-SHA256 under the clinic's own secret pseudonym key (ConsentPseudonym),
// never by the raw patient ID. The key is the clinic's and not the
// network's: every member reads the ledger, so a network-wide key would let
// any member (a researcher included) test candidate patient IDs against the
// pseudonyms on the ledger. Only the clinic that owns the studies needs to
// compute the pseudonym, since only it can de-identify them; consents of two
// clinics for the same person are therefore unlinkable, which is intended.
//
// A consent carries a purpose (research, treatment, ...), an optional scope
// (modality, body part; empty means any) and an optional expiry. A
// "consent.revoke" entry by the same author of (patient, purpose) cancels
// that author's consents of (patient, purpose) it saw, and those concurrent
// with it (revoke wins); a consent written after seeing the revoke stands.
// A revoke only ever concerns its author's own consents, so only a
// consent's author can revoke it.
//
// Validate checks only the payload and the author's membership (the ledger
// checks membership from the View of the causal past), so every node gives
// the same verdict. Evaluation of what is current (Current) depends only on
// the set of entries and their causal relation; expiry is checked by the
// reader against its clock, like grants.
//
// # Dataset manifests
//
// A dataset is a record of Kind "dataset" whose single file "dataset.cbor"
// is a Manifest in canonical CBOR (Decode rejects any other encoding). It
// carries the name, version, de-identification profile and options, and per
// study: the study record, pseudonymous patient, remapped UIDs, modality,
// body part, instance counts and sizes. It never carries an identifying
// value: the publisher fills it only from de-identified outputs.
package dataset
