// Package membership is the membership service: who is in the network and
// how a node gets in and out. It lists the members with what this node
// knows of each (admission time, connection, last seen, addresses), admits
// peers by invitation, and states this node's own key-wrapping key
// (key.announce) and organisation (member.org) on the ledger once it is a
// member. When a member is removed it closes that member's connections at
// once (the connection gater, which reads the ledger's member table,
// refuses new ones).
//
// The service is built by the daemon (node/daemon) from a Config of small
// interfaces (the ledger, the p2p network, the repo, the local datastore)
// and speaks no HTTP: node/httpapi's Members area maps its routes, and its
// errors carry internal/fault kinds and hints.
package membership
