package main

import (
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// checkRecord refuses what is not a record ID before any daemon is asked,
// so a typo is invalid input (exit 2) whether or not a daemon runs.
func checkRecord(s string) error {
	if _, err := cid.Decode(s); err != nil {
		return invalidf("record IDs look like bafkrei…; `medmesh ls` lists them", "%q is not a record ID", s)
	}
	return nil
}

// checkPeer refuses what is not a peer ID (flag names the flag).
func checkPeer(flag, s string) error {
	if _, err := peer.Decode(s); err != nil {
		return invalidf("peer IDs look like 12D3KooW…; a node prints its own with `medmesh id`", "%s %q is not a peer ID", flag, s)
	}
	return nil
}
