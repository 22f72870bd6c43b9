package repo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/medmesh/medmesh/internal/atomicfile"
)

// Config is the node's configuration (config.json). Every field is a
// setting of the registry (settings.go), which defines its dotted key,
// default, accepted values and meaning, and its place in the file.
type Config struct {
	// Listen are libp2p multiaddrs (TCP only: the network is private).
	Listen []string
	// Announce, when not empty, are the only addresses this node
	// advertises to peers (instead of its listen addresses): a node behind
	// NAT announces the public address its router forwards.
	Announce []string
	// AppendAnnounce are advertised in addition to the listen addresses.
	AppendAnnounce []string
	// API is the HTTP API address; it must be a loopback address.
	API string
	// Bootstrap are multiaddrs with /p2p/ of peers to dial at start and keep dialing.
	Bootstrap []string
	// Org is the organisation label this node gives when it is admitted.
	Org string
	// ReplicationFactor is how many nodes should hold each record (owner included).
	ReplicationFactor int
	// ReplicationGrace is how long a holder may be unreachable, or fail
	// its proofs of storage, before it is replaced.
	ReplicationGrace time.Duration
	// ReplicationInterval is the time between placement passes.
	ReplicationInterval time.Duration
	// VerifyInterval is the time between proof-of-storage rounds.
	VerifyInterval time.Duration
	// SweepInterval is the time between re-plans of every record this node
	// is involved in.
	SweepInterval time.Duration
	// ReprovideInterval is the time between DHT re-announcements.
	ReprovideInterval time.Duration
	// ScopeCheckpointEvery is how many new entries of an owner's scope
	// make the owner's replica group checkpoint it (0: only by hand).
	ScopeCheckpointEvery int
	// PruneAfterCheckpoint prunes a scope each time a newer checkpoint
	// of it is stored.
	PruneAfterCheckpoint bool
	// StorageQuota caps the bytes of replicas this node accepts for others (0: no cap).
	StorageQuota int64
	// DiskReserve is free disk space replicas may not eat into.
	DiskReserve int64

	// The DICOM application entity (node/pacs): listener ("" off), AE
	// title, allowed callers (AE@host), C-MOVE destinations (AE=host:port),
	// limits and timeouts, and how long a received study waits to be
	// stored.
	DICOMListen             string
	DICOMAETitle            string
	DICOMAllowed            []string
	DICOMDestinations       []string
	DICOMMaxPDU             int64
	DICOMMaxAssociations    int
	DICOMTimeout            time.Duration
	DICOMAssociationTimeout time.Duration
	DICOMIdleTimeout        time.Duration
	DICOMStoreDelay         time.Duration
	// DICOMwebCORSOrigins are the web origins allowed to call DICOMweb
	// from a browser.
	DICOMwebCORSOrigins []string
}

// DefaultConfig is the configuration of a new repo: every setting at its
// default.
func DefaultConfig() Config {
	var c Config
	for _, s := range settings {
		s.reset(&c)
	}
	return c
}

// ConfigError is a config.json that cannot be used as it is: one message
// per setting that is wrong, each saying what it accepts.
type ConfigError struct {
	Path     string
	Problems []SettingError
}

// SettingError is one setting's problem.
type SettingError struct {
	Key string
	Err error
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ", e.Path)
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		var ve *ValueError
		if errors.As(p.Err, &ve) {
			b.WriteString(ve.msg())
		} else {
			b.WriteString(p.Err.Error())
		}
	}
	return b.String() + " (" + e.Hint() + ")"
}

// Hint says how to fix it.
func (e *ConfigError) Hint() string {
	if len(e.Problems) == 1 && e.Problems[0].Key != "" {
		k := e.Problems[0].Key
		fix := fmt.Sprintf("fix it with `medmesh config set %s VALUE`, or `medmesh config unset %s` for the default", k, k)
		var ve *ValueError
		if errors.As(e.Problems[0].Err, &ve) {
			return ve.Hint() + "; " + fix
		}
		return fix + "; `medmesh help config` lists every setting"
	}
	return "fix each with `medmesh config set KEY VALUE` or `medmesh config unset KEY`; `medmesh help config` lists every setting"
}

