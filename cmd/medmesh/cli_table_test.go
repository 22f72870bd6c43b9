package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/dimse"
	"github.com/medmesh/medmesh/sharing/auditlog"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
	"github.com/spf13/cobra"
)

// tableEnv is the network the command table runs against: three real
// `medmesh daemon` processes set up through the CLI, as an operator would.
type tableEnv struct {
	dir                    string
	clinic, lab, research  *cli // running daemons
	scratch, joiner, nonet *cli // repos without a daemon
	ids                    map[string]string
	vals                   map[string]string // IDs and names rows pass to later rows
}

// cliRow is one line of the table: a command line, the exit code it must
// give and, for a success, a check of its --json output. Every row runs
// with --json (topics and group help without): a success must print JSON
// that follows the vocabulary (`medmesh help json`), a failure exactly one
// JSON error object on stderr.
type cliRow struct {
	cmd   string // the command path it covers ("" is the root)
	node  func(e *tableEnv) *cli
	args  func(e *tableEnv) []string
	code  int
	text  bool          // plain output (help topics, group help): no --json
	start bool          // run `medmesh daemon` (in the background, until the test ends), then args
	retry time.Duration // repeat while the code differs (ledger propagation) or ready says no
	ready func(out string) bool
	// check looks at a success's stdout, or a failure's error message.
	check func(t *testing.T, e *tableEnv, out string)
}

func on(n string) func(e *tableEnv) *cli {
	return func(e *tableEnv) *cli {
		return map[string]*cli{"clinic": e.clinic, "lab": e.lab, "research": e.research, "scratch": e.scratch, "joiner": e.joiner, "nonet": e.nonet}[n]
	}
}

func argv(a ...string) func(*tableEnv) []string { return func(*tableEnv) []string { return a } }

func has(subs ...string) func(t *testing.T, e *tableEnv, out string) {
	return func(t *testing.T, e *tableEnv, out string) {
		t.Helper()
		for _, s := range subs {
			if !strings.Contains(out, s) {
				t.Errorf("output lacks %q:\n%s", s, out)
			}
		}
	}
}

func decode[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("decode %T: %v\n%s", v, err, out)
	}
	return v
}

// tableUDI is a GS1 UDI (GS1's example GTIN) the implant rows register.
const tableUDI = "(01)09506000134352(17)301231(10)TLOT1(21)T1"

const badCID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy" // a record nobody announced

// TestCLICommandTable drives every command of the CLI through the real
// binary against real daemons: its success path (output, --json in the
// vocabulary, exit 0) and at least one bad input (exit code, one JSON
// error on stderr). TestCLITableCoversEveryCommand keeps it complete.
func TestCLICommandTable(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three daemons")
	}
	e := setupTable(t)
	types := map[string]string{} // field name -> JSON type, across commands
	for i, r := range cliRows() {
		c := r.node(e)
		if r.start {
			d := c.startDaemon()
			t.Cleanup(func() { d.Process.Signal(syscall.SIGTERM); d.Wait() })
		}
		args := r.args(e)
		name := fmt.Sprintf("%02d %s", i, strings.Join(args, " "))
		if !r.text {
			args = append(args, "--json")
		}
		var out, errs string
		var code int
		deadline := time.Now().Add(r.retry)
		for {
			out, errs, code = c.run(args...)
			if code == r.code && (r.ready == nil || r.ready(out)) || time.Now().After(deadline) {
				break
			}
			time.Sleep(150 * time.Millisecond)
		}
		t.Logf("%s: exit %d", name, code)
		if code != r.code {
			t.Fatalf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", name, code, r.code, out, errs)
		}
		if r.text {
			if r.check != nil {
				r.check(t, e, out)
			}
			continue
		}
		if r.code != 0 {
			msg := checkJSONError(t, name, out, errs)
			if r.check != nil {
				r.check(t, e, msg)
			}
			continue
		}
		checkVocabulary(t, name, r.cmd, out, types)
		if r.check != nil {
			r.check(t, e, out)
		}
	}
}

// checkJSONError: stderr is exactly one JSON object with "error" (and
// "hint" only when there is one), stdout is empty. It returns the message
// and hint.
func checkJSONError(t *testing.T, name, out, errs string) string {
	t.Helper()
	// dicom import prints its report even when it rejected files, health
	// when it is unhealthy.
	if strings.TrimSpace(out) != "" && !strings.Contains(name, "dicom import") && !strings.Contains(name, " health") {
		t.Errorf("%s: a failure printed on stdout: %s", name, out)
	}
	dec := json.NewDecoder(strings.NewReader(errs))
	var e map[string]any
	if err := dec.Decode(&e); err != nil || dec.More() {
		t.Fatalf("%s: stderr is not one JSON object: %v\n%s", name, err, errs)
	}
	msg, _ := e["error"].(string)
	if msg == "" {
		t.Errorf("%s: no error message: %s", name, errs)
	}
	for k, v := range e {
		if s, _ := v.(string); (k != "error" && k != "hint") || s == "" {
			t.Errorf("%s: unexpected %q: %v in %s", name, k, v, errs)
		}
	}
	hint, _ := e["hint"].(string)
	return msg + " (" + hint + ")"
}

// Keys the vocabulary replaced: a record is id, a peer is peer or its role,
// sizes are size, the wanted replica count is replicas.
var retiredKeys = map[string]string{
	"record": "id", "peer_id": "peer", "cid": "entry", "wanted": "replicas", "replicas_wanted": "replicas",
	"bytes": "size", "duration_ns": "seconds", "chunks": "chunk_count", "entries": "entry_count",
}

// Fields that may be null: absent times, and demo's kept directory.
var nullable = map[string]bool{"expires": true, "last_verified": true, "dir": true, "last_seen": true,
	"expiry": true, "produced": true, "implanted": true, "explanted": true}

// checkVocabulary checks one success's --json output against the
// vocabulary of `medmesh help json`, and records each field's type in
// types so that a field with two types across commands is caught.
func checkVocabulary(t *testing.T, name, cmd, out string, types map[string]string) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		t.Fatalf("%s: --json output is not one JSON value: %v\n%s", name, err, out)
	}
	if strings.Contains(out, "0001-01-01") {
		t.Errorf("%s: a zero time in the output:\n%s", name, out)
	}
	if cmd == "audit" {
		return // api.AccessEvent is being rebuilt with attestations (issue #11); it will follow
	}
	var walk func(key string, v any)
	walk = func(key string, v any) {
		kind := "null"
		switch x := v.(type) {
		case map[string]any:
			kind = "object"
			for k, vv := range x {
				if nk, ok := retiredKeys[k]; ok {
					t.Errorf("%s: field %q (the vocabulary says %q)", name, k, nk)
				}
				walk(k, vv)
			}
		case []any:
			kind = "array"
			for _, vv := range x {
				walk("", vv)
			}
		case string:
			kind = "string"
			if tm, err := time.Parse(time.RFC3339Nano, x); err == nil && tm.Location() != time.UTC {
				t.Errorf("%s: %s = %q is not in UTC", name, key, x)
			}
		case json.Number:
			kind = "number"
		case bool:
			kind = "bool"
		case nil:
			if key != "" && !nullable[key] {
				t.Errorf("%s: %q is null (lists are [], only absent times are null)", name, key)
			}
		}
		if key == "" || kind == "null" || key == "payload" || cmd == "version" && key == "version" {
			return // `medmesh version` alone says "version" for the software's, a string
		}
		if prev, ok := types[key]; ok && prev != kind {
			t.Errorf("%s: field %q is a %s here and a %s elsewhere", name, key, kind, strings.SplitN(prev, " ", 2)[0])
		}
		if _, ok := types[key]; !ok {
			types[key] = kind
		}
	}
	walk("", v)
}

