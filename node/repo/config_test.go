package repo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every entry of the registry: a unique key, a default that reads back
// through its own parser, a value it refuses, and a file round trip.
func TestSettingsRegistry(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Settings() {
		if seen[s.Key] || s.Doc == "" || s.Accepts == "" {
			t.Errorf("%s: duplicate, or no doc or accepted form", s.Key)
		}
		seen[s.Key] = true
		c := DefaultConfig()
		if err := s.Set(&c, []string{s.Default}); err != nil {
			t.Errorf("%s: its default %q does not parse: %v", s.Key, s.Default, err)
		}
		if got := s.Get(&c); got != s.Default {
			t.Errorf("%s: default reads back as %q, want %q", s.Key, got, s.Default)
		}
		before := s.Get(&c)
		err := s.Set(&c, []string{"banana\x00"})
		var ve *ValueError
		if !errors.As(err, &ve) || ve.Key != s.Key || !strings.Contains(err.Error(), s.Accepts) {
			t.Errorf("%s: a bad value gives %v", s.Key, err)
		}
		if s.Get(&c) != before {
			t.Errorf("%s: a refused value changed the setting", s.Key)
		}
	}
}

func TestConfigSetShowFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n")
	if _, err := Init(dir, InitOptions{Listen: []string{"/ip4/127.0.0.1/tcp/0"}, API: "127.0.0.1:0", Org: "St Mary"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key  string
		vals []string
		want string
	}{
		{"replication.grace", []string{"5s"}, "5s"},
		{"replication.interval", []string{"1m30s"}, "1m30s"},
		{"replication.factor", []string{"2"}, "2"},
		{"storage.quota", []string{"500GiB"}, "500GiB"},
		{"storage.quota", []string{"1.5TB"}, "1500GB"},
		{"storage.disk_reserve", []string{"1073741824"}, "1GiB"},
		{"addresses.announce", []string{"/ip4/203.0.113.7/tcp/4101", "/dns4/pacs.example.org/tcp/4101"}, "/ip4/203.0.113.7/tcp/4101,/dns4/pacs.example.org/tcp/4101"},
		{"bootstrap", []string{""}, ""},
	} {
		res, err := SetConfig(dir, tc.key, tc.vals)
		if err != nil || res.Value != tc.want {
			t.Fatalf("set %s %v: %+v %v", tc.key, tc.vals, res, err)
		}
	}
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := r.Config
	if c.ReplicationGrace != 5*time.Second || c.ReplicationInterval != 90*time.Second || c.ReplicationFactor != 2 ||
		c.StorageQuota != 1500e9 || c.DiskReserve != 1<<30 || len(c.Announce) != 2 || c.Org != "St Mary" || c.API != "127.0.0.1:0" {
		t.Fatalf("reopened: %+v", c)
	}
	b, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
	if !strings.Contains(string(b), `"replication": {`) || !strings.Contains(string(b), `"grace": "5s"`) {
		t.Fatalf("config.json is not sectioned:\n%s", b)
	}

	// Refused values leave the file alone.
	for _, bad := range []struct{ key, val, says string }{
		{"replication.grace", "banana", "not a duration"},
		{"replication.grace", "300", "no unit"},
		{"replication.grace", "0s", "out of range"},
		{"replication.factor", "0", "out of range"},
		{"replication.factor", "two", "whole number"},
		{"storage.quota", "-1GiB", "not a size"},
		{"storage.quota", "lots", "not a size"},
		{"addresses.api", "0.0.0.0:5101", "loopback"},
		{"addresses.listen", "/ip4/0.0.0.0/udp/4101/quic-v1", "not a TCP address"},
		{"addresses.announce", "/ip4/0.0.0.0/tcp/4101", "wildcard"},
		{"addresses.announce", "203.0.113.7:4101", "not a multiaddr"},
		{"bootstrap", "/ip4/198.51.100.4/tcp/4101", "/p2p/"},
		{"org", "St Mary\nMRN 123", "not allowed"},
		{"ledger.prune_after_checkpoint", "maybe", "neither true nor false"},
	} {
		_, err := SetConfig(dir, bad.key, []string{bad.val})
		var ve *ValueError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), bad.says) {
			t.Errorf("set %s %q: %v (want %q)", bad.key, bad.val, err, bad.says)
		}
	}
	if b2, _ := os.ReadFile(filepath.Join(dir, ConfigFile)); string(b2) != string(b) {
		t.Fatal("a refused value changed config.json")
	}
	var ue *UnknownSettingError
	if _, err := SetConfig(dir, "replication.graze", []string{"5s"}); !errors.As(err, &ue) || !strings.Contains(err.Error(), "replication.grace") {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := SetConfig(dir, "replication.factor", []string{"2", "3"}); err == nil {
		t.Fatal("two values for a single setting accepted")
	}
	res, err := UnsetConfig(dir, "replication.grace")
	if err != nil || res.Value != "10m" || res.Previous != "5s" || !res.Changed {
		t.Fatalf("unset: %+v %v", res, err)
	}
}

