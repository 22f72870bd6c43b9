// Package auditlog is an owner's Certificate-Transparency style log of the
// audit entries it accepted for its records: the readers' claims (access)
// and the serving nodes' attestations (access.served). The owner can prove
// to an auditor that an entry is in its log (an inclusion proof) and that
// its log only grew between two tree heads (a consistency proof), and the
// auditor checks both offline (Verify), with nothing but the proof file and
// the owner's peer ID.
//
// Hashing is RFC 6962/9162's: a leaf is SHA-256(0x00 || data), an interior
// node SHA-256(0x01 || left || right); the tree math is
// golang.org/x/mod/sumdb/tlog's, checked against the RFC 6962 reference
// vectors (vectors_test.go). A leaf's data is the ledger entry itself (its
// signed canonical CBOR, the block whose CID names it), so a proof carries
// the entry and the auditor also checks its author's signature and that it
// is about the record the proof names.
//
// One log per owner, not per record: an auditor follows one sequence of
// signed tree heads per clinic, so an owner cannot show different auditors
// different histories of one record by keeping a log per record (a fork
// shows in the owner's one consistency chain), tree heads and their
// signatures do not multiply with records, and a record's entries are still
// found directly (an index by record). What a per-record log would have
// given, every entry of one record under one head, `audit prove RECORD`
// gives: the inclusion proofs of all of them against one tree head.
//
// Storage is the node's badger datastore (Log over a datastore.Batching):
// tlog's stored hashes (about two per leaf) under /h, the leaves' data
// under /l, an index by entry (/e) and by record (/r), the size (/size) and
// the signed tree heads by size (/sth). An append is one atomic batch; the
// log holds nothing in memory but its size, and every proof reads only the
// O(log n) hashes it needs.
//
// Tree heads are C2SP signed notes (golang.org/x/mod/sumdb/note; the
// checkpoint text: origin "medmesh-audit/<owner>", size, base64 root, and
// a "time" extension line) signed with the owner node's Ed25519 identity,
// so the peer ID alone verifies them.
package auditlog
