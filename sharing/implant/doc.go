// Package implant is medical-device traceability on the ledger: the UDI of
// an implant (GS1 or HIBCC, parsed and checked here), its custody from the
// registrant (a distributor's or a hospital's node) through transfers to
// the hospital that implants it into a patient, and recalls. It holds the
// pure rules only: entry payloads, who may sign each at its causal position,
// and the state they add up to. No network, no clock, no storage of its
// own; node/implants is the service that uses it.
//
// # Entries and authority
//
// A device's ID is the CID of its implant.register entry. Each custody
// entry names the entry it follows (Prev), so a device's custody is a chain
// from its registration. Every entry is judged against its causal past
// only (FromView), like the ledger's own types (see sharing/ledger's doc);
// an entry signed by anyone else than the authority is rejected
// ("unauthorized") by every node:
//
//	type                  authority (at the causal position)         confers / records
//	implant.register      any member; a serialized UDI (DI + serial)  the device; its registrant is its
//	                      only once                                  first custodian
//	implant.transfer      the device's custodian, following the      custody, to the receiver (a member);
//	                      chain's tip; not while implanted           the sender's ends
//	implant.use           the custodian, following the tip, of a     the implantation, with the patient as
//	                      device never implanted, not expired at     a keyed pseudonym (Pseudonym) that
//	                      the entry's clock, covered by no recall    only the implanting node can compute
//	implant.explant       the custodian of an implanted device       the removal; never implanted again
//	implant.recall        as registrant: the registrant of a         the recall of the devices it covers
//	                      device it covers; as manufacturer: a       (Recall.Covers): as registrant its
//	                      member an admin authorized for the DI's    author's devices, as manufacturer
//	                      prefix (implant.manufacturer)              every device of the DI/lot/serial
//	implant.manufacturer  an admin, naming a member                  the right to recall as manufacturer
//	                                                                 for a GS1 company prefix or HIBCC
//	                                                                 labeler code (or its withdrawal)
//
// What a member could obtain by signing one alone: register, a device
// record in its own custody, nothing else; transfer, use and explant, only
// as the custodian, which the chain from the registration decides; recall,
// only over its own registrations unless an admin made it a manufacturer.
//
// Expiry is checked against the use entry's own clock (its hybrid logical
// clock, which must exceed its parents'), not against the local time of
// whoever validates it, so every node reaches the same verdict. A node
// also checks its own clock before it appends (node/implants).
//
// # Concurrency rules (order-independent)
//
// Custody: from the register entry, the chain is extended at each step by
// the first event in (clock, CID) order that names the current tip as its
// Prev. Honest nodes never fork a chain (each appends on its own latest
// state); two events naming the same Prev (a modified node implanting one
// device twice concurrently) are both valid at their positions, the later
// one is marked superseded and so is what follows it. Serialized UDIs: a
// registration of a DI and serial already registered in the causal past is
// invalid; concurrent ones are separate devices. Manufacturer
// authorizations: for a (peer, prefix), the latest entry in (clock, CID)
// order decides. Recalls accumulate. Every rule is a function of the set
// of valid entries and (clock, CID) order, so the state does not depend on
// arrival order.
//
// # Patients
//
// No patient identifier reaches the ledger: implant.use carries
// Pseudonym(key, device, local patient ID), an HMAC under a key local to
// the implanting node (a file in its repo, 0600), per device so that the
// ledger does not link a patient's implants. The procedure text and the
// mapping back to the local patient stay in that node's encrypted local
// store. The one free text on these entries is a recall's reason: the
// recall notice every member is meant to read; CheckReason bounds it.
//
// # UDIs
//
// Parse reads GS1 UDIs (AIs (01) GTIN-14 with its check digit, (11)
// production date, (17) expiry, (10) lot, (21) serial) in human-readable
// and machine form (FNC1/GS separated, with or without a symbology
// identifier) and HIBCC UDIs (primary, and concatenated primary/secondary
// with modulo 43 check). A malformed UDI is an error saying what is wrong;
// a wrong check digit wraps ErrCheckDigit.
package implant
