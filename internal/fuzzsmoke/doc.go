// Package fuzzsmoke runs every fuzz target of the module for a few seconds
// (its test, under `go test ./...`), so a decoder that panics on input a
// fuzzer finds quickly fails CI, not only the seed corpus. It has no code
// of its own.
//
// MEDMESH_FUZZTIME sets the time per target (default 3s); the long runs
// before an issue is resolved use 2m. `go test -short` skips it.
package fuzzsmoke