// A config.json with a bad or unknown setting: Open names each, with what it
// takes; `config set` may fix the bad one, and refuses while another is bad.
func TestConfigFileErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n")
	if _, err := Init(dir, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, ConfigFile)
	os.WriteFile(path, []byte(`{"replication": {"grace": "banana", "factor": 2}, "colour": "blue"}`), 0o600)
	_, err := Open(dir)
	var ce *ConfigError
	if !errors.As(err, &ce) || len(ce.Problems) != 2 || !strings.Contains(err.Error(), `"banana" is not a duration`) || !strings.Contains(err.Error(), `unknown setting "colour"`) {
		t.Fatalf("open: %v", err)
	}
	// A change touches its own entry only: the others stay as they were.
	if res, err := SetConfig(dir, "replication.factor", []string{"3"}); err != nil || res.Previous != "2" {
		t.Fatalf("set with other bad settings in the file: %+v %v", res, err)
	}
	if _, err := Open(dir); !errors.As(err, &ce) || len(ce.Problems) != 2 {
		t.Fatalf("after an unrelated set: %v", err)
	}
	var ue *UnknownSettingError
	if _, err := UnsetConfig(dir, "shade"); !errors.As(err, &ue) {
		t.Fatalf("unset of a key neither known nor in the file: %v", err)
	}
	if res, err := UnsetConfig(dir, "colour"); err != nil || !res.Changed {
		t.Fatalf("unset of an unknown key in the file: %+v %v", res, err)
	}
	if _, err := Open(dir); !errors.As(err, &ce) || !strings.Contains(ce.Hint(), "config set replication.grace") {
		t.Fatalf("open: %v", err)
	}
	if res, err := SetConfig(dir, "replication.grace", []string{"1m"}); err != nil || res.Value != "1m" {
		t.Fatalf("fixing the bad setting: %+v %v", res, err)
	}
	r, err := Open(dir)
	if err != nil || r.Config.ReplicationFactor != 3 || r.Config.ReplicationGrace != time.Minute {
		t.Fatalf("after the fix: %+v %v", r, err)
	}
	os.WriteFile(path, []byte(`not json`), 0o600)
	if _, err := Open(dir); !errors.As(err, &ce) {
		t.Fatalf("not JSON: %v", err)
	}
}

// The first layout (flat keys, the quota in bytes) still opens, and is
// written in sections on the next save.
func TestConfigLegacyLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n")
	if _, err := Init(dir, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{
  "listen": ["/ip4/127.0.0.1/tcp/0"],
  "api": "127.0.0.1:0",
  "bootstrap": [],
  "replication_factor": 2,
  "storage_quota": 1073741824,
  "org": "St Mary"
}`), 0o600)
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := r.Config
	if c.Listen[0] != "/ip4/127.0.0.1/tcp/0" || c.API != "127.0.0.1:0" || c.ReplicationFactor != 2 || c.StorageQuota != 1<<30 || c.Org != "St Mary" || c.ReplicationGrace != 10*time.Minute {
		t.Fatalf("legacy config: %+v", c)
	}
	if err := r.SaveConfig(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
	if strings.Contains(string(b), "replication_factor") || !strings.Contains(string(b), `"quota": "1GiB"`) {
		t.Fatalf("saved:\n%s", b)
	}
}

func TestDaemonRunning(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n")
	r, err := Init(dir, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, running := r.Running(); running {
		t.Fatal("running before any daemon")
	}
	l, err := r.Lock()
	if err != nil {
		t.Fatal(err)
	}
	if pid, running := r.Running(); !running || pid != os.Getpid() {
		t.Fatalf("running %v pid %d", running, pid)
	}
	l.Unlock()
	if _, running := r.Running(); running {
		t.Fatal("running after unlock")
	}
	// Asking does not take the lock from a daemon that starts next.
	l2, err := r.Lock()
	if err != nil {
		t.Fatal(err)
	}
	l2.Unlock()
}

// The README's configuration table lists every setting with its default.
func TestREADMEListsEverySetting(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Skip("no README.md beside the module:", err)
	}
	for _, s := range Settings() {
		d := s.Default
		if d == "" {
			d = `""`
		}
		if row := "| `" + s.Key + "` | `" + d + "` |"; !strings.Contains(string(b), row) {
			t.Errorf("README.md has no row %q", row)
		}
	}
}
