// Package ledger is medmesh's gossip ledger: a signed, hash-linked,
// append-only DAG of entries (a Merkle-CRDT) carrying membership, HPKE public
// keys, record announcements, grants, revocations, key-wrap envelopes and the
// audit trail. There is no mining and no consensus round: every node
// validates and applies entries with the same deterministic rules and
// converges to the same state whatever the arrival order.
//
// # Entries
//
// An entry is canonical CBOR (Core Deterministic Encoding; decoding rejects
// duplicate keys, indefinite lengths, tags, trailing bytes, deep nesting,
// unknown fields and any non-canonical form, by re-encoding and comparing)
// of: network ID (the genesis CID), type, author (raw Ed25519 public key),
// payload (canonical CBOR per type), parents (the heads the author had
// seen, sorted), a hybrid logical clock, and an Ed25519 signature over the
// domain-separated encoding of everything else. Each entry is a raw block
// (CIDv1, sha2-256) of at most MaxEntrySize bytes.
//
// An entry's clock must be strictly greater than each parent's, so ordering
// by (clock, CID) is a topological order of the DAG. The clock's wall time is
// not checked against local time by the rules: that check would depend on
// when an entry arrives and make nodes disagree. But a node does not apply
// an entry whose clock is more than MaxClockAhead ahead of its own: it holds
// it back, neither applied nor rejected, until its clock catches up (a later
// sync offers it again). Otherwise one entry signed a century ahead would
// carry every later entry's clock with it, and the lifetimes the rules judge
// against the clock (grant expiries, the 24 hours of an emergency grant)
// with it (ahead.go).
//
// # Validity: the causal past
//
// An entry is judged only against its causal past (its ancestors): author
// membership, roles, the grantee's current key, record ownership. The causal
// past is a function of the entry, so every node reaches the same verdict
// whenever the entry arrives. A node computes it as "everything applied
// minus the entries reachable from its heads but not from the entry's
// parents", found by a painted walk in decreasing (clock, CID) order that
// stops when only entries common to both sides are queued; its cost is the
// size of the concurrent region, not the log. An entry whose parents are far
// behind the heads makes that region the history since them: judging it
// walks that far (counted and logged with its author: Core.TakeLate), and
// the entries signed without having seen it find, after a short walk,
// whether its old parents are in their past from cached ancestry facts
// (dag.go, shortcutAfter) rather than walking down to them each. Entries
// whose parents are missing wait in a bounded buffer while the sync
// protocol fetches them.
//
// A consequence, accepted by design: an entry a removed member wrote
// concurrently with its removal (not having seen it) is valid. Its entries
// after it saw the removal are rejected, and the connection gater stops it
// from reaching members once they have seen the removal.
//
// # Authority: who may sign what, and what it confers
//
// Every entry is judged at its causal position (below). Its author must be
// a member there (the genesis aside). Beyond that, each type confers a
// right only its authority may confer; an entry signed by anyone else is
// rejected (reason "unauthorized") by every node:
//
//	type             authority (at the causal position)         confers
//	genesis          the founding admin (its own entry)         the network; the admin role
//	member.add       an admin                                   membership, org label, roles
//	member.remove    an admin                                   the end of a membership
//	key.announce     any member, for itself                     the key grants must be sealed to
//	record.announce  any member; a new version only by the       ownership of a record ID; escrow only
//	                 owner of the previous one                  to members with the emergency role
//	grant            the record's owner; purpose emergency also  the record's data key for the grantee,
//	                 an emergency authority the owner escrowed  until revoked or expired (emergency:
//	                 the key to (24 h at most)                  24 h at most); any grant 10 years at most
//	revoke           the record's owner                         the end of the grantee's grants
//	access           a grantee with a live grant it names       a read claim: the purpose it states,
//	                 (not revoked, not expired at the claim)    for one read or a batch of them
//	                                                            (reads 2..2^40, first..last read)
//	replica.receipt  "held": a member that may hold the record  standing as a replica holder (placement
//	                 (replication.Authority: within the          counts it; it may attest reads it
//	                 placement window or named by the owner,    serves); "declined" and "released" only
//	                 never a grantee); others: any member       take their author out of placement
//	replica.assign   the record's owner, naming non-grantees    the right to hold beyond the window
//	access.served    the record's owner or a holder ("held"),   an attestation of reads: the audit's
//	                 about a reader that had the grant named    source, not the reader's word
//	network.key      an admin (sharing/netkey; each envelope    the network's next pre-shared key
//	                 to a member's current key, epoch + 1)      and when nodes switch to it
//	record.erase     the owner of every version it names        the end of those versions on every
//	                 (sharing/erasure)                          honest node (the entries stay)
//
// The block filter follows the same rules: a node serves a record's blocks
// only to its owner, a grantee with a live grant, and the members that may
// hold it (replication.Authority), so what a member can receive is what
// these entries say, not what it claims.
//
// # Concurrency rules (order-independent)
//
// Membership (remove wins): peer P is a member in a set of entries iff some
// member.add of P (or the genesis, for the founding admin) has every
// member.remove of P in the set in its causal past. So a remove cancels the
// adds it saw and any add concurrent with it; an add that saw the remove
// re-admits. Roles and org come from the latest such surviving add in
// (clock, CID) order.
//
// Grants (revoke wins): a grant of (record, grantee) is current iff every
// revoke of (record, grantee) is in the grant's causal past. A revoke
// cancels grants it saw and grants concurrent with it; a grant made after
// seeing a revoke stands.
//
// Keys: a peer's current key is its key.announce latest in (clock, CID)
// order; a grant's envelope must be sealed to the grantee's current key in
// the grant's causal past. A grant may carry a label (at most 1 KiB): the
// record's name and media type sealed under its data key for the grantee
// (access.SealLabel), opaque to the ledger. Records: the first announcement of a record ID in
// (clock, CID) order owns it; an announcement of an ID already in its causal
// past is invalid. Receipts: each holder's latest receipt in (clock, CID)
// order. Named holders accumulate. Read claims and attestations accumulate.
//
// Every rule is a function of the set of valid entries and the causal
// relation between them, so the state does not depend on arrival order.
//
// # Scopes
//
// Every entry used to reach every node; at a region's scale (hundreds of
// clinics, a million reads a day) that is most of each node's disk and
// link spent on records it has nothing to do with (issue #16). A network
// whose genesis declares it (WithScopes; `medmesh network create` does)
// splits its DAG into scopes. An entry carries its scope, signed (absent =
// global, so older networks are all global):
//
//	scope            types                                  followed by
//	global           genesis, member.add/remove/org,        every node
//	                 key.announce, network.key, implant.*,
//	                 consent, consent.revoke (every type
//	                 whose TypeSpec says nothing)
//	owner/<O>        record.announce, grant, revoke,        O, O's replica group, the
//	                 replica.receipt, replica.assign,       grantees of O's records and
//	                 record.erase: rights about O's         the holders O placed or named
//	                 records                                outside the group
//	audit/<O>        access (claims), access.served         O and O's replica group;
//	                 (attestations): reads of O's records   readers and holders outside
//	                                                        it publish without following
//
// Why these: what every node needs to judge any entry — who is a member,
// with which roles and keys, the network key — is global, and small.
// Rights over one record concern its owner, whoever may read it and
// whoever holds it, so they go where those nodes are; that is most of the
// volume after reads. Reads (the bulk) matter to the owner and to whoever
// keeps the owner's audit alive if its disk fails: its replica group.
// A type's TypeSpec.Scope says which kind it is; TypeSpec.Subject names
// the record whose owner's scope an entry lives on (record.announce and
// record.erase: the author's own).
//
// Closure and causal position. An entry names the heads of the scopes it
// may depend on: a global entry the global heads; an owner/O entry the
// global heads and owner/O's; an audit/O entry those and audit/O's (a
// claim needs its grant, on owner/O). An entry naming a parent of any
// other scope is rejected ("wrong-scope"), so the global DAG is closed
// under ancestry and an entry's causal past lies in its closure: a node
// that follows a scope and the scopes of its closure (following audit/O
// implies owner/O) has every entry's causal past. Validation is unchanged
// and judged at the causal position as before, restricted to the closure:
// the view of a scoped entry sees only entries of its closure (InPast
// checks the scope), whatever else the node follows, so every follower
// reaches the same verdict. Each kind of entry must be on its scope
// (checkScope, "wrong-scope"): a global type on the global scope, an owner
// or audit type on the scope of its subject record's owner, which must be
// announced on that scope in its causal past. A forged or unauthorized
// entry is thus rejected on every scope, by the same rules (testdata/
// scopes.txt, on the fast and the slow path).
//
// A record ID re-announced on another owner's scope (a member copying
// another's record ID) is owned on that scope only: each scope's entries
// are judged on that scope's rows. The materialized state of a node that
// follows both keeps one record under the ID (the earliest); validation
// then reads that record's rows, filtered by scope, instead of it (the ID
// is marked contested, /i/rx/). What such a node's queries answer about a
// contested ID (ls, the block filter) is the earliest announcement's.
//
// Heads and state per scope. Each scope has its own heads (an entry stops
// being a head of its scope when an entry of the same scope names it):
// Heads is the global scope's, identical on every node in the same state
// whatever else each follows, and Digest is then the global state's (the
// state keys only global entries write: members, keys, global extension
// types). ScopeHeads and ScopeDigest answer for any scope; a scope's
// digest replays the closure's entries into a fresh core, the same on
// every node that follows it.
//
// Who follows what (follow.go). A node follows the global scope, its own
// owner and audit scopes, and the owner and audit scopes of every owner
// whose replica group (replication.Group: GroupSize members chosen by HRW
// of owner and peer, org-diverse) it is in; placement ranks a record's
// window within its owner's group (replication.Order), so holders and
// spares follow the scopes of the records they hold. With per-record HRW
// over all members, every node would be in some window of every owner and
// follow every scope; with groups a node follows about GroupSize owners'
// scopes (and those that granted it something). Group membership is a
// function of the membership: when it changes, a node follows its new
// groups and stops receiving the scopes it left (entries already stored
// stay until pruned). A node also follows an owner scope when an entry
// there reaches its inbox: the grant to it, the assign naming it, the
// record it may hold outside the group, the record escrowed to it (an
// emergency authority); that choice is persisted (/f/, not state). A node
// that missed the inbox delivery (offline) learns it at its next global
// sync: the answer names the owner scopes the server knows involve the
// client (syncResp.Follow: records it has a live grant on or holds). It
// leaves such a scope (unfollow.go) once it has followed it for an hour,
// caught it up, and no longer has a live grant, a held record or an escrow
// there; what it stored stays, its cost stops growing.
//
// Transport (net_scopes.go). Each scope has a GossipSub topic
// (ScopeTopicName), subscribed by its followers; each node an inbox topic
// (InboxTopicName). An entry is published on its scope's topic and to the
// inboxes of the peers it involves, and announced to each of them by a
// stream (opAnnounce; GossipSub delivers only to connected peers that it
// knows subscribe), which makes them follow the owner scope and pull it. A
// follower of a scope with no connected follower syncs it from the
// scope's owner, which its stream dials. Sync carries a scope: an offer and the
// answer cover the scope's closure, and each followed scope is caught up
// with the peers on its topic, on join and every SyncInterval. A node that
// writes to a scope it does not follow (a reader's claim on audit/O)
// publishes without subscribing and tells the owner its heads (opAnnounce),
// and the owner pulls them.
//
// # Organisations
//
// A member's organisation (a label such as "St Mary", checked by CheckOrg)
// reaches the ledger at admission. The admin sets it in member.add
// (`medmesh network invite --org`). When the admission sets none, which is
// always so for the founding admin (its admission is the genesis), the
// member states its own with a member.org entry: its daemon does so from
// its repo's configured org (`medmesh init --org`, `network create --org`).
// Authority, checked at the entry's causal position: member.org must name
// its author (a member speaks only for itself), the author must be a member
// whose organisation is unset there — neither set by its admission nor
// stated before — so a member states it once and never overrides the
// admin. Concurrent statements (a modified node) resolve to the earliest in
// (clock, CID) order. The organisation in force is the latest surviving
// admission's if it sets one, else the member's statement: an admin's
// member.add with an org always wins, one without leaves the statement.
//
// # Record classes
//
// record.announce carries a record's class in clear, so the class comes
// from a fixed set (Classes, class.go) and an announcement with any other
// value is invalid: nothing a user types reaches the ledger in clear there.
//
// # Structure
//
// The package is a state machine, a storage seam and a transport, in the
// manner of etcd raft and tailscale's tka:
//
//   - Core (core.go, outcome.go) validates entries at their causal position
//     and applies them. It does no network I/O, reads no clock and starts no goroutine:
//     Ingest(entries) returns an Outcome of plain values (per-entry
//     Results; the entries Applied, Rejected and Pending; the parents
//     Missing, to fetch). Append signs on the current heads with the time
//     it is given. The rules are TypeSpecs (spec.go, rules_*.go, org.go)
//     judged against a View (view*.go, fastpath.go) of the DAG (dag.go)
//     through a write overlay (txn.go).
//   - Store (store.go) is the core's only seam to storage: entries as raw
//     blocks, state as keys (layout.go). MemStore keeps it in memory (tests,
//     Verify's replay); DatastoreStore in the node's badger datastore and
//     blockstore. Every method reports a storage failure as an error.
//   - State (query.go) reads committed state, returning storage failures
//     and corrupt values as errors.
//   - Sync (sync.go) is pure: a node's Offer is its heads and some of their
//     ancestors; PeerLacks(offer) is what a peer lacks, oldest first;
//     WeLack(offer) is what this node lacks.
//   - Ledger (ledger.go) is what a node runs: a Core under one mutex over
//     its Store, with metrics and logs of each Outcome, the member table the
//     connection gater reads, subscriptions, and the transport (net.go):
//     GossipSub's validator and the sync protocol carry bytes and call the
//     core.
//
// testdata/*.txt are scenario scripts driving Cores in memory
// (scenario_test.go): a rule or a flow is a script readable without Go.
//
// # State
//
// The materialized view lives under /ledger in the node's datastore (see
// layout.go) and is updated in one store batch per group of at most 2,000
// applied entries, after the entries themselves are stored. Restart loads
// only heads, the clock, the count of stored entries and their bytes
// (/c/stored, written with the heads; Stat) and the member table. Digest is SHA-256 over every
// key and value of the view (/ledger/s), in key order. Verify replays the
// entries alone into a fresh Core on a MemStore and compares digests.
//
// Beside the view, indexes under /i/ (not in the digest: they are derived
// from the entries) answer by involvement: the records a member owns (each
// with its listing row), holds or was granted, and the holders of each
// owner's records (/i/oh), so `ls`, gc, health and placement read what
// concerns this node, never every record. A store written before an index
// existed gets it once, at open (upgrade.go; /c/index is the version).
//
// A storage failure is an error, never a verdict: Ingest returns it, keeps
// nothing of the uncommitted batch, and reloads heads from the store (every
// later call retries the reload first, and fails while it cannot). State's
// queries return it. The Ledger's older query methods (Record, Grants,
// Receipts, ...), which have no error result, log it, count it in
// medmesh_ledger_read_errors_total{query} and answer "none"; new code reads
// through State.
//
// # Checkpoints (checkpoint*.go, ledger_checkpoint.go)
//
// A checkpoint summarizes a scope at its heads: the heads, their highest
// clock, the number of entries behind them, the digest of the view (what
// Digest and `ledger verify` compute) and the state itself as
// content-addressed blocks: the entries' metadata (/e/), the indexes (/i/)
// and the view (/s/), in key order. A node loads it instead of replaying
// the entries behind it, then syncs the entries after it.
//
// In a network without scopes the global scope's state is every row. In a
// scoped network it is the global scope's alone (checkpoint_state.go,
// ckptRows): the metadata of global entries, the indexes they write
// (members, keys, organisations) and the view they write — the keys
// GlobalDigest hashes (members, keys, the genesis row, global extension
// types) — with the global heads. No scoped entry writes those rows and no
// global entry writes others, so two nodes in the same global state export
// the same checkpoint (the same CID) whatever owner scopes each follows,
// and an admin co-signs another's proposal; it is small (the membership,
// not the records). A joiner loads it, follows the replica groups the
// membership puts it in, and catches up those scopes by sync; a node's
// scoped entries and rows survive a load (the checkpoint covers their
// global ancestors). Verify and ScopeDigest on such a node start their
// replay from the checkpoint's state. The metadata and indexes are part of it because they
// are what later entries are judged against at their causal position: a
// straggler signed before the checkpoint and received after it gets the
// verdict it gets on a node that replayed everything
// (TestCheckpointJoinReachesFullReplayDigest). The joiner checks every
// block against its CID, the rows' order and scope, the entry count, that
// the heads are entries of the state, that the view hashes to the signed
// digest, and that the signers listed are exactly the state's admins. It
// checks each block as it fetches it (stateChecker), then stores it, and
// reads the stored blocks once more only to load the rows.
//
// Who signs, and how many: the admins, a majority of them (Quorum), as a
// chain anchored at the genesis, in the manner of tka. The first checkpoint
// must be signed by the genesis admin; each later one names the one before
// (Prev) and needs signatures from a majority of the admins that one lists
// (Signers, the admins of its state). A joiner trusts nothing but the
// genesis it was given: it verifies the chain of headers (small) and loads
// only the last one's state. Why admins: they already hold the authority
// that every other right derives from (membership, roles, the network
// key), so a checkpoint confers nothing a member did not have. A member
// that is not an admin and signs a checkpoint alone obtains nothing: no
// node counts its signature. One admin alone obtains nothing either in a
// network with two or more admins (a majority is needed); in a network
// with a single admin, that admin could hand a joiner a state it made up —
// but that admin can already admit and remove anyone and rotate the
// network key. Designated checkpointers (k of n) would need a new role
// and a rule to assign it; a majority of admins gives the same protection
// with no new authority. Full nodes that hold the state at the same heads
// reach the same digest and block CIDs (the export is deterministic), so
// a co-signer checks a proposal by computing its own: MakeCheckpoint with
// a proposal signs only if the checkpoint of its own state is the same
// one; below the quorum the result is a proposal (not stored), at the
// quorum it is trusted and stored. (Today's CLI admits only the founding
// admin, `network invite --role` offering emergency alone, so a network
// run from the CLI has one admin and a quorum of one.)
//
// An owner's or audit scope's checkpoint (checkpoint_scope.go) holds that
// scope's rows alone, at its heads and the heads of the scopes it depends
// on (Deps), and is trusted on its own (no chain): a majority of the
// owner's replica group at those global heads signs it, never the owner
// (alone it could drop or invent reads of its own records), and a group
// of one signs none. Each signer computes the state itself: a replay, into
// a fresh core, of the causal past of the checkpoint's heads and deps
// within the scope's closure (scopeDraftAt), so every member that holds
// those heads computes the same checkpoint whatever else it follows or
// received since. The group makes them as the scope grows
// (checkpoint_auto.go, Options.ScopeCheckpointEvery): its first reachable
// member proposes (any other member at twice the count, should the first
// have them off), the others co-sign over the sync protocol (opCosign).
// A member that proposes alone gets nothing stored; a non-member's or
// unsigned proposal is refused before any replay. A node that starts
// following the scope loads its state at a sync; the owner and the group
// (and a node that prunes) adopt each newer one, computing it at their
// heads and keeping it only if it is the same (adoptScopeLocally), so no
// node serves or prunes up to a state it did not compute or load from a
// trusted checkpoint. Other followers keep the entries after the one they
// loaded and answer checkpoint requests "not kept" (keepsCheckpoints): a
// replay of the owner's scope at each checkpoint would cost them what the
// owner does, not what they are involved in.
//
// Checkpoints travel on the sync protocol (checkpoint_sync.go): a node
// asks each peer it syncs with for the chain past its own, verifies it
// from the genesis, fetches the latest state's blocks and then loads it
// (a node that has nothing but the genesis, or one a peer answered
// "pruned") or keeps it (a node that has the entries: it can then serve
// it to joiners and prune up to it). After loading a scope's state, the
// ledger tells its subscribers (a TypeStateLoaded notification on
// Subscribe): the node's services derive their work from applied entries,
// and these arrived as state, so each re-reads what it needs (records to
// place, erasures, network keys, grants to index).
//
// Pruning (Ledger.Prune): a node drops the bodies of the entries the latest
// trusted checkpoint covers (and their log rows) when it does not need
// them: only the high-volume types whose effect lives in the view (claims,
// attestations, receipts, assignments, grants, revokes, announcements), and
// never those about a record the node owns: the owner keeps its records'
// audit history; nor the reads (claims, attestations) of an owner whose
// replica group the node is in: the group keeps the owner's audit alive if
// the owner's disk fails (its log's order is in the owner's backup).
// Metadata, indexes and view stay. A pruned node's Verify
// replays from the checkpoint; a peer asking it for pruned entries is told
// to join from the checkpoint.
//
// # Propagation and catch-up
//
// Entries are published on the GossipSub topic TopicName(networkID) (in a
// scoped network, the topic of their scope: "Scopes" above). The
// topic validator applies valid entries (Accept), rejects forged or invalid
// ones (Reject: the sender is penalized, nothing is forwarded) and ignores
// duplicates and entries waiting for parents. Catch-up uses SyncProtocol:
// the client sends its offer (Core.Offer: its heads, then ancestors of each
// at distances 1, 2, 4, ... 256, so a server that lacks the client's
// newest entries still finds ones it knows); the server answers with its
// heads and what the client lacks (Core.PeerLacks), oldest first, in
// bounded batches; the client applies them and repeats while the server
// has more or has heads the client lacks (Core.WeLack). Sync runs on
// connect, every SyncInterval with a random peer, and when an entry with
// unknown parents arrives. Each SyncInterval a follower of a scope also
// syncs it with a random connected follower (on the scope's topic, its
// owner, the owner's replica group: not only the topic's peers, which
// GossipSub may not list), and with the scope's owner whenever it is not
// connected to it (at once when it starts following, then each
// SyncInterval): the stream dials the owner, and the connection keeps the
// scope's topic one mesh around its owner.
//
// GossipSub gives a peer up while the two stay connected (its stream to the
// peer failed a few times); net_gossip.go notices it at either end and
// makes both GossipSubs open their streams again, without disconnecting.
//
// Synced (`medmesh ledger stat`) is true when Behind, the followed scopes
// not caught up, is empty. The global scope is caught up when no entry
// waits for missing parents and, for every connected peer, the latest sync
// with it ended with every head the peer answered with applied here (a
// (re)connected peer counts as not caught up until then); with no peer
// connected, only if the node is its network's sole member. Another scope
// is caught up when the latest sync of it with each connected peer that
// follows it (on its topic, its owner, the owner's replica group) did the
// same; the sync loop syncs a scope with every such peer it is not caught
// up with. With none of them connected, a node's own scopes are caught up
// and another owner's are not. Scopes returns the scopes a node follows
// (Followed: the global scope first).
//
// # Entry types
//
// Each type is a TypeSpec: a payload decoder, a named Validate function that
// judges the entry at its causal position (View) and a named Apply function
// (validateGrant/applyGrant, ...; rules_*.go, org.go). Builtin returns the
// table of built-in types. Nothing registers itself on import: the node
// passes the types it runs in Options.Types, the built-in ones and its own
// (node/daemon: ledger.Builtin(), dataset.Types(), implant.Types()). An
// extension type's Apply writes scoped state (Txn) that is part of the
// Digest; its Validate reads that state back with View.Ext and counts the
// rows of entries InPast, so its rules too are judged at the causal
// position (sharing/implant's custody chains are built that way).
//
// Every node of a network must run the same types, or one would reject
// what the others accept and diverge. So the choice is checked, not
// assumed: Open fails unless every built-in type is there (with the
// built-in rules); NewGenesis declares the founding node's types in the
// genesis, and Open fails on a node that lacks any of them, saying which.
// A type the node knows but the genesis does not declare is not run there:
// its entries are rejected ("unknown-type") on every node alike. A network
// founded before genesis declared its types runs each node's Options.Types.
// Adding a type to a running network needs an admin-signed entry that
// extends the declared set; none exists yet.
//
// # Concurrency
//
// A Core is not safe for concurrent use; a Ledger serializes it under one
// mutex. Queries read committed state from the Store (which is safe for
// concurrent use) or the in-memory member table, and never block on
// network I/O. Subscribers get applied entries through unbounded queues, so
// a slow consumer never stalls the ledger. The package keeps no state of
// its own (TestNoPackageLevelState): two ledgers in one process share
// nothing.
package ledger
