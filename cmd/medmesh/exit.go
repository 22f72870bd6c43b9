package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/repo"
	"github.com/spf13/cobra"
)

// Exit codes, one per kind of failure, so that a script can tell "try again
// later" from "fix the command" from "you may not". `medmesh help
// exit-codes` prints this table; keep the two in step (a test checks).
const (
	exitOK          = 0
	exitInternal    = 1 // internal or unexpected failure
	exitInvalid     = 2 // invalid input: flag, argument, value, malformed file
	exitNoDaemon    = 3 // no daemon running for the repo, or no repo
	exitNotFound    = 4 // no such record, dataset, grant, ...
	exitForbidden   = 5 // no right to do it; bad API token
	exitConflict    = 6 // the state does not allow it now
	exitUnavailable = 7 // network or peers unreachable, timed out
	exitVerify      = 8 // integrity or ledger verification failed
)

// exitCodes documents the codes, in order, for `medmesh help exit-codes`.
var exitCodes = []struct {
	code int
	name string
	desc string
}{
	{exitOK, "ok", "success"},
	{exitInternal, "internal", "internal or unexpected failure (a bug, a full disk, a storage error: see the message and the daemon's log)"},
	{exitInvalid, "invalid", "invalid input: unknown command or flag, bad argument or value (e.g. an unknown --class or --purpose), malformed file or token"},
	{exitNoDaemon, "no-daemon", "no daemon is running for the repo, or there is no repo (`medmesh init`, `medmesh daemon`)"},
	{exitNotFound, "not-found", "not found: unknown record, dataset, grant or fetch job, or a record its owner erased (`medmesh delete`)"},
	{exitForbidden, "forbidden", "forbidden: this node has no right to do it (not the owner, no grant, not the admin), or the API token is wrong"},
	{exitConflict, "conflict", "the state does not allow it now: not yet a member, a peer's key not announced, already exists, no network yet, a daemon already runs on the repo"},
	{exitUnavailable, "unavailable", "unavailable or timed out: the network or the peers holding the data are unreachable; retrying later may help"},
	{exitVerify, "verify-failed", "verification failed: a record failed its integrity check, the ledger failed `ledger verify`, or an audit log proof does not verify (`audit verify-proof`)"},
}

// cliError is a failure with its exit code and, when there is something to
// do about it, a hint.
type cliError struct {
	code int
	err  error
	hint string
}

func (e *cliError) Error() string {
	if e.hint != "" {
		return e.err.Error() + " (" + e.hint + ")"
	}
	return e.err.Error()
}

func (e *cliError) Unwrap() error { return e.err }

// Hint says what to do about it.
func (e *cliError) Hint() string { return e.hint }

// withCode gives err an exit code (and a hint, if not empty).
func withCode(code int, err error, hint string) error {
	if err == nil {
		return nil
	}
	return &cliError{code: code, err: err, hint: hint}
}

// invalidf is an invalid-input error (exit 2).
func invalidf(hint, format string, args ...any) error {
	return withCode(exitInvalid, fmt.Errorf(format, args...), hint)
}

// choiceError is the error for a value outside a fixed set: it lists the
// choices, so the user does not have to look them up.
func choiceError(flag, value string, choices []string) error {
	return invalidf("choose one of: "+strings.Join(choices, ", "), "unknown %s %q", flag, value)
}

// checkChoice returns choiceError unless value is one of choices.
func checkChoice(flag, value string, choices []string) error {
	for _, c := range choices {
		if value == c {
			return nil
		}
	}
	return choiceError(flag, value, choices)
}

// httpExitCode maps an API status to an exit code (documented in
// CONVENTIONS.md and `medmesh help exit-codes`).
func httpExitCode(status int) int {
	switch status {
	case http.StatusBadRequest, http.StatusNotAcceptable, http.StatusLengthRequired,
		http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		return exitInvalid
	case http.StatusUnauthorized, http.StatusForbidden:
		return exitForbidden
	case http.StatusNotFound, http.StatusGone:
		return exitNotFound
	case http.StatusConflict:
		return exitConflict
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusTooManyRequests:
		return exitUnavailable
	}
	return exitInternal
}

// exitCode classifies err. Errors the CLI raised carry their code; the
// daemon's carry an HTTP status; a few conditions are recognised by their
// sentinel errors; anything else is an internal failure.
func exitCode(err error) int {
	var ce *cliError
	if errors.As(err, &ce) {
		return ce.code
	}
	var re *api.RemoteError
	if errors.As(err, &re) {
		return httpExitCode(re.Status)
	}
	var ve *repo.ValueError
	var cfe *repo.ConfigError
	var ue *repo.UnknownSettingError
	if errors.As(err, &ve) || errors.As(err, &cfe) || errors.As(err, &ue) {
		return exitInvalid // a setting's value, or config.json, is wrong
	}
	var ie *api.IncompleteError
	if errors.As(err, &ie) {
		if ie.VerifyFailed() {
			return exitVerify
		}
		return exitUnavailable
	}
	switch {
	case errors.Is(err, api.ErrNoDaemon), errors.Is(err, repo.ErrNoRepo):
		return exitNoDaemon
	case errors.Is(err, repo.ErrNoNetwork), errors.Is(err, repo.ErrRepoExists), errors.Is(err, repo.ErrLocked):
		return exitConflict
	case errors.Is(err, context.DeadlineExceeded):
		return exitUnavailable
	}
	return exitInternal
}

