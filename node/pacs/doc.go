// Package pacs makes the node a DICOM application entity: the DIMSE
// services a PACS, a modality or a workstation expects (node/dimse does
// the protocol), backed by the imaging service's encrypted studies.
//
//   - SCP (when dicom.listen is set): C-ECHO; C-STORE of every storage SOP
//     class, instances kept as sent and grouped into studies as `medmesh
//     dicom import` groups files (store.go: the inbox); C-FIND at the
//     PATIENT, STUDY, SERIES and IMAGE levels of the Patient Root and
//     Study Root models, with the imaging service's query engine over the
//     encrypted index (find.go); C-MOVE to the configured destinations and
//     C-GET, streaming each instance from its record as stored
//     (retrieve.go), studies granted by other clinics included: the node
//     keeps them in its index (granted.go) and fetches them from the
//     network when they are retrieved.
//   - SCU: C-ECHO of a peer (Verify) and C-STORE of a stored study to a
//     peer (Send), from the node's AE title (scu.go).
//
// Who may associate is the list of allowed callers (AE@host); anyone else
// gets an A-ASSOCIATE-RJ. Prometheus metrics count associations,
// operations by status, and instances received and stored by result.
//
// Not done: TLS (dimse.Server.ServeConn is where it would go), the
// N-services, asynchronous operations, relational queries, user identity
// checks, transcoding on C-MOVE/C-GET (instances go in their stored
// transfer syntax; a destination that accepts none of a study's syntaxes
// gets failed sub-operations).
package pacs