// keys of the settings that have a problem
func (e *ConfigError) keys() map[string]bool {
	m := map[string]bool{}
	for _, p := range e.Problems {
		m[p.Key] = true
	}
	return m
}

// legacyKeys are the flat names of the first config.json layout; Open
// still reads them, and the next save writes the sectioned layout.
var legacyKeys = map[string]string{
	"listen":             "addresses.listen",
	"api":                "addresses.api",
	"replication_factor": "replication.factor",
	"storage_quota":      "storage.quota",
}

// ParseConfig decodes config.json. Missing settings take their defaults.
// Every setting that is present is checked; the returned *ConfigError (if
// any) lists each bad one, and the Config holds the defaults in their
// place.
func ParseConfig(path string, data []byte) (Config, error) {
	c := DefaultConfig()
	var root map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		return c, &ConfigError{Path: path, Problems: []SettingError{{Err: fmt.Errorf("not a JSON object: %v", err)}}}
	}
	cerr := &ConfigError{Path: path}
	var walk func(prefix string, m map[string]json.RawMessage)
	walk = func(prefix string, m map[string]json.RawMessage) {
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			raw := m[k]
			key := prefix + k
			if prefix == "" {
				if nk, ok := legacyKeys[k]; ok {
					key = nk
				}
			}
			if s, ok := lookup(key); ok {
				if err := s.decode(&c, raw); err != nil {
					cerr.Problems = append(cerr.Problems, SettingError{Key: key, Err: err})
					s.reset(&c)
				}
				continue
			}
			if isSection(key) {
				var sub map[string]json.RawMessage
				if err := json.Unmarshal(raw, &sub); err != nil {
					cerr.Problems = append(cerr.Problems, SettingError{Key: key, Err: fmt.Errorf("%s: want an object of settings", key)})
					continue
				}
				walk(key+".", sub)
				continue
			}
			cerr.Problems = append(cerr.Problems, SettingError{Key: key, Err: &UnknownSettingError{Key: key, InFile: true}})
		}
	}
	walk("", root)
	if len(cerr.Problems) > 0 {
		return c, cerr
	}
	return c, nil
}

// isSection reports whether key is a section (a prefix of some setting).
func isSection(key string) bool {
	for _, s := range settings {
		if strings.HasPrefix(s.Key, key+".") {
			return true
		}
	}
	return false
}

// MarshalJSON writes the sectioned layout: "replication.grace" is
// {"replication": {"grace": ...}}.
func (c Config) MarshalJSON() ([]byte, error) {
	root := map[string]any{}
	for _, s := range settings {
		parts := strings.Split(s.Key, ".")
		m := root
		for _, p := range parts[:len(parts)-1] {
			sub, ok := m[p].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[p] = sub
			}
			m = sub
		}
		m[parts[len(parts)-1]] = s.encode(&c)
	}
	return json.Marshal(root)
}

// UnmarshalJSON reads config.json's layout, strictly (ParseConfig).
func (c *Config) UnmarshalJSON(b []byte) error {
	v, err := ParseConfig(ConfigFile, b)
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// readConfig reads and parses dir's config.json.
func readConfig(dir string) (Config, error) {
	path := filepath.Join(dir, ConfigFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Config{}, fmt.Errorf("%w at %s: run `medmesh init --repo %s` first", ErrNoRepo, dir, dir)
	}
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(path, b)
}

// writeConfig writes c as dir's config.json, atomically, 0600.
func writeConfig(dir string, c Config) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(filepath.Join(dir, ConfigFile), append(b, '\n'), 0o600)
}

// SetResult is what a change of one setting did.
type SetResult struct {
	Key      string
	Value    string // the new value, in its canonical form
	Previous string
	Changed  bool
}

// SetConfig changes one setting of the repo in dir, offline: it parses
// values as the setting's type, checks them and writes that entry of
// config.json, leaving the others as they are. An unknown key is an
// *UnknownSettingError, a refused value a *ValueError.
func SetConfig(dir, key string, values []string) (SetResult, error) {
	return editConfig(dir, key, func(s Setting, c *Config) error { return s.Set(c, values) })
}

