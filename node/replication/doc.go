// Package replication is a node's replication manager: it keeps every
// record on the number of holders its owner wanted, as this node's share of
// that work.
//
// The rules (where replicas live, who acts, holder liveness, the
// proof-of-storage protocol) are pure functions in sharing/replication,
// imported here as rules. This package applies them to a running node: it
// plans the records ledger entries are about, fetches and pins the replicas
// this node is placed to hold and publishes receipts (held, declined,
// released), withdraws a decline when a record stays short of replicas, names
// holders beyond the placement window when this node owns a record nobody in
// it can take, gives up replicas of records this node was granted, challenges
// the other holders of what it holds and answers their challenges, and
// re-announces held blocks on the DHT.
//
// # Work follows involvement
//
// The manager's loop plans a record when an entry about it arrives; every
// record it knows once, at start; when a member joins, leaves, changes org
// or its liveness changes, the records this node is involved in (owns,
// pins, fetches, declined, or may hold) and the records that member holds
// (the ledger's holder index); every Interval the involved records short
// of replicas or with a holder failing its proofs of storage; and the
// involved records in a slow sweep started every SweepInterval and spread
// over Intervals, SweepBatch records each. Proofs of storage challenge a
// random sample of the held records each round (ChallengeRecords), every
// one after a failed challenge. With nothing changing a node does no
// per-record work for records it is not involved in, and a bounded amount
// per Interval for those it is, however many; a change costs what it can
// move (issue #16).
//
// # Seams
//
// The manager sees the rest of the node through small interfaces its Config
// declares: Ledger (reads and appends), Network (fetch, provide, dial),
// a libp2p host (the challenge protocol and connectedness), Blocks (the
// blockstore), Records (the records service's block index and the records
// this node owns) and a Pinset (the replicas it pins and the records in
// flight, which gc reads too). No HTTP here: node/httpapi's Replication area
// serves Status and Reprovide, and errors are internal/fault kinds.
package replication
