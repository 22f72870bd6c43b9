// Package gc is a node's storage hygiene: a mark-and-sweep garbage
// collector for the blockstore, `repo stat`, and the clean-up of adds a
// killed daemon interrupted.
//
// # What is live
//
// Every block a node writes is one of these, and each is reachable from
// state the node keeps (the mark):
//
//   - chunks, manifest and block list of a record it owns (every version):
//     the record is on the ledger with its block list's CID, and the block
//     list names the manifest and every chunk;
//   - the same of a record it holds as a replica (pinned: record -> block
//     list) or is fetching now (in flight), both from the replication
//     manager's Pinset (node/replication);
//   - blocks of a record it may read under a live grant, should any be
//     stored (reads keep no copy, p2p.NoKeep), through the block index;
//   - ledger entries, each a block (ledger.EachEntry, and any block that
//     decodes as an entry: an entry is stored just before it is applied);
//   - blocks of an add in progress, which registers each CID before it
//     writes the block (Add.Put).
//
// DICOM indexes, dataset state, wrapped keys, pins and the block index are
// datastore keys, not blocks: gc never touches them (but for the index
// entries of the blocks it removes, and what an interrupted add stored).
//
// The sweep lists the blocks of a snapshot taken before the mark, so a
// block written while gc runs is never a candidate. A candidate may still
// become referenced between the mark and its removal only by a replica
// fetch or self-heal reusing blocks already stored; those hold their record
// (Pinset.Hold) before they read the store, and each removal runs under
// Pinset.Exclusive after checking that no record pinned or in flight claims
// the block.
//
// # Interrupted adds: gc owns the add markers
//
// An add killed with its daemon leaves blocks no record references. The
// add protocol is gc's, and so are its markers: the records service starts
// every add with BeginAdd, which registers the add in memory (for a sweep
// running now) and writes a marker (/adds/<random id> in the node's local
// datastore, for the next start) before the first block; it stores its
// blocks through the returned Add (which tracks each CID), names the record
// once it knows it (Add.Named, before it stores the record's key or index
// entries) and ends with Add.End: the marker goes once the record is on the
// ledger, or once a failed add's blocks and what it stored about the record
// are rolled back (a rollback that could not remove everything leaves the
// marker). A daemon that starts and finds a marker runs a sweep, before
// anything else writes (only then: a start otherwise costs nothing here),
// and so does every `gc`; the sweep removes the blocks and asks the records
// service to forget (Records.Forget) the key and index entries of each add
// whose marker outlived it. Nobody else reads or writes the markers.
//
// No HTTP here: node/httpapi's Storage area serves GC and Stat; errors are
// internal/fault kinds.
package gc