func setupTable(t *testing.T) *tableEnv {
	t.Helper()
	dir := t.TempDir()
	e := &tableEnv{dir: dir, ids: map[string]string{}, vals: map[string]string{}}
	mk := func(name string) *cli { return &cli{t: t, repo: filepath.Join(dir, name)} }
	e.clinic, e.lab, e.research = mk("clinic"), mk("lab"), mk("research")
	e.scratch, e.joiner, e.nonet = mk("scratch"), mk("joiner"), mk("nonet")
	local := []string{"--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"}

	// The clinic founds the network; its org comes from init. The lab is
	// invited with an org; the research node's org comes from its own
	// config, stated by its daemon once admitted.
	e.clinic.must(append([]string{"init", "--org", "St Mary"}, local...)...)
	e.lab.must(append([]string{"init"}, local...)...)
	e.research.must(append([]string{"init", "--org", "Uni Research"}, local...)...)
	e.joiner.must(append([]string{"init"}, local...)...)
	e.nonet.must(append([]string{"init"}, local...)...)
	e.clinic.must("network", "create", "--name", "table")
	d := e.clinic.startDaemon()
	t.Cleanup(func() { d.Process.Signal(syscall.SIGTERM); d.Wait() })
	for _, n := range []struct {
		c   *cli
		org []string
	}{{e.lab, []string{"--org", "Central Lab"}}, {e.research, nil}} {
		id := decode[api.IDInfo](t, n.c.must("id", "--json"))
		e.ids[filepath.Base(n.c.repo)] = id.Peer
		inv := decode[api.InviteResult](t, e.clinic.must(append([]string{"network", "invite", "--peer", id.Peer, "--json"}, n.org...)...))
		n.c.must("network", "join", inv.Token)
		d := n.c.startDaemon()
		t.Cleanup(func() { d.Process.Signal(syscall.SIGTERM); d.Wait() })
	}
	e.ids["clinic"] = decode[api.IDInfo](t, e.clinic.must("id", "--json")).Peer
	e.ids["joiner"] = decode[api.IDInfo](t, e.joiner.must("id", "--json")).Peer
	e.ids["nonet"] = decode[api.IDInfo](t, e.nonet.must("id", "--json")).Peer

	// Every node sees every member with its organisation, and every key
	// (grants need the grantee's).
	want := map[string]string{e.ids["clinic"]: "St Mary", e.ids["lab"]: "Central Lab", e.ids["research"]: "Uni Research"}
	for _, c := range []*cli{e.clinic, e.lab, e.research} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			ms := decode[[]api.Member](t, c.must("members", "--json"))
			got := map[string]string{}
			for _, m := range ms {
				got[m.Peer] = m.Org
			}
			keys := decode[[]api.LedgerEntry](t, c.must("ledger", "log", "--type", ledger.TypeKeyAnnounce, "--json"))
			if fmt.Sprint(got) == fmt.Sprint(want) && len(keys) == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: members %v (want %v), %d keys announced", c.repo, got, want, len(keys))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Files the rows use.
	os.WriteFile(filepath.Join(dir, "pass"), []byte("correct horse battery staple\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "wrong-pass"), []byte("incorrect horse battery staple\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "report.json"), []byte(`{"resourceType":"DiagnosticReport","status":"final"}`), 0o600)
	os.WriteFile(filepath.Join(dir, "report-v2.json"), []byte(`{"resourceType":"DiagnosticReport","status":"amended"}`), 0o600)
	os.WriteFile(filepath.Join(dir, "not-dicom.dcm"), []byte("plain text, not DICOM"), 0o600)
	if _, err := dicomtest.WriteStudy(filepath.Join(dir, "study"), dicomtest.Options{InstancesPerSeries: 2, Rows: 16, Cols: 16, Modality: "MR", Seed: 41}); err != nil {
		t.Fatal(err)
	}
	// A DICOM peer for dicom echo and send: a node/dimse SCP in the test
	// process that knows the nodes' AE title (dcmtk's storescp cannot be
	// bound to loopback; dicom_e2e_test.go drives dcmtk and Orthanc).
	e.vals["scp"] = tableSCP(t)
	return e
}

