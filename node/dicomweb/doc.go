// Package dicomweb serves DICOMweb (PS3.18) on the node's API, behind the
// same bearer token, over the imaging service:
//
//	STOW-RS  POST /dicomweb/studies[/{study}]          multipart/related; type="application/dicom"
//	QIDO-RS  GET  /dicomweb/studies                    application/dicom+json
//	         GET  /dicomweb/series, /dicomweb/instances (from the root)
//	         GET  /dicomweb/studies/{study}/series
//	         GET  /dicomweb/studies/{study}[/series/{series}]/instances
//	WADO-RS  GET  /dicomweb/studies/{study}[/series/{series}[/instances/{sop}]]
//	         ... /metadata                             application/dicom+json, BulkDataURIs
//	         .../instances/{sop}/frames/{list}         multipart/related; frames
//	         .../instances/{sop}/bulkdata/{tag}        multipart/related; application/octet-stream
//	         .../instances/{sop}[/frames/{list}]/rendered   image/png or image/jpeg
//
// QIDO-RS runs the imaging service's query engine over the encrypted
// index (imaging.Search: every level, wildcards, ranges, UID lists,
// person names ignoring case, fuzzymatching, includefield, limit and
// offset) and answers with the attributes PS3.18 requires per level.
// WADO-RS sends instances as stored when the Accept header allows it
// (transfer-syntax=* or absent, or the stored syntax), transcodes among the
// uncompressed syntaxes (dicom.Transcode), and answers 406 for anything
// else (compressed data is never decompressed or recompressed). Frames are
// cut from the stored pixel data (native frames little endian;
// compressed ones as their codestream, in their codec's media type);
// rendered images are made by dicom.RenderFrame (native grayscale and
// color, JPEG Baseline, RLE) with the instance's or the request's window.
// STOW-RS parts are staged in the repo and imported as `medmesh dicom
// import` imports files (imaging.Staging).
//
// It is an Area beside node/httpapi: the daemon mounts it with the rest of
// the API, and lets browser viewers of dicomweb.cors_origins call it
// (api.Server.AllowOrigins: preflights answered, responses carry
// Access-Control-Allow-Origin). It speaks HTTP statuses of its own where
// PS3.18 asks for them (406, 409 and 202 for STOW-RS, 415), and maps the
// service's fault kinds to statuses like the rest of the API.
package dicomweb
