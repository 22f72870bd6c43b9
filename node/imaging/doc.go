// Package imaging is the node's imaging service: DICOM import (files and
// folders, or streams through a Staging), query of the encrypted local
// study index, byte-exact export, PS3.15 de-identification, and opening a
// study by record ID or Study Instance UID to stream its instances.
//
// Each study is one record of the records service (kind "dicom-study",
// class "imaging"): one encrypted file per instance, the study's metadata
// (patient, study, series, instances and their file indexes) encrypted in
// the manifest. A study imported again, or in parts, becomes a new version
// holding the union of its instances (MergeStudy, a pure function). The
// index (storage/dicom.Index) is local to the node and encrypted under a
// key derived from its identity; it holds the studies the node owns and
// the granted studies it has read.
//
// The service speaks no protocol: the HTTP layer (node/httpapi's Imaging
// area, /api/v1/dicom/...), DICOMweb (node/dicomweb) and DIMSE serve it,
// each through the small interface it needs. Errors carry an
// internal/fault kind and a hint. What the service needs from the rest of
// the node is in Config: the records service (Records), the ledger's
// record table (Ledger), the node's identity, a datastore and the repo
// folder.
package imaging
