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
package dicom
