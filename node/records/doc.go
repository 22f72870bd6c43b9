// Package records is the records service: adding records (streamed,
// chunked and encrypted under a fresh data key), reading them from this
// node or the network with this node's key (its own envelope, a grant, or
// an emergency escrow), versions, grants, revocation, the owner's audit,
// and the rules by which this node serves a record's blocks to its peers.
//
// The service is built by the daemon (node/daemon) from a Config of small
// interfaces: the ledger it reads and appends to, the p2p network it
// fetches and provides through, the blockstore and the node's local
// datastore, the node's key-wrapping key, the garbage collector's add
// protocol (node/gc), a clock, a logger and a metrics registry. It speaks
// no HTTP: node/httpapi's Records area maps its routes, and its errors
// carry internal/fault kinds and hints.
//
// # Reads
//
// OpenFor resolves the version the caller reads and this node's data key
// for it, fetches the manifest from one holder (which attests the read),
// indexes the record's blocks and claims the read on the ledger.
// ReadFiles then streams each file from one p2p session that yields its
// blocks in order (p2p.Node.GetBlocks), verifying and decrypting them in
// parallel (record.ReadFileStream). A read keeps no copy (p2p.NoKeep).
//
// # Serving
//
// Every block this node stores belongs to a record (the block index,
// persisted in the local datastore): Allow, the block filter of bitswap and
// the bulk protocol, serves a block only to a peer the access policy
// (sharing/access) allows for its record now. Decisions are cached per
// record and dropped by OnEntry when an entry about that record arrives.
// Served counts the blocks grantees fetched, and the attestor appends one
// access.served entry per reader, record and grant each second, so the
// owner's audit comes from the nodes that served the reads.
//
// # Keys
//
// A record's data key is wrapped (sharing/keywrap, HPKE) to the owner, to
// each grantee and, for records added with Emergency, to the network's
// emergency authorities; what each envelope is bound to is defined once in
// sharing/access (OwnerRecipient, GrantRecipient, EscrowRecipient).
package records
