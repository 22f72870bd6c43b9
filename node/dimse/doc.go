// Package dimse is medmesh's DICOM network layer: the PS3.8 upper layer
// (PDUs, association negotiation, the state machine) and the PS3.7 DIMSE
// C-services (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET, C-CANCEL), as a
// Server (SCP) with handler interfaces and a Client (SCU). It knows nothing
// of the node: the daemon implements the handlers over its encrypted
// storage and index.
//
// # Layers
//
//   - pdu.go, items.go: the seven PDU types and the A-ASSOCIATE items and
//     user information sub-items (maximum length, implementation class and
//     version, asynchronous operations window, SCP/SCU role selection, SOP
//     class extended and common extended negotiation, user identity). Pure
//     encode/decode; decoders never panic and check every length against
//     the bytes that exist.
//   - fsm.go: the upper layer state machine (PS3.8 Table 9-10) as data:
//     states Sta1..Sta13, events Evt1..Evt19, actions. assoc.go feeds it
//     every event and performs the action; an event without an entry is an
//     error, not ignored.
//   - assoc.go: one association's provider. A reader goroutine reads PDUs
//     (refusing a length beyond its bound before allocating), drives the
//     state machine, and enforces ARTIM (awaiting the A-ASSOCIATE-RQ, and
//     the transport close after a reject, release or abort), the idle
//     timeout between messages and the DIMSE timeout inside one.
//     assemble.go turns PDVs into DIMSE messages; send.go fragments
//     outgoing messages to the peer's maximum PDU length.
//   - command.go: command sets (group 0000, Implicit VR Little Endian),
//     strict: ascending tags, exact value lengths, required fields per
//     message type.
//   - dataset.go: identifiers (C-FIND/C-MOVE/C-GET data sets), checked by
//     a bounded walker, then read and written with
//     github.com/suyashkumar/dicom.
//   - server.go, serverassoc.go, retrieve.go: the SCP. client.go,
//     clientquery.go: the SCU. part10.go: File Meta Information.
//
// # Memory
//
// Everything a peer sends is bounded before it is held: a PDU by the
// maximum length we advertised (DefaultMaxPDULength, at most
// MaxPDULength), association PDUs by 1 MiB, a command set by 64 KiB, an
// identifier by 4 MiB. C-STORE data sets are never held: the reader
// goroutine writes each data PDV into a synchronous pipe that the store
// handler reads (one copy, no buffering), so an association holds one PDU
// buffer, one send buffer and a bufio reader whatever the instance size.
// Backpressure is TCP's: a slow handler slows the sender. Established
// associations are capped (MaxAssociations, A-ASSOCIATE-RJ "local limit
// exceeded" beyond), and so are connections still negotiating.
//
// # Negotiation (SCP)
//
//   - The called AE title must be the server's and the caller must match
//     an allowed "AE@host" entry (host: address, CIDR prefix, name, or *);
//     otherwise A-ASSOCIATE-RJ (permanent, service-user) with "called AE
//     title not recognized" or "calling AE title not recognized".
//   - Verification is always offered; storage, query and retrieve SOP
//     classes when their handler is set. Every storage SOP class of the
//     standard is accepted (the 1.2.840.10008.5.1.4.1.1 arc and the few
//     outside it, see IsStorageSOPClass), and vendors' private SOP classes
//     unless RejectPrivateSOPClasses.
//   - Transfer syntax: storage contexts take the first standard transfer
//     syntax the requestor proposed, so that an instance is stored as it
//     was sent and nobody transcodes (a modality that holds JPEG Lossless
//     and proposes it first sends it so); the retired Explicit VR Big
//     Endian only when nothing else is offered. Contexts whose data sets
//     we decode take Explicit or Implicit VR Little Endian (Big Endian as
//     a last resort).
//   - C-GET: a storage context for which the requestor proposed the SCP
//     role (role selection) is accepted with that role, and C-GET sends
//     its instances on it. The asynchronous operations window is answered
//     1/1: one operation at a time. Extended negotiation is parsed and not
//     answered (no relational queries, PS3.7 D.3.3.5: not answering means
//     not supported). User identity is parsed and handed to handlers,
//     unverified, and not answered.
//
// # Operations
//
// A C-STORE handler receives the data set (without File Meta) as an
// io.Reader in the negotiated transfer syntax; Part10 and
// StoreRequest.FileMeta turn it into a Part 10 file stream. C-FIND yields
// matches as pending responses and stops on C-CANCEL. C-MOVE sends the
// handler's instances to a configured destination over a sub-association
// (one presentation context per SOP class and transfer syntax met, a new
// association when a new pair appears); C-GET sends them back on the same
// association. Both report progress in pending responses and answer
// B000 with the Failed SOP Instance UID List when sub-operations fail.
// The Client mirrors them; it sends instances as stored and fails with a
// NoContextError rather than transcode.
package dimse