// splitHint separates an error's message from its hint (both kinds of
// hinted errors print the hint in parentheses after the message).
func splitHint(err error) (msg, hint string) {
	msg = err.Error()
	var h interface{ Hint() string }
	if errors.As(err, &h) && h.Hint() != "" {
		hint = h.Hint()
		msg = strings.Replace(msg, " ("+hint+")", "", 1)
	}
	return msg, hint
}

// reportError prints err (as one JSON object with --json) and returns the
// exit code.
func reportError(w io.Writer, err error, asJSON bool) int {
	code := exitCode(err)
	if asJSON {
		msg, hint := splitHint(err)
		b, _ := json.Marshal(api.Error{Error: msg, Hint: hint})
		fmt.Fprintf(w, "%s\n", b)
		return code
	}
	fmt.Fprintln(w, "medmesh: error:", err)
	return code
}

// wantsJSON reports whether --json is among args (before a "--"): flag
// parsing may have failed before it set g.json.
func wantsJSON(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--json" || a == "--json=true" {
			return true
		}
	}
	return false
}

// trackRun wraps every command's RunE so that run knows whether an error
// came from cobra's own checks (unknown command or flag, wrong number of
// arguments, a missing required flag: invalid input) or from the command.
func trackRun(c *cobra.Command, started *bool) {
	if c.RunE != nil {
		inner := c.RunE
		c.RunE = func(cmd *cobra.Command, args []string) error {
			*started = true
			return inner(cmd, args)
		}
	}
	for _, s := range c.Commands() {
		trackRun(s, started)
	}
}

// groupRun is the RunE of a command that only groups others: with no
// argument it prints its help; an unknown subcommand is invalid input
// (cobra would print the help and exit 0).
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	var names []string
	for _, s := range cmd.Commands() {
		if s.IsAvailableCommand() {
			names = append(names, s.Name())
		}
	}
	return invalidf("choose one of: "+strings.Join(names, ", "), "unknown command %q for %q", args[0], cmd.CommandPath())
}

func newExitCodesTopic() *cobra.Command {
	var b strings.Builder
	b.WriteString(`Every medmesh command exits with one of these codes. With --json, a failing
command prints exactly one JSON object on stderr: {"error": "...", "hint": "..."}
(hint omitted when there is none) and nothing on stdout.

`)
	for _, c := range exitCodes {
		fmt.Fprintf(&b, "  %d  %-14s %s\n", c.code, c.name, c.desc)
	}
	b.WriteString(`
Errors from the daemon's API map by HTTP status: 400, 406, 411, 413, 415, 422
give 2; 401, 403 give 5; 404, 410 give 4; 409 gives 6; 429, 502, 503, 504
give 7; any other status gives 1.

Example, in a script:
  medmesh get "$ID" -o report.pdf --json 2>err.json
  case $? in
    0) ;;                       # done
    7) sleep 60; retry ;;       # peers unreachable: try again later
    *) jq -r .error err.json ;; # anything else needs a person
  esac`)
	return &cobra.Command{
		Use:   "exit-codes",
		Short: "The exit codes of every command, and the JSON error on stderr",
		Long:  b.String(),
	}
}

func newJSONTopic() *cobra.Command {
	return &cobra.Command{
		Use:   "json",
		Short: "The JSON vocabulary every --json output follows",
		Long: `With --json every command prints one JSON value on stdout, in one vocabulary:

  id            a record (a record ID, bafkrei...), in every command
  version       a record's version number (in ` + "`medmesh version`" + ` alone, the
                software's version, a string)
  peer          a peer ID (12D3KooW...); or the name of its role:
                owner, grantee, reader, holder, author, admin
  holders ...   a plural name is always an array: [] when empty, never null;
                lists of peers are arrays of peer IDs
  *_count       a count, named for what it counts (instance_count, ...)
  size, *_size  a size in bytes (integer)
  seconds       a duration in seconds (float)
  times         RFC 3339 in UTC (2026-03-01T09:30:00Z); an absent time
                (no expiry, never verified) is null
  replicas      the wanted number of replicas, owner included
  entry         a ledger entry (its CID)
  device        an implant (the CID of its register entry); di its device
                identifier (GTIN); label dates (expiry, produced) are
                YYYY-MM-DD, null when the label has none

A field name has the same type in every command. On failure stdout is empty
and stderr holds one object, {"error": "...", "hint": "..."}, with the exit
code of ` + "`medmesh help exit-codes`" + `.`,
		Example: `  medmesh ls --json | jq -r '.[] | select(.under_replicated) | .id'
  medmesh get "$ID" -o out.pdf --json 2>err.json || jq -r .error err.json`,
	}
}