// UnsetConfig sets one setting back to its default. A key no setting has
// but config.json holds (a typo, or a setting of a newer medmesh) is
// removed from the file.
func UnsetConfig(dir, key string) (SetResult, error) {
	if _, ok := lookup(key); !ok {
		return dropUnknown(dir, key)
	}
	return editConfig(dir, key, func(s Setting, c *Config) error { s.reset(c); return nil })
}

func dropUnknown(dir, key string) (SetResult, error) {
	_, err := readConfig(dir)
	var cerr *ConfigError
	found := false
	if errors.As(err, &cerr) {
		for _, p := range cerr.Problems {
			var ue *UnknownSettingError
			if p.Key == key && errors.As(p.Err, &ue) {
				found = true
			}
		}
	} else if err != nil {
		return SetResult{}, err
	}
	if !found {
		return SetResult{}, &UnknownSettingError{Key: key}
	}
	if err := editFile(dir, key, nil); err != nil {
		return SetResult{}, err
	}
	return SetResult{Key: key, Previous: "(unknown setting)", Value: "", Changed: true}, nil
}

// editConfig changes one setting in config.json and nothing else: the
// file is edited in place, as JSON, so other entries, even wrong ones,
// stay as they were (`config show` and the daemon still name those).
func editConfig(dir, key string, edit func(Setting, *Config) error) (SetResult, error) {
	s, ok := lookup(key)
	if !ok {
		return SetResult{}, &UnknownSettingError{Key: key}
	}
	c, err := readConfig(dir)
	var cerr *ConfigError
	if err != nil && !errors.As(err, &cerr) {
		return SetResult{}, err
	}
	res := SetResult{Key: key, Previous: s.Get(&c)}
	if cerr != nil && cerr.keys()[key] {
		res.Previous = "" // what the file holds is not a value
	}
	if err := edit(s, &c); err != nil {
		return SetResult{}, err
	}
	res.Value = s.Get(&c)
	res.Changed = res.Value != res.Previous
	if err := editFile(dir, key, s.encode(&c)); err != nil {
		return SetResult{}, err
	}
	return res, nil
}

// editFile sets the JSON value at key's path in config.json (nil deletes
// it, and sections left empty), leaving every other entry as it is. A
// flat key of the first layout for the same setting is dropped.
func editFile(dir, key string, v any) error {
	path := filepath.Join(dir, ConfigFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	root := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&root); err != nil {
		root = map[string]any{} // not JSON at all: start again from this setting
	}
	for old, nk := range legacyKeys {
		if nk == key {
			delete(root, old)
		}
	}
	parts := strings.Split(key, ".")
	var set func(m map[string]any, i int)
	set = func(m map[string]any, i int) {
		if i == len(parts)-1 {
			if v == nil {
				delete(m, parts[i])
			} else {
				m[parts[i]] = v
			}
			return
		}
		sub, ok := m[parts[i]].(map[string]any)
		if !ok {
			if v == nil {
				return
			}
			sub = map[string]any{}
			m[parts[i]] = sub
		}
		set(sub, i+1)
		if len(sub) == 0 {
			delete(m, parts[i])
		}
	}
	set(root, 0)
	out, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(path, append(out, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// LoadConfig reads dir's config.json without opening the repo's keys.
func LoadConfig(dir string) (Config, error) { return readConfig(dir) }

// UnknownSettingError is a key no setting has.
type UnknownSettingError struct {
	Key    string
	InFile bool // found in config.json (its message is part of a ConfigError's)
}

func (e *UnknownSettingError) Error() string {
	if e.InFile {
		return fmt.Sprintf("unknown setting %q (`medmesh config unset %s` removes it)", e.Key, e.Key)
	}
	return fmt.Sprintf("unknown setting %q (%s)", e.Key, e.Hint())
}

// Hint lists the settings.
func (e *UnknownSettingError) Hint() string { return "settings: " + strings.Join(Keys(), ", ") }
