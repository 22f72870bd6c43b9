// Package research is the node's research service: patients' consents and
// consent-checked research datasets.
//
// A clinic records a patient's consent (AddConsent, RevokeConsent) as a
// ledger entry that names the patient only by a pseudonym keyed with the
// clinic's secret (derived from its identity key, never stored apart), so
// no patient ID reaches the ledger. Revocations follow the ledger's causal
// order (sharing/dataset.Evaluate).
//
// CreateDataset selects the clinic's own studies (by record or by query),
// keeps the series whose patient has a live research consent covering
// them, de-identifies each kept study with one project key (PS3.15, the
// imaging service's de-identifier, reusing an earlier identical output)
// and publishes a dataset manifest record (sharing/dataset.Manifest); a
// new version carries the previous version's research grants over and
// revokes them on studies it dropped. GrantDatasets grants the manifest
// and every study in it. A dataset spanning several clinics is federated:
// each publishes its part under the same name.
//
// FetchDataset, on the researcher's node, fetches every readable dataset
// of the names it is given into one folder, in parallel, verifying each
// file against its record's manifest, resumable (DatasetStateFile), with a
// manifest.csv; every study read is audited with purpose research. Named
// fetches report their progress (FetchProgress) to the service that runs
// them: no state is shared between nodes in one process.
//
// The service speaks no protocol: the HTTP layer (node/httpapi's Research
// area, /api/v1/consents and /api/v1/datasets) serves it. Errors carry an
// internal/fault kind and a hint. What it needs from the rest of the node
// is in Config, as small interfaces: Ledger, Records and Imaging.
package research