// tableSCP starts a storage SCP "TABLESCP" on loopback that admits
// MEDMESH@127.0.0.1 and returns it as AE@host:port.
func tableSCP(t *testing.T) string {
	t.Helper()
	callers, err := dimse.ParseCallers("MEDMESH@127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := dimse.NewServer(dimse.ServerOptions{AETitle: "TABLESCP", Allowed: callers, Store: discardStore{},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "TABLESCP@" + l.Addr().String()
}

type discardStore struct{}

func (discardStore) Store(_ context.Context, _ *dimse.StoreRequest, data io.Reader) error {
	_, err := io.Copy(io.Discard, data)
	return err
}

func (e *tableEnv) path(p string) string { return filepath.Join(e.dir, p) }

// cliRows is the table. Rows run in order: later rows use what earlier
// ones made (e.vals).
func cliRows() []cliRow {
	val := func(k string) func(e *tableEnv) string { return func(e *tableEnv) string { return e.vals[k] } }
	id := val("record")
	return []cliRow{
		// The root, help topics and cobra's own commands.
		{cmd: "", node: on("clinic"), args: argv("--help"), text: true, check: has("Available Commands", "exit-codes", "json")},
		{cmd: "", node: on("clinic"), args: argv("bogus"), code: exitInvalid, check: has(`unknown command "bogus"`)},
		{cmd: "help", node: on("clinic"), args: argv("help", "add"), text: true, check: has("Examples:", "--class")},
		{cmd: "exit-codes", node: on("clinic"), args: argv("help", "exit-codes"), text: true, check: has("  7  unavailable", "409 gives 6")},
		{cmd: "json", node: on("clinic"), args: argv("help", "json"), text: true, check: has("replicas", "null")},
		{cmd: "completion", node: on("clinic"), args: argv("completion", "bash"), text: true, check: has("medmesh")},

		// Node setup (init, id, network, daemon, members).
		{cmd: "init", node: on("scratch"), args: argv("init", "--org", "Scratch Clinic", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"),
			check: func(t *testing.T, e *tableEnv, out string) {
				r := decode[initResult](t, out)
				if !strings.HasPrefix(r.Peer, "12D3Koo") || r.Org != "Scratch Clinic" || r.Repo != e.scratch.repo {
					t.Errorf("init: %+v", r)
				}
				e.ids["scratch"] = r.Peer
			}},
		{cmd: "init", node: on("scratch"), args: argv("init"), code: exitConflict, check: has("refusing")},
		{cmd: "init", node: on("nonet"), args: func(e *tableEnv) []string {
			return []string{"--repo", e.path("badorg"), "init", "--org", "St Mary\nMRN 123"}
		}, code: exitInvalid, check: has("--org")},
		{cmd: "id", node: on("clinic"), args: argv("id"), check: func(t *testing.T, e *tableEnv, out string) {
			id := decode[api.IDInfo](t, out)
			if !id.Daemon || !id.Member || !id.Admin || id.Org != "St Mary" || id.PeerCount < 2 || len(id.Addrs) == 0 {
				t.Errorf("id: %+v", id)
			}
		}},
		{cmd: "id", node: on("nonet"), args: func(e *tableEnv) []string { return []string{"--repo", e.path("nowhere"), "id"} }, code: exitNoDaemon, check: has("medmesh init")},
		{cmd: "network create", node: on("scratch"), args: argv("network", "create", "--name", "scratch-net", "--org", "Scratch Org"), check: func(t *testing.T, e *tableEnv, out string) {
			r := decode[networkResult](t, out)
			if r.Name != "scratch-net" || r.Org != "Scratch Org" || r.NetworkID == "" {
				t.Errorf("network create: %+v", r)
			}
		}},
		{cmd: "network create", node: on("scratch"), args: argv("network", "create", "--name", "again"), code: exitConflict, check: has("already belongs")},
		{cmd: "network create", node: on("nonet"), args: argv("network", "create"), code: exitInvalid, check: has("--name")},
		{cmd: "network create", node: on("nonet"), args: argv("network", "create", "--name", "net\tof Dr Smith"), code: exitInvalid, check: has("not allowed")},
		{cmd: "network invite", node: on("clinic"), args: func(e *tableEnv) []string {
			return []string{"network", "invite", "--peer", e.ids["joiner"], "--org", "Joiner Clinic", "--role", "emergency"}
		}, check: func(t *testing.T, e *tableEnv, out string) {
			r := decode[api.InviteResult](t, out)
			if r.Peer != e.ids["joiner"] || r.Org != "Joiner Clinic" || !strings.HasPrefix(r.Token, "medmesh-invite-") {
				t.Errorf("invite: %+v", r)
			}
			e.vals["token"] = r.Token
		}},
		{cmd: "network invite", node: on("clinic"), args: argv("network", "invite", "--peer", "nope"), code: exitInvalid, check: has("not a peer ID")},
		{cmd: "network invite", node: on("lab"), args: func(e *tableEnv) []string { return []string{"network", "invite", "--peer", e.ids["scratch"]} }, code: exitForbidden, check: has("admin")},
		{cmd: "network join", node: on("joiner"), args: func(e *tableEnv) []string { return []string{"network", "join", e.vals["token"]} }, check: func(t *testing.T, e *tableEnv, out string) {
			r := decode[networkResult](t, out)
			if r.Name != "table" || len(r.Bootstrap) == 0 {
				t.Errorf("join: %+v", r)
			}
		}},
		{cmd: "network join", node: on("nonet"), args: argv("network", "join", "medmesh-invite-1:garbage"), code: exitInvalid, check: has("invitation token", "new one")},
		// The joiner's token is sealed to the joiner: another node cannot
		// even open it.
		{cmd: "network join", node: on("nonet"), args: func(e *tableEnv) []string { return []string{"network", "join", e.vals["token"]} },
			code: exitForbidden, check: has("for another node", "network invite --peer")},
		{cmd: "network invite", node: on("clinic"), args: func(e *tableEnv) []string {
			return []string{"network", "invite", "--peer", e.ids["nonet"], "--expires", "1ms"}
		}, check: func(t *testing.T, e *tableEnv, out string) {
			r := decode[api.InviteResult](t, out)
			if r.Peer != e.ids["nonet"] || r.Member || r.Expires.After(time.Now()) {
				t.Errorf("invite: %+v", r)
			}
			e.vals["expired"] = r.Token
		}},
		{cmd: "network join", node: on("nonet"), args: func(e *tableEnv) []string { return []string{"network", "join", e.vals["expired"]} },
			code: exitConflict, check: has("expired")},
		{cmd: "network invite", node: on("clinic"), args: func(e *tableEnv) []string {
			return []string{"network", "invite", "--peer", e.ids["nonet"], "--expires", "forever"}
		}, code: exitInvalid, check: has("--expires")},
		{cmd: "network", node: on("clinic"), args: argv("network"), text: true, check: has("invite", "join")},
		{cmd: "network", node: on("clinic"), args: argv("network", "bogus"), code: exitInvalid, check: has("create, invite, join, remove")},
		{cmd: "daemon", node: on("joiner"), start: true, args: argv("members"), retry: 15 * time.Second,
			ready: func(out string) bool { return strings.Contains(out, "Joiner Clinic") }, check: func(t *testing.T, e *tableEnv, out string) {
				for _, m := range decode[[]api.Member](t, out) {
					if m.Peer == e.ids["joiner"] && m.Org == "Joiner Clinic" && strings.Contains(strings.Join(m.Roles, ","), "emergency") {
						return
					}
				}
				t.Errorf("the joiner's daemon does not see itself admitted: %s", out)
			}},
		{cmd: "daemon", node: on("nonet"), args: argv("daemon"), code: exitConflict, check: has("network create")},
		{cmd: "members", node: on("lab"), args: argv("members"), retry: 10 * time.Second,
			ready: func(out string) bool { return strings.Contains(out, "Joiner Clinic") }, check: func(t *testing.T, e *tableEnv, out string) {
				orgs := map[string]string{}
				ms := decode[[]api.Member](t, out)
				for _, m := range ms {
					orgs[m.Peer] = m.Org
				}
				// Every member with its role, its admission time and what
				// the lab knows of it: the lab itself, and the clinic it
				// bootstraps to (connected, with its address).
				roles := map[string]string{"clinic": "admin", "lab": "member", "research": "member", "joiner": "emergency"}
				for _, m := range ms {
					n := ""
					for k, id := range e.ids {
						if id == m.Peer {
							n = k
						}
					}
					if m.Role != roles[n] || m.Joined.IsZero() || m.Joined.After(time.Now()) || m.Self != (n == "lab") {
						t.Errorf("members on lab: %s: %+v", n, m)
					}
					if (n == "lab" || n == "clinic") && (!m.Connected || m.LastSeen == nil || len(m.Addrs) == 0) {
						t.Errorf("members on lab: %s is not connected with an address and a last_seen: %+v", n, m)
					}
				}
				for n, want := range map[string]string{"clinic": "St Mary", "lab": "Central Lab", "research": "Uni Research", "joiner": "Joiner Clinic"} {
					if orgs[e.ids[n]] != want {
						t.Errorf("members on lab: %s has org %q, want %q (%v)", n, orgs[e.ids[n]], want, orgs)
					}
				}
			}},
		{cmd: "members", node: on("lab"), args: argv("members", "extra"), code: exitInvalid},

		// Records.
		{cmd: "add", node: on("clinic"), args: func(e *tableEnv) []string {
			return []string{"add", e.path("report.json"), "--class", "report", "--replicas", "2"}
		},
			check: func(t *testing.T, e *tableEnv, out string) {
				r := decode[api.AddResult](t, out)
				if r.ID == "" || r.Version != 1 || r.Size == 0 {
					t.Errorf("add: %+v", r)
				}
				e.vals["record"] = r.ID
			}},
		{cmd: "add", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"add", e.path("report.json"), "--class", "smith-john"} }, code: exitInvalid,
			check: func(t *testing.T, e *tableEnv, msg string) {
				has("smith-john", "document, report, imaging")(t, e, msg)
				// Nothing reached the ledger.
				for _, en := range decode[[]api.LedgerEntry](t, e.clinic.must("ledger", "log", "--type", ledger.TypeRecordAnnounce, "--json")) {
					if c, _ := en.Payload.(map[string]any)["class"].(string); c != "report" {
						t.Errorf("a record with class %q is on the ledger", c)
					}
				}
			}},
		{cmd: "add", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"add", e.path("missing.pdf")} }, code: exitInvalid, check: has("cannot read")},
		{cmd: "ls", node: on("clinic"), args: argv("ls"), check: func(t *testing.T, e *tableEnv, out string) {
			rs := decode[[]api.Record](t, out)
			if len(rs) != 1 || rs[0].ID != e.vals["record"] || rs[0].Class != "report" || rs[0].Replicas != 2 || len(rs[0].Holders) == 0 || !rs[0].Mine {
				t.Errorf("ls: %+v", rs)
			}
		}},
		{cmd: "ls", node: on("clinic"), args: argv("ls", "extra"), code: exitInvalid},
		{cmd: "grant", node: on("clinic"), args: func(e *tableEnv) []string {
			return []string{"grant", e.vals["record"], "--to", e.ids["lab"], "--purpose", "treatment", "--expires", "72h"}
		}, check: func(t *testing.T, e *tableEnv, out string) {
			g := decode[api.Grant](t, out)
			if g.ID != e.vals["record"] || g.Grantee != e.ids["lab"] || g.Expires.IsZero() || g.Entry == "" {
				t.Errorf("grant: %+v", g)
			}
		}},
		{cmd: "grant", node: on("clinic"), args: func(e *tableEnv) []string {
			return []string{"grant", e.vals["record"], "--to", e.ids["research"], "--purpose", "fun"}
		}, code: exitInvalid, check: has("treatment, research")},
		{cmd: "grant", node: on("clinic"), args: func(e *tableEnv) []string {
			return []string{"grant", e.vals["record"], "--to", e.ids["research"], "--expires", "-5h"}
		}, code: exitInvalid, check: has("must be positive")},
		{cmd: "grant", node: on("lab"), args: func(e *tableEnv) []string { return []string{"grant", e.vals["record"], "--to", e.ids["research"]} }, code: exitForbidden, retry: 10 * time.Second},
		{cmd: "grants", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"grants", id(e)} }, check: func(t *testing.T, e *tableEnv, out string) {
			gs := decode[[]api.Grant](t, out)
			if len(gs) != 1 || gs[0].Grantee != e.ids["lab"] || gs[0].Expired {
				t.Errorf("grants: %+v", gs)
			}
		}},
		{cmd: "grants", node: on("clinic"), args: argv("grants", badCID), code: exitNotFound},
		// The lab sees the share as an event (watch) before it reads.
		{cmd: "watch", node: on("lab"), args: argv("watch", "--recent", "--count", "1", "--timeout", "30s"), check: func(t *testing.T, e *tableEnv, out string) {
			ev := decode[api.Event](t, out)
			if ev.Type != api.EventShared || ev.ID != e.vals["record"] || ev.Name != "report.json" || ev.Owner != e.ids["clinic"] ||
				ev.OwnerOrg != "St Mary" || ev.Grantee != e.ids["lab"] || ev.Purpose != "treatment" || ev.Expires.IsZero() {
				t.Errorf("watch: %+v", ev)
			}
		}},
		{cmd: "watch", node: on("lab"), args: argv("watch", "--count", "1", "--timeout", "1s"), code: exitUnavailable, check: has("no event within 1s")},
		{cmd: "watch", node: on("lab"), args: argv("watch", "--count", "-1"), code: exitInvalid, check: has("--count")},
		{cmd: "watch", node: on("nonet"), args: func(e *tableEnv) []string { return []string{"--repo", e.path("nowhere"), "watch"} }, code: exitNoDaemon},
		{cmd: "ui", node: on("lab"), args: argv("ui", "--url"), check: func(t *testing.T, e *tableEnv, out string) {
			r := decode[uiResult](t, out)
			if !strings.HasPrefix(r.URL, "http://127.0.0.1:") || !strings.Contains(r.URL, "/ui/login?code=") || r.Opened ||
				!r.Expires.After(time.Now()) || r.Expires.After(time.Now().Add(3*time.Minute)) {
				t.Errorf("ui --url: %+v", r)
			}
		}},
		{cmd: "ui", node: on("lab"), args: argv("ui", "extra"), code: exitInvalid},
		{cmd: "ui", node: on("nonet"), args: func(e *tableEnv) []string { return []string{"--repo", e.path("nowhere"), "ui", "--url"} }, code: exitNoDaemon},
		{cmd: "get", node: on("lab"), args: func(e *tableEnv) []string { return []string{"get", id(e), "-o", e.path("lab-copy.json")} }, retry: 15 * time.Second,
			check: func(t *testing.T, e *tableEnv, out string) {
				b, _ := os.ReadFile(e.path("lab-copy.json"))
				want, _ := os.ReadFile(e.path("report.json"))
				if !bytes.Equal(b, want) {
					t.Errorf("lab's copy differs")
				}
				if r := decode[map[string]any](t, out); r["id"] != id(e) {
					t.Errorf("get: %v", r)
				}
			}},
		{cmd: "get", node: on("clinic"), args: argv("get", "BAD", "-o", "x"), code: exitInvalid, check: has("not a record ID", "bafkrei")},
		{cmd: "get", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"get", badCID, "-o", e.path("none")} }, code: exitNotFound},
		{cmd: "get", node: on("research"), args: func(e *tableEnv) []string { return []string{"get", id(e), "-o", e.path("none")} }, code: exitForbidden},
		{cmd: "audit", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"audit", id(e)} }, retry: 10 * time.Second,
			check: func(t *testing.T, e *tableEnv, out string) {
				if evs := decode[[]api.AccessEvent](t, out); len(evs) == 0 {
					t.Errorf("audit: no reads")
				}
			}},
		{cmd: "audit", node: on("lab"), args: func(e *tableEnv) []string { return []string{"audit", id(e)} }, code: exitForbidden},
		// The owner's audit log: its signed head, proofs, and the
		// offline verifier (run on a repo without a daemon).
		{cmd: "audit head", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"audit", "head", "-o", e.path("head.txt")} },
			retry: 15 * time.Second, ready: func(out string) bool {
				// The lab's read: its claim and the clinic's attestation.
				var h api.AuditHead
				return json.Unmarshal([]byte(out), &h) == nil && h.TreeSize >= 2
			},
			check: func(t *testing.T, e *tableEnv, out string) {
				h := decode[api.AuditHead](t, out)
				b, _ := os.ReadFile(e.path("head.txt"))
				if h.Owner != e.ids["clinic"] || h.TreeSize < 2 || h.Root == "" || string(b) != h.TreeHead || !strings.HasPrefix(h.TreeHead, "medmesh-audit/"+h.Owner+"\n") {
					t.Errorf("audit head: %+v", h)
				}
			}},
		{cmd: "audit head", node: on("clinic"), args: argv("audit", "head", "extra"), code: exitInvalid},
		{cmd: "audit prove", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"audit", "prove", id(e), "-o", e.path("proof.json")} },
			check: func(t *testing.T, e *tableEnv, out string) {
				f := decode[auditlog.ProofFile](t, out)
				types := map[string]bool{}
				for _, p := range f.Proofs {
					types[p.Type] = true
				}
				if f.Kind != "inclusion" || f.ID != id(e) || !types[ledger.TypeAccess] || !types[ledger.TypeServed] {
					t.Errorf("audit prove: %s", out)
				}
				// A copy with one hash of an audit path changed: the
				// verifier must refuse it.
				f.Proofs[0].Path = append([]string{auditlog.EncodeHash(auditlog.LeafHash([]byte("forged")))}, f.Proofs[0].Path...)[:len(f.Proofs[0].Path)]
				if len(f.Proofs[0].Path) == 0 {
					f.Proofs[0].Index++
				}
				b, _ := json.Marshal(f)
				os.WriteFile(e.path("forged-proof.json"), b, 0o600)
			}},
		{cmd: "audit prove", node: on("lab"), args: func(e *tableEnv) []string { return []string{"audit", "prove", id(e)} }, code: exitForbidden, check: has("belongs to")},
		{cmd: "audit prove", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"audit", "prove", id(e), badCID} }, code: exitNotFound, check: has("not in this node's audit log")},
		{cmd: "audit consistency", node: on("clinic"), args: func(e *tableEnv) []string {
			return []string{"audit", "consistency", e.path("head.txt"), "-o", e.path("grew.json")}
		}, check: func(t *testing.T, e *tableEnv, out string) {
			f := decode[auditlog.ProofFile](t, out)
			if f.Kind != "consistency" || f.OldSize < 2 || f.NewSize < f.OldSize || f.OldTreeHead == "" || f.NewTreeHead == "" {
				t.Errorf("audit consistency: %s", out)
			}
		}},
		{cmd: "audit consistency", node: on("clinic"), args: argv("audit", "consistency", "0"), code: exitInvalid, check: has("from 1")},
		{cmd: "audit consistency", node: on("clinic"), args: argv("audit", "consistency", "1000000"), code: exitInvalid, check: has("the log has")},
		{cmd: "audit verify-proof", node: on("nonet"), args: func(e *tableEnv) []string {
			return []string{"audit", "verify-proof", e.path("proof.json"), "--owner", e.ids["clinic"]}
		}, check: func(t *testing.T, e *tableEnv, out string) {
			r := decode[map[string]any](t, out)
			if r["verified"] != true || r["kind"] != "inclusion" || r["id"] != id(e) || len(r["verified_entries"].([]any)) < 2 {
				t.Errorf("verify-proof: %s", out)
			}
		}},
		{cmd: "audit verify-proof", node: on("nonet"), args: func(e *tableEnv) []string {
			return []string{"audit", "verify-proof", e.path("grew.json"), "--head", e.path("head.txt")}
		}, check: has(`"verified": true`, `"kind": "consistency"`)},
		{cmd: "audit verify-proof", node: on("nonet"), args: func(e *tableEnv) []string {
			return []string{"audit", "verify-proof", e.path("forged-proof.json")}
		}, code: exitVerify, check: has("not leaf")},
		{cmd: "audit verify-proof", node: on("nonet"), args: func(e *tableEnv) []string {
			return []string{"audit", "verify-proof", e.path("proof.json"), "--owner", e.ids["lab"]}
		}, code: exitVerify, check: has("'s log, not")},
		{cmd: "audit verify-proof", node: on("nonet"), args: func(e *tableEnv) []string { return []string{"audit", "verify-proof", e.path("report.json")} },
			code: exitInvalid, check: has("not a proof file")},
		{cmd: "status", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"status", id(e)} }, check: func(t *testing.T, e *tableEnv, out string) {
			st := decode[api.Status](t, out)
			if st.ID != id(e) || st.Replicas != 2 || len(st.Holders) == 0 {
				t.Errorf("status: %+v", st)
			}
		}},
		{cmd: "status", node: on("clinic"), args: argv("status", "BAD"), code: exitInvalid},
		{cmd: "revoke", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"revoke", id(e), "--from", e.ids["lab"]} }, check: func(t *testing.T, e *tableEnv, out string) {
			r := decode[api.RevokeResult](t, out)
			if r.ID != id(e) || r.Grantee != e.ids["lab"] || r.VersionCount != 1 {
				t.Errorf("revoke: %+v", r)
			}
		}},
		{cmd: "revoke", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"revoke", id(e), "--from", e.ids["lab"]} }, code: exitNotFound, check: has("no grant")},
		{cmd: "update", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"update", id(e), e.path("report-v2.json")} }, check: func(t *testing.T, e *tableEnv, out string) {
			r := decode[api.AddResult](t, out)
			if r.Version != 2 || r.Prev != id(e) {
				t.Errorf("update: %+v", r)
			}
		}},
		{cmd: "update", node: on("lab"), args: func(e *tableEnv) []string { return []string{"update", id(e), e.path("report-v2.json")} }, code: exitForbidden},

		// The ledger.
		{cmd: "ledger log", node: on("research"), args: argv("ledger", "log", "--type", "member.org"), check: func(t *testing.T, e *tableEnv, out string) {
			stated := map[string]string{}
			for _, en := range decode[[]api.LedgerEntry](t, out) {
				p, _ := en.Payload.(map[string]any)
				if en.Author != p["peer"] {
					t.Errorf("member.org by %s names %v", en.Author, p["peer"])
				}
				stated[en.Author], _ = p["org"].(string)
			}
			// The clinic (admitted by the genesis) and the research node
			// (invited without --org) stated theirs; the lab's came with
			// its invite.
			if stated[e.ids["clinic"]] != "St Mary" || stated[e.ids["research"]] != "Uni Research" || len(stated) != 2 {
				t.Errorf("member.org entries: %v", stated)
			}
		}},
		{cmd: "ledger log", node: on("clinic"), args: argv("ledger", "log", "--type", "grants"), code: exitInvalid, check: has("unknown --type", "grant, implant.explant", "implant.use, key.announce")},
		{cmd: "ledger log", node: on("clinic"), args: argv("ledger", "log", "--limit", "-1"), code: exitInvalid},
		{cmd: "ledger heads", node: on("clinic"), args: argv("ledger", "heads"), check: func(t *testing.T, e *tableEnv, out string) {
			if h := decode[api.Heads](t, out); len(h.Heads) == 0 || len(h.State) != 64 {
				t.Errorf("heads: %+v", h)
			}
		}},
		{cmd: "ledger heads", node: on("clinic"), args: argv("ledger", "heads", "extra"), code: exitInvalid},
		{cmd: "ledger stat", node: on("lab"), args: argv("ledger", "stat"), retry: 30 * time.Second, ready: func(out string) bool {
			return strings.Contains(out, `"synced": true`)
		}, check: func(t *testing.T, e *tableEnv, out string) {
			if st := decode[api.LedgerStat](t, out); st.Entries < 10 || st.Size < 100*st.Entries || len(st.Scopes) < 3 || st.Scopes[0] != "global" || !st.Synced {
				t.Errorf("stat: %+v", st)
			}
		}},
		{cmd: "ledger stat", node: on("lab"), args: argv("ledger", "stat", "extra"), code: exitInvalid},
		{cmd: "ledger stat", node: on("lab"), args: argv("ledger", "stat", "--by-scope"), check: func(t *testing.T, e *tableEnv, out string) {
			st := decode[api.LedgerStat](t, out)
			var sum int64
			for _, x := range st.ByScope {
				sum += x.Entries
			}
			if len(st.ByScope) < 3 || st.ByScope[0].Scope != "global" || st.ByScope[0].Why != "global" || sum < 10 {
				t.Errorf("stat --by-scope: %+v", st)
			}
		}},
		{cmd: "ledger stat", node: on("lab"), args: argv("ledger", "stat", "--by-scope=maybe"), code: exitInvalid},
		{cmd: "ledger verify", node: on("lab"), args: argv("ledger", "verify"), check: func(t *testing.T, e *tableEnv, out string) {
			if v := decode[api.VerifyResult](t, out); !v.OK || v.Entries < 10 {
				t.Errorf("verify: %+v", v)
			}
		}},
		{cmd: "ledger verify", node: on("lab"), args: argv("ledger", "verify", "extra"), code: exitInvalid},
		// Checkpoints: the clinic founded the network (its admin); the lab is
		// a member, not an admin.
		{cmd: "ledger checkpoints", node: on("clinic"), args: argv("ledger", "checkpoints"), check: func(t *testing.T, e *tableEnv, out string) {
			if cks := decode[[]api.Checkpoint](t, out); len(cks) != 0 {
				t.Errorf("checkpoints before any was made: %+v", cks)
			}
		}},
		{cmd: "ledger checkpoint", node: on("lab"), args: argv("ledger", "checkpoint"), code: exitForbidden, check: has("not signed by enough trusted admins", "admin's node")},
		{cmd: "ledger prune", node: on("lab"), args: argv("ledger", "prune"), code: exitConflict, check: has("no trusted checkpoint", "medmesh ledger checkpoint")},
		{cmd: "ledger checkpoint", node: on("clinic"), args: argv("ledger", "checkpoint"), check: func(t *testing.T, e *tableEnv, out string) {
			ck := decode[api.Checkpoint](t, out)
			if ck.Index != 0 || ck.EntryCount < 10 || len(ck.Digest) != 64 || ck.BlockCount < 1 || ck.Prev != "" ||
				!slices.Equal(ck.Signatures, []string{e.ids["clinic"]}) || !slices.Contains(ck.Signers, e.ids["clinic"]) || ck.Quorum != 1 ||
				!ck.Trusted || ck.Proposal != "" {
				t.Errorf("checkpoint: %+v", ck)
			}
			e.vals["checkpoint"] = ck.Checkpoint
		}},
		{cmd: "ledger checkpoint", node: on("clinic"), args: argv("ledger", "checkpoint", "extra"), code: exitInvalid},
		{cmd: "ledger checkpoint", node: on("clinic"), args: argv("ledger", "checkpoint", "--scope", "owner/nobody"), code: exitInvalid, check: has("bad peer ID", "owner/<peer ID>")},
		{cmd: "ledger checkpoints", node: on("clinic"), args: argv("ledger", "checkpoints", "--scope", "elsewhere"), code: exitInvalid, check: has("unknown scope")},
		{cmd: "ledger checkpoint", node: on("clinic"), args: argv("ledger", "checkpoint", "--cosign", "bm90IGEgY2hlY2twb2ludA=="), code: exitInvalid, check: has("bad checkpoint proposal", "proposal")},
		// The lab adopts it at its next sync with the clinic.
		{cmd: "ledger checkpoints", node: on("lab"), args: argv("ledger", "checkpoints"), retry: 45 * time.Second,
			ready: func(out string) bool { return strings.Contains(out, `"checkpoint"`) }, check: func(t *testing.T, e *tableEnv, out string) {
				cks := decode[[]api.Checkpoint](t, out)
				if len(cks) != 1 || cks[0].Checkpoint != e.vals["checkpoint"] || cks[0].Base {
					t.Errorf("lab's checkpoints: %+v", cks)
				}
			}},
		{cmd: "ledger prune", node: on("lab"), args: argv("ledger", "prune"), check: func(t *testing.T, e *tableEnv, out string) {
			if r := decode[api.PruneResult](t, out); r.Checkpoint != e.vals["checkpoint"] || r.ExaminedCount != r.PrunedCount+r.KeptCount || r.KeptCount == 0 {
				t.Errorf("prune: %+v", r)
			}
		}},
		{cmd: "ledger checkpoints", node: on("lab"), args: argv("ledger", "checkpoints", "x"), code: exitInvalid},
		{cmd: "ledger prune", node: on("lab"), args: argv("ledger", "prune", "x"), code: exitInvalid},
		{cmd: "ledger", node: on("clinic"), args: argv("ledger"), text: true, check: has("heads", "log", "stat", "verify")},
		{cmd: "ledger", node: on("clinic"), args: argv("ledger", "grants"), code: exitInvalid},

		// Settings (offline, on the repo; the clinic's daemon is running).
		{cmd: "config", node: on("clinic"), args: argv("config"), text: true, check: has("replication.grace (default 10m)", "storage.quota", "addresses.announce", "set", "unset")},
		{cmd: "config", node: on("clinic"), args: argv("config", "get"), code: exitInvalid, check: has("set, show, unset")},
		{cmd: "config show", node: on("clinic"), args: argv("config", "show"), check: func(t *testing.T, e *tableEnv, out string) {
			c := decode[configShow](t, out)
			keys := map[string]configSetting{}
			for _, s := range c.Settings {
				keys[s.Key] = s
			}
			if !c.DaemonRunning || len(c.Settings) < 14 || keys["replication.grace"].Value != "10m" || !keys["replication.grace"].IsDefault ||
				keys["addresses.api"].Value != "127.0.0.1:0" || keys["addresses.api"].IsDefault || keys["org"].Value != "St Mary" {
				t.Errorf("config show: %+v", c)
			}
		}},
		{cmd: "config show", node: on("clinic"), args: argv("config", "show", "replication.graze"), code: exitInvalid, check: has(`unknown setting "replication.graze"`, "replication.grace")},
		{cmd: "config show", node: on("nonet"), args: func(e *tableEnv) []string { return []string{"--repo", e.path("nowhere"), "config", "show"} }, code: exitNoDaemon, check: has("medmesh init")},
		{cmd: "config set", node: on("clinic"), args: argv("config", "set", "replication.grace", "15m"), check: func(t *testing.T, e *tableEnv, out string) {
			r := decode[configSetResult](t, out)
			if r.Key != "replication.grace" || r.Value != "15m" || r.Previous != "10m" || !r.Changed || !r.DaemonRunning || !r.RestartNeeded {
				t.Errorf("config set: %+v", r)
			}
			if c := decode[configShow](t, e.clinic.must("config", "show", "replication.grace", "--json")); !c.RestartNeeded || c.Settings[0].Value != "15m" {
				t.Errorf("config show after set: %+v", c)
			}
		}},
		{cmd: "config set", node: on("clinic"), args: argv("config", "set", "replication.grace", "banana"), code: exitInvalid, check: has(`"banana" is not a duration`, "30s, 10m, 1h30m")},
		{cmd: "config set", node: on("clinic"), args: argv("config", "set", "storage.quota", "lots"), code: exitInvalid, check: has("not a size", "20GiB")},
		{cmd: "config set", node: on("clinic"), args: argv("config", "set", "replication.grace"), code: exitInvalid},
		{cmd: "config unset", node: on("clinic"), args: argv("config", "unset", "replication.grace"), check: func(t *testing.T, e *tableEnv, out string) {
			if r := decode[configSetResult](t, out); r.Value != "10m" || r.Previous != "15m" {
				t.Errorf("config unset: %+v", r)
			}
		}},
		{cmd: "config unset", node: on("clinic"), args: argv("config", "unset", "colour"), code: exitInvalid, check: has(`unknown setting "colour"`)},

		// Visibility.
		{cmd: "version", node: on("nonet"), args: argv("version"), check: func(t *testing.T, e *tableEnv, out string) {
			v := decode[api.VersionInfo](t, out)
			if v.Version == "" || v.Commit == "" || v.Go != runtime.Version() || v.Platform != runtime.GOOS+"/"+runtime.GOARCH {
				t.Errorf("version: %+v", v)
			}
		}},
		{cmd: "version", node: on("nonet"), args: argv("version", "extra"), code: exitInvalid},
		{cmd: "health", node: on("clinic"), args: argv("health"), retry: 30 * time.Second, check: func(t *testing.T, e *tableEnv, out string) {
			h := decode[api.Health](t, out)
			if !h.Healthy || !h.Member || h.MemberCount < 2 || h.ConnectedCount < 2 || h.OwnedCount < 1 || h.UnderReplicatedCount != 0 ||
				!h.Ledger.InSync || h.Ledger.ComparedCount < 2 || h.Peer != e.ids["clinic"] || h.Ledger.NoGossip == nil || !strings.Contains(out, `"gossip_repairs":`) || h.Ledger.ClockAhead == nil {
				t.Errorf("health: %+v", h)
			}
		}},
		{cmd: "health", node: on("nonet"), args: func(e *tableEnv) []string { return []string{"--repo", e.path("nowhere"), "health"} }, code: exitNoDaemon},
		{cmd: "health", node: on("clinic"), args: argv("health", "extra"), code: exitInvalid},

		// Backup and restore (TestBackupRestore restores a node and runs it).
		{cmd: "backup", node: on("clinic"), args: func(e *tableEnv) []string {
			return []string{"backup", "-o", e.path("clinic.age"), "--passphrase-file", e.path("pass")}
		}, check: func(t *testing.T, e *tableEnv, out string) {
			r := decode[api.BackupResult](t, out)
			if r.Peer != e.ids["clinic"] || r.File != e.path("clinic.age") || r.Size == 0 || r.PeerCount < 2 || !slices.Contains(r.Files, "kem.key") || slices.Contains(r.Files, "api.token") {
				t.Errorf("backup: %+v", r)
			}
		}},
		{cmd: "backup", node: on("clinic"), args: argv("backup"), code: exitInvalid, check: has("-o")},
		{cmd: "backup", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"backup", "-o", e.path("x.age")} }, code: exitInvalid, check: has("--passphrase-file")},
		{cmd: "restore", node: on("nonet"), args: func(e *tableEnv) []string {
			return []string{"--repo", e.path("restored"), "restore", e.path("clinic.age"), "--passphrase-file", e.path("pass")}
		}, check: func(t *testing.T, e *tableEnv, out string) {
			if r := decode[api.RestoreResult](t, out); r.Peer != e.ids["clinic"] || r.Repo != e.path("restored") || r.PeerCount < 2 {
				t.Errorf("restore: %+v", r)
			}
		}},
		{cmd: "restore", node: on("nonet"), args: func(e *tableEnv) []string {
			return []string{"--repo", e.path("restored2"), "restore", e.path("clinic.age"), "--passphrase-file", e.path("wrong-pass")}
		}, code: exitInvalid, check: has("passphrase does not open")},
		{cmd: "restore", node: on("nonet"), args: func(e *tableEnv) []string {
			return []string{"--repo", e.path("restored"), "restore", e.path("clinic.age"), "--passphrase-file", e.path("pass")}
		}, code: exitConflict, check: has("already holds")},

		// Replication housekeeping.
		{cmd: "gc", node: on("lab"), args: argv("gc"), check: func(t *testing.T, e *tableEnv, out string) { decode[map[string]int64](t, out) }},
		{cmd: "gc", node: on("lab"), args: argv("gc", "now"), code: exitInvalid},
		{cmd: "repo stat", node: on("lab"), args: argv("repo", "stat"), check: func(t *testing.T, e *tableEnv, out string) {
			if st := decode[api.RepoStat](t, out); st.BlockCount == 0 || st.OrphanBlockCount != 0 || st.LedgerEntryCount == 0 {
				t.Errorf("repo stat: %+v", st)
			}
		}},
		{cmd: "repo stat", node: on("nonet"), args: argv("repo", "stat"), code: exitNoDaemon},
		{cmd: "repo", node: on("clinic"), args: argv("repo"), text: true, check: has("stat")},
		{cmd: "repo", node: on("clinic"), args: argv("repo", "stats"), code: exitInvalid},
		{cmd: "reprovide", node: on("clinic"), args: argv("reprovide"), check: has(`"block_count"`, `"seconds"`)},
		{cmd: "reprovide", node: on("nonet"), args: argv("reprovide"), code: exitNoDaemon},

		// Imaging.
		{cmd: "dicom import", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"dicom", "import", e.path("study")} }, check: func(t *testing.T, e *tableEnv, out string) {
			r := decode[struct {
				Studies []struct {
					ID        string `json:"id"`
					Instances int    `json:"instance_count"`
				} `json:"studies"`
			}](t, out)
			if len(r.Studies) != 1 || r.Studies[0].Instances != 2 {
				t.Fatalf("import: %s", out)
			}
			e.vals["study"] = r.Studies[0].ID
		}},
		{cmd: "dicom import", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"dicom", "import", e.path("not-dicom.dcm")} }, code: exitInvalid, check: has("rejected")},
		{cmd: "dicom query", node: on("clinic"), args: argv("dicom", "query", "--modality", "mr"), check: func(t *testing.T, e *tableEnv, out string) {
			if !strings.Contains(out, e.vals["study"]) {
				t.Errorf("query --modality mr does not find the MR study:\n%s", out)
			}
		}},
		// Modalities are open-ended (archives hold "MRI", "PET"...): a value
		// no study has is an empty answer, not an error.
		{cmd: "dicom query", node: on("clinic"), args: argv("dicom", "query", "--modality", "MRI"), check: func(t *testing.T, e *tableEnv, out string) {
			if strings.TrimSpace(out) != "[]" {
				t.Errorf("query --modality MRI: %s, want []", out)
			}
		}},
		{cmd: "dicom query", node: on("clinic"), args: argv("dicom", "query", "--from", "yesterday"), code: exitInvalid, check: has("date")},
		{cmd: "dicom export", node: on("clinic"), args: func(e *tableEnv) []string {
			return []string{"dicom", "export", e.vals["study"], "-o", e.path("export")}
		}, check: has(`"instance_count": 2`, `"files"`)},
		{cmd: "dicom export", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"dicom", "export", "BAD", "-o", e.path("export")} }, code: exitInvalid},
		{cmd: "dicom deidentify", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"dicom", "deidentify", e.vals["study"], "--shift-dates"} }, check: has(`"excluded": []`, `"instance_count": 2`)},
		{cmd: "dicom deidentify", node: on("clinic"), args: func(e *tableEnv) []string {
			return []string{"dicom", "deidentify", e.vals["study"], "--purpose", "fun"}
		}, code: exitInvalid},
		{cmd: "dicom echo", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"dicom", "echo", e.vals["scp"]} },
			check: has(`"to": "TABLESCP@127.0.0.1:`, `"calling_ae": "MEDMESH"`, `"seconds"`)},
		{cmd: "dicom echo", node: on("clinic"), args: func(e *tableEnv) []string {
			return []string{"dicom", "echo", "OTHER" + e.vals["scp"][len("TABLESCP"):]}
		},
			code: exitForbidden, check: has("must know this node as MEDMESH")},
		{cmd: "dicom echo", node: on("clinic"), args: argv("dicom", "echo", "127.0.0.1:104"), code: exitInvalid, check: has("AE@host:port")},
		{cmd: "dicom echo", node: on("clinic"), args: argv("dicom", "echo", "PACS@127.0.0.1:1"), code: exitUnavailable},
		{cmd: "dicom send", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"dicom", "send", e.vals["study"], "--to", e.vals["scp"]} },
			check: has(`"sent_count": 2`, `"instance_count": 2`, `"failed": []`)},
		{cmd: "dicom send", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"dicom", "send", e.vals["study"]} }, code: exitInvalid, check: has("--to")},
		{cmd: "dicom send", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"dicom", "send", badCID, "--to", e.vals["scp"]} }, code: exitNotFound},
		{cmd: "dicom", node: on("clinic"), args: argv("dicom"), text: true, check: has("import", "query", "echo", "send")},
		{cmd: "dicom", node: on("clinic"), args: argv("dicom", "imports"), code: exitInvalid},

		// Research: consents and datasets.
		{cmd: "consent add", node: on("clinic"), args: argv("consent", "add", "--patient", dicomtest.PatientID(1), "--purpose", "research", "--modality", "mr"), check: func(t *testing.T, e *tableEnv, out string) {
			c := decode[map[string]any](t, out)
			if c["modality"] != "MR" || c["expires"] != nil || c["purpose"] != "research" {
				t.Errorf("consent add: %v", c)
			}
		}},
		{cmd: "consent add", node: on("clinic"), args: argv("consent", "add", "--patient", "P2", "--modality", "SMITHJOHN"), code: exitInvalid, check: has("modality")},
		{cmd: "consent add", node: on("clinic"), args: argv("consent", "add", "--patient", "P2", "--purpose", "fun"), code: exitInvalid},
		{cmd: "consent add", node: on("clinic"), args: argv("consent", "add", "--patient", "P2", "--expires", "0s"), code: exitInvalid},
		{cmd: "consent revoke", node: on("clinic"), args: argv("consent", "revoke", "--patient", "OTHER-PATIENT", "--purpose", "treatment"), check: has(`"purpose": "treatment"`, `"entry"`)},
		{cmd: "consent revoke", node: on("clinic"), args: argv("consent", "revoke"), code: exitInvalid, check: has("patient")},
		{cmd: "consent ls", node: on("clinic"), args: argv("consent", "ls", "--purpose", "research"), check: has(`"expires": null`, `"purpose": "research"`)},
		{cmd: "consent ls", node: on("clinic"), args: argv("consent", "ls", "--purpose", "x"), code: exitInvalid},
		{cmd: "consent", node: on("clinic"), args: argv("consent"), text: true, check: has("add", "revoke")},
		{cmd: "consent", node: on("clinic"), args: argv("consent", "bogus"), code: exitInvalid},
		{cmd: "dataset create", node: on("clinic"), args: func(e *tableEnv) []string {
			return []string{"dataset", "create", "cohort", "--records", e.vals["study"]}
		},
			check: func(t *testing.T, e *tableEnv, out string) {
				r := decode[map[string]any](t, out)
				if st, _ := r["studies"].([]any); len(st) != 1 {
					t.Errorf("dataset create: %s", out)
				}
				e.vals["dataset"], _ = r["id"].(string)
			}},
		{cmd: "dataset create", node: on("clinic"), args: argv("dataset", "create", "cohort"), code: exitInvalid, check: has("--records or --query")},
		{cmd: "dataset create", node: on("clinic"), args: argv("dataset", "create", "cohort", "--query", "modality=MRI"), code: exitInvalid},
		{cmd: "dataset grant", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"dataset", "grant", "cohort", "--to", e.ids["research"]} },
			check: func(t *testing.T, e *tableEnv, out string) {
				gs := decode[[]map[string]any](t, out)
				if len(gs) != 1 || gs[0]["id"] != e.vals["dataset"] || gs[0]["record_count"] != 2.0 {
					t.Errorf("dataset grant: %s", out)
				}
			}},
		{cmd: "dataset grant", node: on("clinic"), args: argv("dataset", "grant", "cohort", "--to", "nope"), code: exitInvalid},
		{cmd: "dataset ls", node: on("research"), args: argv("dataset", "ls"), retry: 15 * time.Second, code: 0, check: has(`"name": "cohort"`, `"study_count": 1`)},
		{cmd: "dataset ls", node: on("research"), args: argv("dataset", "ls", "extra"), code: exitInvalid},
		{cmd: "dataset fetch", node: on("research"), args: func(e *tableEnv) []string { return []string{"dataset", "fetch", "cohort", "-o", e.path("fetched")} },
			retry: 15 * time.Second, check: has(`"fetched_count": 2`, `"done": true`)},
		{cmd: "dataset fetch", node: on("research"), args: func(e *tableEnv) []string {
			return []string{"dataset", "fetch", "no-such-dataset", "-o", e.path("nowhere")}
		}, code: exitNotFound, check: has("no readable dataset")},
		{cmd: "dataset", node: on("clinic"), args: argv("dataset"), text: true, check: has("create", "fetch")},
		{cmd: "dataset", node: on("clinic"), args: argv("dataset", "bogus"), code: exitInvalid},

		// Implant traceability: the clinic distributes, the lab implants,
		// the research node is the other member.
		{cmd: "implant register", node: on("clinic"), args: argv("implant", "register", "--udi", tableUDI), check: func(t *testing.T, e *tableEnv, out string) {
			d := decode[api.ImplantDevice](t, out)
			if d.Custodian != e.ids["clinic"] || d.Status != "available" || d.Lot != "TLOT1" || d.Expiry == nil || *d.Expiry != "2030-12-31" {
				t.Errorf("implant register: %s", out)
			}
			e.vals["device"] = d.Device
		}},
		{cmd: "implant register", node: on("clinic"), args: argv("implant", "register", "--udi", "(01)09506000134353(17)301231(10)TLOT1(21)T1"), code: exitInvalid, check: has("check digit")},
		{cmd: "implant register", node: on("clinic"), args: argv("implant", "register", "--udi", tableUDI), code: exitConflict, check: has("already registered")},
		{cmd: "implant transfer", node: on("research"), args: func(e *tableEnv) []string {
			return []string{"implant", "transfer", e.vals["device"], "--to", e.ids["research"]}
		}, code: exitForbidden, retry: 10 * time.Second, check: has("custodian")},
		{cmd: "implant transfer", node: on("clinic"), args: func(e *tableEnv) []string {
			return []string{"implant", "transfer", e.vals["device"], "--to", e.ids["lab"]}
		}, check: func(t *testing.T, e *tableEnv, out string) {
			if d := decode[api.ImplantDevice](t, out); d.Custodian != e.ids["lab"] {
				t.Errorf("implant transfer: %s", out)
			}
		}},
		{cmd: "implant transfer", node: on("clinic"), args: argv("implant", "transfer", "nope", "--to", "nope"), code: exitInvalid, check: has("not a peer ID")},
		{cmd: "implant use", node: on("lab"), args: func(e *tableEnv) []string {
			return []string{"implant", "use", e.vals["device"], "--patient", "P-4711", "--procedure", "L4-L5 fusion"}
		}, retry: 10 * time.Second, check: has(`"patient": "P-4711"`, `"status": "implanted"`)},
		{cmd: "implant use", node: on("lab"), args: func(e *tableEnv) []string {
			return []string{"implant", "use", e.vals["device"], "--patient", "P-4711", "--procedure", "again"}
		}, code: exitConflict, check: has("implanted once")},
		{cmd: "implant history", node: on("research"), args: func(e *tableEnv) []string { return []string{"implant", "history", e.vals["device"]} },
			retry: 10 * time.Second, ready: func(out string) bool { return strings.Contains(out, `"implanted"`) }, check: func(t *testing.T, e *tableEnv, out string) {
				d := decode[api.ImplantDevice](t, out)
				if len(d.History) != 3 || d.History[2].Type != "use" || d.Patient != "" || strings.Contains(out, "P-4711") {
					t.Errorf("implant history on another node: %s", out)
				}
			}},
		{cmd: "implant history", node: on("research"), args: argv("implant", "history", badCID), code: exitNotFound, check: has("no device")},
		{cmd: "implant ls", node: on("lab"), args: argv("implant", "ls"), check: has(`"patient": "P-4711"`)},
		{cmd: "implant ls", node: on("lab"), args: argv("implant", "ls", "extra"), code: exitInvalid},
		{cmd: "implant recall", node: on("research"), args: argv("implant", "recall", "--gtin", "09506000134352", "--lot", "TLOT1", "--reason", "x"), code: exitForbidden, check: has("registered no device")},
		{cmd: "implant recall", node: on("clinic"), args: argv("implant", "recall", "--gtin", "09506000134352", "--lot", "TLOT1", "--reason", "FSCA-T1: screw fracture"),
			check: has(`"count": 1`, `"as": "registrant"`)},
		{cmd: "implant recalls", node: on("lab"), args: argv("implant", "recalls"), retry: 10 * time.Second, ready: func(out string) bool { return strings.Contains(out, "FSCA-T1") },
			check: has(`"patient": "P-4711"`, `"procedure": "L4-L5 fusion"`)},
		{cmd: "implant recalls", node: on("research"), args: argv("implant", "recalls"), retry: 10 * time.Second, ready: func(out string) bool { return strings.Contains(out, "FSCA-T1") },
			check: func(t *testing.T, e *tableEnv, out string) {
				if strings.Contains(out, "P-4711") || !strings.Contains(out, e.vals["device"]) {
					t.Errorf("the other member's recalls: %s", out)
				}
			}},
		{cmd: "implant recalls", node: on("research"), args: argv("implant", "recalls", "--mine"), check: has(`"devices": []`, `"count": 0`)},
		{cmd: "implant recalls", node: on("lab"), args: argv("implant", "recalls", "extra"), code: exitInvalid},
		{cmd: "implant explant", node: on("lab"), args: func(e *tableEnv) []string { return []string{"implant", "explant", e.vals["device"]} }, check: has(`"status": "explanted"`)},
		{cmd: "implant explant", node: on("lab"), args: func(e *tableEnv) []string { return []string{"implant", "explant", e.vals["device"]} }, code: exitConflict, check: has("not implanted")},
		{cmd: "implant authorize", node: on("lab"), args: func(e *tableEnv) []string {
			return []string{"implant", "authorize", e.ids["research"], "--prefix", "9506000"}
		},
			code: exitForbidden, check: has("admin")},
		{cmd: "implant authorize", node: on("clinic"), args: func(e *tableEnv) []string {
			return []string{"implant", "authorize", e.ids["research"], "--prefix", "9506000"}
		},
			check: has(`"prefix": "9506000"`, `"issuer": "gs1"`)},
		{cmd: "implant manufacturers", node: on("research"), args: argv("implant", "manufacturers"), retry: 10 * time.Second,
			ready: func(out string) bool { return strings.Contains(out, "9506000") }, check: has(`"prefix": "9506000"`)},
		{cmd: "implant manufacturers", node: on("research"), args: argv("implant", "manufacturers", "extra"), code: exitInvalid},
		{cmd: "fhir export", node: on("lab"), args: func(e *tableEnv) []string {
			return []string{"fhir", "export", "--patient", "P-4711", "-o", e.path("bundle.json")}
		},
			check: func(t *testing.T, e *tableEnv, out string) {
				r := decode[fhirExportResult](t, out)
				b, err := os.ReadFile(e.path("bundle.json"))
				if r.Patient != "P-4711" || r.EntryCount < 3 || err != nil || !strings.Contains(string(b), `"Procedure"`) {
					t.Errorf("fhir export: %s (%v)", out, err)
				}
			}},
		{cmd: "fhir export", node: on("research"), args: func(e *tableEnv) []string {
			return []string{"fhir", "export", "--patient", "P-4711", "-o", e.path("x.json")}
		},
			code: exitNotFound, check: has("not known")},
		{cmd: "fhir", node: on("clinic"), args: argv("fhir"), text: true, check: has("export", "/fhir/metadata")},
		{cmd: "fhir", node: on("clinic"), args: argv("fhir", "bogus"), code: exitInvalid},
		{cmd: "implant", node: on("clinic"), args: argv("implant"), text: true, check: has("register", "recalls")},
		{cmd: "implant", node: on("clinic"), args: argv("implant", "bogus"), code: exitInvalid},

		// The demo: three nodes of its own, the whole story.
		{cmd: "demo", node: on("nonet"), args: argv("demo"), check: func(t *testing.T, e *tableEnv, out string) {
			r := decode[demoResult](t, out)
			all := strings.Join(r.Steps, "\n")
			for _, want := range []string{"identical: true", "was refused", "audit trail", "byte for byte identical: true", "de-identified copy"} {
				if !strings.Contains(all, want) {
					t.Errorf("demo lacks %q:\n%s", want, all)
				}
			}
			if r.Dir != nil {
				t.Errorf("demo without --keep reports dir %q", *r.Dir)
			}
		}},
		{cmd: "demo", node: on("nonet"), args: argv("demo", "extra"), code: exitInvalid},

		// Key rotation.
		{cmd: "keys rotate", node: on("research"), args: argv("keys", "rotate"), check: func(t *testing.T, e *tableEnv, out string) {
			r := decode[api.KeyRotateResult](t, out)
			if r.KeyID == "" || r.Entry == "" || len(r.OldKeys) != 1 || r.OldKeys[0].Destroy {
				t.Errorf("keys rotate: %+v", r)
			}
		}},
		{cmd: "keys rotate", node: on("research"), args: argv("keys", "rotate", "extra"), code: exitInvalid},
		{cmd: "keys", node: on("clinic"), args: argv("keys"), text: true, check: has("rotate")},
		{cmd: "keys", node: on("clinic"), args: argv("keys", "bogus"), code: exitInvalid},

		// Erasure.
		{cmd: "add", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"add", e.path("report-v2.json"), "--replicas", "1"} },
			check: func(t *testing.T, e *tableEnv, out string) { e.vals["doomed"] = decode[api.AddResult](t, out).ID }},
		{cmd: "delete", node: on("lab"), args: func(e *tableEnv) []string { return []string{"delete", e.vals["doomed"]} }, retry: 10 * time.Second,
			code: exitForbidden, check: has("owner")},
		{cmd: "delete", node: on("clinic"), args: argv("delete", "nope"), code: exitInvalid},
		{cmd: "delete", node: on("clinic"), args: argv("delete", badCID), code: exitNotFound},
		{cmd: "delete", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"delete", e.vals["doomed"], "--version", "7"} },
			code: exitNotFound, check: has("no version 7")},
		{cmd: "delete", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"delete", e.vals["doomed"]} }, check: func(t *testing.T, e *tableEnv, out string) {
			r := decode[api.DeleteResult](t, out)
			if r.ID != e.vals["doomed"] || len(r.Versions) != 1 || r.Versions[0] != 1 || r.Entry == "" {
				t.Errorf("delete: %+v", r)
			}
		}},
		{cmd: "get", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"get", e.vals["doomed"], "-o", e.path("doomed.json")} },
			code: exitNotFound, check: has("erased")},
		{cmd: "status", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"status", e.vals["doomed"]} }, check: func(t *testing.T, e *tableEnv, out string) {
			if st := decode[api.Status](t, out); !st.Erased || len(st.Holders) != 0 {
				t.Errorf("status of an erased record: %s", out)
			}
		}},

		// Removal, last: it rotates the network's key.
		{cmd: "network remove", node: on("lab"), args: func(e *tableEnv) []string { return []string{"network", "remove", "--peer", e.ids["joiner"]} },
			code: exitForbidden, check: has("admin")},
		{cmd: "network remove", node: on("clinic"), args: argv("network", "remove", "--peer", "nope"), code: exitInvalid, check: has("not a peer ID")},
		{cmd: "network remove", node: on("clinic"), args: func(e *tableEnv) []string { return []string{"network", "remove", "--peer", e.ids["nonet"]} },
			code: exitNotFound, check: has("not a member")},
		{cmd: "network remove", node: on("clinic"), args: func(e *tableEnv) []string {
			return []string{"network", "remove", "--peer", e.ids["joiner"], "--key-overlap", "soon"}
		}, code: exitInvalid, check: has("--key-overlap")},
		{cmd: "network remove", node: on("clinic"), args: func(e *tableEnv) []string {
			return []string{"network", "remove", "--peer", e.ids["joiner"], "--reason", "contract ended (Dr Smith)"}
		}, check: func(t *testing.T, e *tableEnv, out string) {
			r := decode[api.RemoveResult](t, out)
			if r.Peer != e.ids["joiner"] || r.Entry == "" || r.KeyEntry == "" || r.Epoch != 1 || !r.Retire.After(r.Activate) || r.Reason != "contract ended (Dr Smith)" {
				t.Errorf("remove: %+v", r)
			}
		}},
		{cmd: "members", node: on("research"), args: argv("members"), retry: 15 * time.Second,
			ready: func(out string) bool { return !strings.Contains(out, "Joiner Clinic") }, check: func(t *testing.T, e *tableEnv, out string) {
				for _, m := range decode[[]api.Member](t, out) {
					if m.Peer == e.ids["joiner"] {
						t.Errorf("the removed member is still listed: %s", out)
					}
				}
			}},
		// The reason never reaches the ledger.
		{cmd: "ledger log", node: on("research"), args: argv("ledger", "log", "--type", "network.key"), retry: 15 * time.Second,
			ready: func(out string) bool { return strings.Contains(out, "network.key") }, check: func(t *testing.T, e *tableEnv, out string) {
				if strings.Contains(out, "Dr Smith") || strings.Contains(out, "contract ended") {
					t.Errorf("the removal's reason is on the ledger")
				}
			}},
		{cmd: "ledger log", node: on("research"), args: argv("ledger", "log", "--type", "member.remove"), check: func(t *testing.T, e *tableEnv, out string) {
			if strings.Contains(out, "Dr Smith") || strings.Contains(out, "contract ended") {
				t.Errorf("the removal's reason is on the ledger")
			}
			if !strings.Contains(out, "member.remove") || !strings.Contains(out, e.ids["joiner"]) {
				t.Errorf("no removal on the research node's ledger: %s", out)
			}
		}},
	}
}

