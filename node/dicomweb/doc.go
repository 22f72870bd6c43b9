// Package dicomweb serves DICOMweb (PS3.18) on the node's API, behind the
// same bearer token, over the imaging service:
//
//	STOW-RS  POST /dicomweb/studies[/{study}]          multipart/related; type="application/dicom"
//	QIDO-RS  GET  /dicomweb/studies                    application/dicom+json
//	         GET  /dicomweb/studies/{study}/series
//	         GET  /dicomweb/studies/{study}[/series/{series}]/instances
//	WADO-RS  GET  /dicomweb/studies/{study}[/series/{series}[/instances/{sop}]]
//	         ... /metadata                             application/dicom+json
//
// Instances are sent as stored (their original transfer syntax); no
// transcoding is done. STOW-RS parts are staged in the repo and imported
// as `medmesh dicom import` imports files (imaging.Staging); QIDO-RS at
// study level reads the encrypted index, at series and instance level the
// study's metadata; WADO-RS streams each instance from its record.
//
// It is an Area beside node/httpapi: the daemon mounts it with the rest of
// the API. It speaks HTTP statuses of its own where PS3.18 asks for them
// (406, 409 and 202 for STOW-RS, 415), and maps the service's fault kinds
// to statuses like the rest of the API.
package dicomweb
