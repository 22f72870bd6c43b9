// Package racesmoke runs the module's in-process tests under the race
// detector (its test, under `go test ./...`), so a data race between a
// node's goroutines (sync handlers against Close, fetch workers against
// their callers, the ledger's loops against each other) fails CI. It has
// no code of its own.
//
// It runs `go test -race` over every package but the end-to-end one
// (cmd/medmesh, whose daemons are whole processes: scripts/race-e2e.sh
// runs them under the detector) and the fuzz and race smokes. It fails on
// a race report or a panic; a test that only fails because the detector
// makes it slower (a deadline) is logged, not failed: the ordinary run of
// the suite judges it. It runs one package at a time and needs about a
// quarter of an hour: a test binary with less than 25 minutes before its
// deadline skips it, saying so (go test's default -timeout is 10m; the
// README's and CI's command gives 45m). `go test -short` skips it; so does
// a toolchain without the race detector. MEDMESH_RACE_PKGS="./a ./b"
// runs those packages only.
package racesmoke