// commandPaths lists every command of the CLI by path ("" is the root;
// help topics included) and whether it is runnable.
func commandPaths() map[string]bool {
	out := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		p := strings.TrimPrefix(strings.TrimPrefix(c.CommandPath(), "medmesh"), " ")
		out[p] = c.Runnable()
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	root := newRootCmd()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	walk(root)
	return out
}

// TestCLITableCoversEveryCommand fails when a command has no success row,
// or a runnable command no failing row, in TestCLICommandTable: a new
// command must add its rows.
func TestCLITableCoversEveryCommand(t *testing.T) {
	ok, bad := map[string]bool{}, map[string]bool{}
	for _, r := range cliRows() {
		if r.code == 0 {
			ok[r.cmd] = true
		} else {
			bad[r.cmd] = true
		}
	}
	var missing []string
	for p, runnable := range commandPaths() {
		if strings.HasPrefix(p, "completion ") || strings.HasPrefix(p, "help ") {
			continue // cobra's generated shells and help; `completion bash` and `help add` stand for them
		}
		if !ok[p] {
			missing = append(missing, fmt.Sprintf("%q has no success row", p))
		}
		if runnable && !bad[p] && p != "help" && p != "completion" {
			missing = append(missing, fmt.Sprintf("%q has no bad-input row", p))
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Error(m)
	}
	paths := commandPaths()
	for c := range ok {
		if _, exists := paths[c]; !exists {
			t.Errorf("row for %q, which is not a command", c)
		}
	}
}
