package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/repo"
)

// TestExitCodeMapping: every documented HTTP status maps to its documented
// exit code, and the CLI's own sentinel errors to theirs.
func TestExitCodeMapping(t *testing.T) {
	for status, want := range map[int]int{
		400: exitInvalid, 406: exitInvalid, 411: exitInvalid, 413: exitInvalid, 415: exitInvalid, 422: exitInvalid,
		401: exitForbidden, 403: exitForbidden, 404: exitNotFound, 410: exitNotFound, 409: exitConflict,
		429: exitUnavailable, 502: exitUnavailable, 503: exitUnavailable, 504: exitUnavailable,
		500: exitInternal, 501: exitInternal,
	} {
		err := fmt.Errorf("wrapped: %w", &api.RemoteError{Status: status, E: api.Error{Error: "x"}})
		if got := exitCode(err); got != want {
			t.Errorf("HTTP %d: exit %d, want %d", status, got, want)
		}
	}
	for _, c := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("x: %w", api.ErrNoDaemon), exitNoDaemon},
		{fmt.Errorf("x: %w", repo.ErrNoRepo), exitNoDaemon},
		{fmt.Errorf("x: %w", repo.ErrNoNetwork), exitConflict},
		{fmt.Errorf("x: %w", repo.ErrRepoExists), exitConflict},
		{&api.IncompleteError{Result: api.TrailerVerifyFailed + ": bad block"}, exitVerify},
		{&api.IncompleteError{}, exitUnavailable},
		{invalidf("", "bad"), exitInvalid},
		{errors.New("anything else"), exitInternal},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("%v: exit %d, want %d", c.err, got, c.want)
		}
	}
}

// TestJSONErrorShape: under --json a failure is exactly one JSON object on
// stderr, hint separate from the message, nothing on stdout.
func TestJSONErrorShape(t *testing.T) {
	c := &cli{t: t, repo: filepath.Join(t.TempDir(), "none")}
	for _, tc := range []struct {
		args []string
		code int
		hint bool
	}{
		{[]string{"get", "BAD", "-o", "x", "--json"}, exitInvalid, true},
		{[]string{"ls", "--json"}, exitNoDaemon, false},
		{[]string{"ledger", "log", "--bogus", "--json"}, exitInvalid, true},
		{[]string{"bogus", "--json"}, exitInvalid, true},
		{[]string{"ledger", "bogus", "--json"}, exitInvalid, true},
		{[]string{"grant", "--json"}, exitInvalid, true},
	} {
		out, errs, code := c.run(tc.args...)
		if code != tc.code || out != "" {
			t.Errorf("%v: exit %d (want %d), stdout %q", tc.args, code, tc.code, out)
		}
		var e map[string]string
		dec := json.NewDecoder(strings.NewReader(errs))
		if err := dec.Decode(&e); err != nil || dec.More() || e["error"] == "" {
			t.Errorf("%v: stderr is not one JSON error object: %q (%v)", tc.args, errs, err)
			continue
		}
		if _, has := e["hint"]; has != tc.hint || strings.Contains(e["error"], e["hint"]+")") && tc.hint {
			t.Errorf("%v: hint %q (want one: %v), error %q", tc.args, e["hint"], tc.hint, e["error"])
		}
	}
}

// TestHelpExitCodes: `medmesh help exit-codes` lists every code.
func TestHelpExitCodes(t *testing.T) {
	c := &cli{t: t, repo: t.TempDir()}
	out := c.must("help", "exit-codes")
	for _, ec := range exitCodes {
		if !strings.Contains(out, "  "+strconv.Itoa(ec.code)+"  "+ec.name) {
			t.Errorf("help exit-codes lacks code %d (%s):\n%s", ec.code, ec.name, out)
		}
	}
	if !strings.Contains(out, strconv.Itoa(http.StatusConflict)) {
		t.Errorf("help exit-codes does not explain the HTTP mapping:\n%s", out)
	}
}
