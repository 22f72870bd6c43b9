// Package implants is the implant traceability service of a node: it
// registers devices by their UDI, transfers them between members,
// implants them into local patients, explants them, recalls them and
// reports recalls, over the rules of sharing/implant.
//
// Patients never reach the ledger. An implantation's entry carries a keyed
// pseudonym (sharing/implant.Pseudonym) under a key derived from the
// repo's KeyFile (32 random bytes, 0600); the local patient ID and the
// procedure text stay in this node's local store, sealed with AES-256-GCM
// under another key derived from it, bound to the device. Only this node
// resolves a pseudonym it created back to its patient (it recomputes the
// pseudonym from its local record and compares): other nodes see the
// device, its custody and its recalls, never the patient.
//
// The service checks each entry against the ledger's current state with
// the same rules every node runs at the entry's causal position, so a
// refusal comes back typed (internal/fault: Forbidden for a non-custodian,
// Conflict for a device implanted twice, expired or recalled, Invalid for
// a malformed UDI) before anything is published. It has no HTTP of its
// own: node/httpapi (implants.go) and node/fhir serve it.
package implants
