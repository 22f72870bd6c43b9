// Package p2p is medmesh's private libp2p network layer: the host, the
// private Kademlia DHT, bitswap over the node's blockstore, GossipSub, and a
// block fetcher that does not stall: GetMany hands blocks over as they
// arrive, GetBlocks yields them in the order asked (a file read), and
// GetFrom asks one holder at a time (a record's manifest).
//
// # Security model
//
// Three independent gates stand between a stranger and a clinic's blocks:
//
//  1. Pre-shared key (pnet). Every TCP connection is wrapped in the network's
//     32-byte PSK before anything else is spoken; a peer without it cannot
//     even complete the Noise handshake. This is why the host runs TCP only:
//     QUIC cannot carry a PSK.
//  2. Member gater. A connmgr.ConnectionGater admits only peers for which
//     Membership.IsMember is true, both when dialing (InterceptPeerDial) and
//     once the remote's identity is authenticated by Noise
//     (InterceptSecured). Leaking the PSK therefore does not admit a
//     non-member. MembershipChanged closes connections to removed members;
//     the DHT routing table, DHT queries and GossipSub apply the same filter.
//  3. Block filter. Bitswap serves a block only when Config.BlockFilter
//     (the access policy: grants and replica placement) says the requesting
//     peer may have it; refusals are counted in
//     medmesh_bitswap_refused_blocks_total. Blocks are ciphertext anyway, so
//     this limits metadata leakage (sizes, which CIDs exist) and load.
//
// The DHT speaks only under the protocol prefix "/medmesh/<network-id>", has
// no default bootstrap peers and carries provider records only, so a node
// never joins the public IPFS DHT. Every block returned by Node.Get and
// Node.GetMany is re-hashed against its CID.
package p2p
