// Package dicom is medmesh's imaging logic: hardened DICOM Part 10 parsing
// (no input may panic, stall or make it allocate what a header merely
// claims), grouping of files into studies and series, the canonical study
// index stored inside a record's manifest, an encrypted local index of
// studies, and PS3.15 Annex E de-identification.
//
// Parsing is two-pass: a bounded element walker (this package) checks every
// declared length against the bytes that exist, then
// github.com/suyashkumar/dicom reads the header under recover. Pixel data is
// never held in memory: the parser skips it, the de-identifier streams it.
//
// One rule decides which UIDs are stored, and the same rule is applied when
// they are read back (CheckUID, used by Scan, EncodeStudyMeta and
// DecodeStudyMeta): conformant UIDs, and non-conformant ones that archives
// hold and dcmtk and Orthanc accept (letters, leading zeros, up to
// MaxUIDLen characters), kept as they are with a warning; nothing that
// could not be a file name or URL path. De-identification replaces instance
// UIDs with conformant keyed ones whatever they were.
//
// With the Modified Dates option, de-identification shifts the dates of the
// patient's timeline and never those that date a definition (Context Group
// Version and the like, see notTimeline).
package dicom
