// Package replication decides where a record's replicas live and when they
// move: rendezvous (HRW) placement, the rule that says which node acts,
// holder liveness, and the proof-of-storage challenge protocol.
//
// # Inputs
//
// Every decision is a function of inputs every node has the same copy of —
// the ledger's members (with their org labels), the record announcement
// (owner, wanted replica count) and each holder's latest replica.receipt —
// plus one input that is local: which peers this node currently considers
// alive. Liveness is the only place nodes can disagree, and it converges
// (a peer that is down is seen down by everyone within the grace period).
//
// # Placement order
//
// Order ranks the members for a record: the owner first, then the other
// eligible members by HRW score SHA-256(record ID || peer ID), highest
// first, with organisation diversity: a first pass takes, in score order,
// each peer whose org label is not yet represented (an empty label counts
// as an org of its own); a second pass appends the rest in score order.
// The ranking is restricted first to the owner's replica group (Group):
// the GroupSize members ranked first by an HRW score of (owner, peer),
// org-diverse first. Order ranks the group's eligible members as above,
// then every other eligible member the same way, so a record's window lies
// in its owner's group unless grants or declines exclude group members.
// Without it every member would be in the window of some record of every
// owner and would have to follow every owner's ledger scope (issue #16);
// with it a node follows the scopes of about GroupSize owners.
//
// A member is ineligible when its latest receipt for the record is
// "declined" (quota or disk full) or "released" with a reason starting with
// ReasonLost (it failed its own proof of storage). A decline lasts only
// until its author publishes another receipt (see Withdrawing a decline).
//
// # Who acts
//
// Plan computes, from the order and the alive set:
//
//   - live holders: the owner and every peer whose latest receipt is "held",
//     if alive; sorted by their position in the order.
//   - if there are at least N live holders, the first N are the targets and
//     the rest are surplus;
//   - otherwise the targets are the live holders plus the first alive,
//     eligible non-holders in order until there are N.
//
// Each node then decides only for itself: a target that does not hold the
// record fetches it and publishes "held" (or "declined" if it cannot take
// it); a surplus holder other than the owner publishes "released" and
// unpins. No node ever acts for another, and since all compute the same
// order, exactly the next-ranked candidates act: no stampede. A transient
// disagreement on liveness can make one extra node fetch; the surplus rule
// then releases the lowest-ranked extra replica.
//
// # Withdrawing a decline
//
// A decline is not permanent: quotas are raised and disks are cleaned up.
// When a record is short — fewer targets than wanted because no alive,
// eligible member is left to ask (Plan.Shortfall) — the alive members whose
// latest receipt is "declined" are ranked as Order would rank them without
// their declines (Plan.Declined), and the first Shortfall of them are asked
// again. Each decides only for itself: if it now has room it fetches the
// record and publishes "held", which replaces its decline as its latest
// receipt, so it is a holder like any other, ranked by its HRW score (and
// released as surplus by the usual rule if more holders come back). If it
// still has no room it publishes nothing: its one decline stands, and no
// node flaps between statuses. Because a higher-ranked node without room
// stays silent, each node widens the window by one for every Grace the
// shortfall has lasted as it sees it (Plan.Withdraws), so a lower-ranked
// node with room takes over. A record with its wanted replicas, or one that
// an eligible member can still take, never makes a declined node fetch.
//
// # Liveness and repair
//
// A peer is alive while it is connected, and for Grace after it was last
// seen connected (a node that just started counts every member as seen at
// start). A holder that fails a proof-of-storage challenge is treated as not
// alive for that record by the challenger once it has been failing for
// Grace. A holder that is asked to prove blocks of a record it pins and
// finds them missing publishes "released" with reason "lost: ..." and
// unpins, so every node sees it leave at once and the next-ranked candidate
// repairs.
//
// # Proof of storage
//
// The challenger (a node that itself holds the record: only it can check
// the answer) picks a few random blocks of the record's block list and a
// random 32-byte nonce, and sends them over ChallengeProtocol. The holder
// answers SHA-256(nonce || block) for each, so it must have the bytes at
// the time of the challenge. Requests and answers are small CBOR messages
// with bounded sizes; malformed input is rejected without panicking.
package replication
