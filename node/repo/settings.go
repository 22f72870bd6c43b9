package repo

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/node/dimse"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/multiformats/go-multiaddr"
)

// settings is the registry of configuration settings: one typed,
// validated entry each. `medmesh help config`, `medmesh config show/set`,
// config.json's layout and its checks all come from it. To add a setting,
// add a Config field and one line here (and a line to the README's table:
// a test keeps them in step); the daemon reads it from Repo.Config.
var settings = []Setting{
	def("addresses.listen", func(c *Config) *[]string { return &c.Listen }, multiaddrs{tcp: true}, []string{DefaultListen},
		"libp2p listen addresses (TCP multiaddrs: the private network's pre-shared key needs TCP). Empty: dial out only."),
	def("addresses.announce", func(c *Config) *[]string { return &c.Announce }, multiaddrs{tcp: true, public: true}, []string{},
		"addresses advertised to peers instead of the listen addresses (a node behind NAT: the public address and port the router forwards to addresses.listen). Empty: advertise the listen addresses."),
	def("addresses.append_announce", func(c *Config) *[]string { return &c.AppendAnnounce }, multiaddrs{tcp: true, public: true}, []string{},
		"addresses advertised in addition to the listen (or announce) addresses, e.g. a port forwarded on a NAT router, while LAN peers keep using the local ones."),
	def("addresses.api", func(c *Config) *string { return &c.API }, apiAddr{}, DefaultAPI,
		"the HTTP API's address: loopback only (127.0.0.1, ::1, localhost); port 0 picks a free port (the daemon writes the real one to REPO/api)."),
	def("bootstrap", func(c *Config) *[]string { return &c.Bootstrap }, multiaddrs{peer: true}, []string{},
		"peers (multiaddrs ending in /p2p/PEERID) dialed at start and re-dialed while away; `network join` adds the inviter's."),
	def("org", func(c *Config) *string { return &c.Org }, label{}, "",
		"this node's organisation; stated on the ledger once, when the node is first a member without one (the admin's `network invite --org` wins). Changing it later changes nothing on the ledger."),
	def("replication.factor", func(c *Config) *int { return &c.ReplicationFactor }, integer{min: 1, max: 64}, DefaultReplicationFactor,
		"how many nodes should hold each record this node adds, itself included, unless `add --replicas` says otherwise."),
	def("replication.grace", func(c *Config) *time.Duration { return &c.ReplicationGrace }, duration{min: time.Second, max: 30 * 24 * time.Hour}, 10*time.Minute,
		"how long a holder may be unreachable, or fail its proofs of storage, before another member takes its place. Short: repair sooner, but a reboot moves replicas."),
	def("replication.interval", func(c *Config) *time.Duration { return &c.ReplicationInterval }, duration{min: 100 * time.Millisecond, max: time.Hour}, 10*time.Second,
		"how often liveness is checked and records short of replicas are re-planned (ledger changes re-plan at once)."),
	def("replication.verify_interval", func(c *Config) *time.Duration { return &c.VerifyInterval }, duration{min: time.Second, max: 30 * 24 * time.Hour}, 10*time.Minute,
		"how often this node challenges the other holders of a sample of the records it holds (64 at random, every one after a failed challenge) to prove they still store them."),
	def("replication.sweep_interval", func(c *Config) *time.Duration { return &c.SweepInterval }, duration{min: time.Second, max: 30 * 24 * time.Hour}, 10*time.Minute,
		"how often a sweep re-planning every record this node is involved in starts, in case an event was missed (a safety net; placement otherwise reacts to changes). A sweep plans 64 records per replication.interval."),
	def("replication.reprovide_interval", func(c *Config) *time.Duration { return &c.ReprovideInterval }, duration{min: time.Minute, max: 47 * time.Hour}, 12*time.Hour,
		"how often every block this node holds is re-announced on the DHT (provider records expire after about 48 hours)."),
	def("ledger.scope_checkpoint_every", func(c *Config) *int { return &c.ScopeCheckpointEvery }, integer{min: 0, max: 100_000_000}, 10_000,
		"when this node is in an owner's replica group: how many new entries of the owner's scope (or audit scope) make the group checkpoint it, so a node that starts following the scope (a new grantee, a new member of the group) loads the checkpoint instead of its history. The group's first reachable member proposes (the others at twice the count, if it has them off), a majority co-signs; each member drafts it by replaying the scope since its latest checkpoint into a database under the repo's scratch/ directory, deleted when done (at 100,000 records: about 0.7 GB of disk and 150 MB of memory for 15-20 s, each 10,000 entries). 0: only by hand (`medmesh ledger checkpoint --scope`)."),
	def("ledger.prune_after_checkpoint", func(c *Config) *bool { return &c.PruneAfterCheckpoint }, boolean{}, false,
		"prune an owner's or audit scope each time this node stores a newer checkpoint of it (made, co-signed or adopted): drop the entries the checkpoint covers that this node does not need, as `medmesh ledger prune` does (never what concerns its own records, nor the reads of an owner whose replica group it is in). Saves a busy owner's group and grantees the scope's history; a peer that asks this node for entries before the checkpoint is told to load the checkpoint, or to catch up from the owner, which keeps them all. false (the default): prune only by hand."),
	def("storage.quota", func(c *Config) *int64 { return &c.StorageQuota }, size{min: 0}, 0,
		"the most bytes of other members' records this node holds as replicas (its own records never count); beyond it, it declines. 0: no cap."),
	def("storage.disk_reserve", func(c *Config) *int64 { return &c.DiskReserve }, size{min: 16 << 20}, 256<<20,
		"free disk space that replicas may not use: a replica that would leave less free is declined."),
	def("dicom.listen", func(c *Config) *string { return &c.DICOMListen }, hostPort{}, "",
		"the DICOM listener (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET) as HOST:PORT, e.g. 0.0.0.0:11112 or a LAN address: modalities and workstations are on the LAN, and only dicom.allowed may associate. Empty: off."),
	def("dicom.ae_title", func(c *Config) *string { return &c.DICOMAETitle }, aeTitle{}, "MEDMESH",
		"this node's DICOM AE title: the called AE title modalities and workstations use, and the calling AE title of C-MOVE sub-operations and `medmesh dicom echo|send`."),
	def("dicom.allowed", func(c *Config) *[]string { return &c.DICOMAllowed }, dicomList{what: "caller", one: parseCaller}, []string{},
		"who may associate: AE@HOST entries (HOST an address, a CIDR prefix such as 10.0.1.0/24, a name, or * for any host); anyone else is rejected with A-ASSOCIATE-RJ. Empty: nobody."),
	def("dicom.destinations", func(c *Config) *[]string { return &c.DICOMDestinations }, dicomList{what: "destination", one: parseDestination}, []string{},
		"where C-MOVE may send: AE=HOST:PORT entries (the move destination's AE title and its DICOM port); `medmesh dicom send --to AE` takes them too."),
	def("dicom.max_pdu", func(c *Config) *int64 { return &c.DICOMMaxPDU }, size{min: 4 << 10, max: 16 << 20}, 128<<10,
		"the largest P-DATA PDU the node accepts (it bounds memory per association)."),
	def("dicom.max_associations", func(c *Config) *int { return &c.DICOMMaxAssociations }, integer{min: 1, max: 1024}, 32,
		"concurrent associations; more are rejected (transiently, \"local limit exceeded\")."),
	def("dicom.timeout", func(c *Config) *time.Duration { return &c.DICOMTimeout }, duration{min: time.Second, max: time.Hour}, time.Minute,
		"the DIMSE timeout: how long the node waits inside an operation (the next PDU of a message, a response, a write)."),
	def("dicom.association_timeout", func(c *Config) *time.Duration { return &c.DICOMAssociationTimeout }, duration{min: time.Second, max: 10 * time.Minute}, 30*time.Second,
		"how long association requests, releases and TCP connects may take (the ARTIM timer)."),
	def("dicom.idle_timeout", func(c *Config) *time.Duration { return &c.DICOMIdleTimeout }, duration{min: time.Second, max: 24 * time.Hour}, 5*time.Minute,
		"how long an association may stay silent between messages before the node aborts it."),
	def("dicom.store_delay", func(c *Config) *time.Duration { return &c.DICOMStoreDelay }, duration{min: 0, max: 10 * time.Minute}, 2*time.Second,
		"how long a study received by C-STORE waits, once the associations that brought it have ended, before it is stored: a study sent over several associations in a row becomes one version."),
	def("dicomweb.cors_origins", func(c *Config) *[]string { return &c.DICOMwebCORSOrigins }, dicomList{what: "origin", one: checkOrigin}, []string{},
		"web origins (scheme://host[:port]) whose pages may call DICOMweb from a browser (a viewer such as OHIF); they still need the API token. Empty: none."),
}

// Setting is one entry of the registry.
type Setting struct {
	// Key is the dotted name (`config set replication.grace 30m`), also
	// its path in config.json ({"replication": {"grace": "30m"}}).
	Key string
	// Default is the default value, written as `config set` takes it.
	Default string
	// Accepts describes the values it takes.
	Accepts string
	// Doc says what it does.
	Doc string
	// List is true for settings that hold several values.
	List bool

	get    func(*Config) string
	set    func(*Config, []string) error
	reset  func(*Config)
	encode func(*Config) any
	decode func(*Config, json.RawMessage) error
}

// Get returns the setting's value in c, written as `config set` takes it.
func (s Setting) Get(c *Config) string { return s.get(c) }

// Set parses values (one, or several for a list) as the setting's type,
// checks them and stores them in c. A rejected value leaves c unchanged.
func (s Setting) Set(c *Config, values []string) error { return s.set(c, values) }

// Settings returns the registry, in order.
func Settings() []Setting { return append([]Setting(nil), settings...) }

// Keys returns every setting's key.
func Keys() []string {
	out := make([]string, len(settings))
	for i, s := range settings {
		out[i] = s.Key
	}
	return out
}

func lookup(key string) (Setting, bool) {
	for _, s := range settings {
		if s.Key == key {
			return s, true
		}
	}
	return Setting{}, false
}

// Lookup finds a setting by key.
func Lookup(key string) (Setting, bool) { return lookup(key) }

// kind is a setting's type: how its values are written, read and checked.
type kind[T any] interface {
	// parse reads one value as typed on the command line.
	parse(s string) (T, error)
	// format writes v as parse reads it.
	format(v T) string
	// check validates v (parse calls it too; decode calls it on the
	// file's values).
	check(v T) error
	// accepts describes the values, for errors and docs.
	accepts() string
	// toJSON and fromJSON are the value's form in config.json.
	toJSON(v T) any
	fromJSON(raw json.RawMessage) (T, error)
}

// listKind marks kinds whose `config set` takes several values.
type listKind interface{ isList() }

// def builds a registry entry from a kind, the Config field it sets and
// its default.
func def[T any, K kind[T]](key string, field func(*Config) *T, k K, dflt T, doc string) Setting {
	_, isList := any(k).(listKind)
	bad := func(err error) error {
		return &ValueError{Key: key, Err: err, Accepts: k.accepts()}
	}
	return Setting{
		Key: key, Default: k.format(dflt), Accepts: k.accepts(), Doc: doc, List: isList,
		get: func(c *Config) string { return k.format(*field(c)) },
		set: func(c *Config, values []string) error {
			text := strings.Join(values, ",")
			if !isList && len(values) != 1 {
				return bad(fmt.Errorf("takes one value, got %d", len(values)))
			}
			v, err := k.parse(text)
			if err != nil {
				return bad(err)
			}
			*field(c) = v
			return nil
		},
		reset: func(c *Config) {
			// A fresh copy of the default: lists must not share storage.
			v, err := k.fromJSON(mustJSON(k.toJSON(dflt)))
			if err != nil {
				panic(fmt.Sprintf("setting %s: default %v does not read back: %v", key, dflt, err))
			}
			*field(c) = v
		},
		encode: func(c *Config) any { return k.toJSON(*field(c)) },
		decode: func(c *Config, raw json.RawMessage) error {
			v, err := k.fromJSON(raw)
			if err == nil {
				err = k.check(v)
			}
			if err != nil {
				return bad(err)
			}
			*field(c) = v
			return nil
		},
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// ValueError is a value a setting does not take.
type ValueError struct {
	Key     string
	Err     error
	Accepts string
}

func (e *ValueError) Error() string { return e.msg() + " (" + e.Hint() + ")" }

func (e *ValueError) msg() string { return fmt.Sprintf("%s: %v", e.Key, e.Err) }

// Hint says what the setting takes.
func (e *ValueError) Hint() string { return e.Key + " takes " + e.Accepts }

func (e *ValueError) Unwrap() error { return e.Err }

// duration is a time.Duration between min and max, written as Go writes
// durations ("90s", "10m", "1h30m").
type duration struct{ min, max time.Duration }

func (k duration) parse(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	d, err := time.ParseDuration(s)
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			return 0, fmt.Errorf("%q has no unit", s)
		}
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	return d, k.check(d)
}

func (k duration) check(d time.Duration) error {
	if d < k.min || d > k.max {
		return fmt.Errorf("%s is out of range", fmtDuration(d))
	}
	return nil
}

func (k duration) format(d time.Duration) string { return fmtDuration(d) }

func (k duration) accepts() string {
	return fmt.Sprintf("a duration with its unit (e.g. 30s, 10m, 1h30m), from %s to %s", fmtDuration(k.min), fmtDuration(k.max))
}

func (k duration) toJSON(d time.Duration) any { return fmtDuration(d) }

func (k duration) fromJSON(raw json.RawMessage) (time.Duration, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf("want a duration string such as \"10m\", got %s", raw)
	}
	return k.parse(s)
}

// fmtDuration writes d without zero units: 10m, not 10m0s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// boolean is true or false.
type boolean struct{}

func (boolean) parse(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "on", "yes", "1":
		return true, nil
	case "false", "off", "no", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is neither true nor false", s)
}

func (boolean) check(bool) error     { return nil }
func (boolean) format(b bool) string { return strconv.FormatBool(b) }
func (boolean) accepts() string      { return "true or false" }
func (boolean) toJSON(b bool) any    { return b }

func (boolean) fromJSON(raw json.RawMessage) (bool, error) {
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, fmt.Errorf("want true or false, got %s", raw)
	}
	return b, nil
}

// integer is an int between min and max.
type integer struct{ min, max int }

func (k integer) parse(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number", s)
	}
	return n, k.check(n)
}

func (k integer) check(n int) error {
	if n < k.min || n > k.max {
		return fmt.Errorf("%d is out of range", n)
	}
	return nil
}

func (k integer) format(n int) string { return strconv.Itoa(n) }
func (k integer) accepts() string     { return fmt.Sprintf("a whole number from %d to %d", k.min, k.max) }
func (k integer) toJSON(n int) any    { return n }

func (k integer) fromJSON(raw json.RawMessage) (int, error) {
	var n int
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, fmt.Errorf("want a whole number, got %s", raw)
	}
	return n, nil
}

// size is a number of bytes, written with a unit: 0, 512MiB, 20GiB,
// 1.5TB (KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB of 1024).
type size struct{ min, max int64 } // max 0: none

var sizeUnits = []struct {
	name string
	mult float64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"kB", 1e3}, {"B", 1},
}

func (k size) parse(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := 1.0
	for _, u := range sizeUnits {
		if strings.HasSuffix(strings.ToLower(t), strings.ToLower(u.name)) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.name)]), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	if f*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	n := int64(f * mult)
	return n, k.check(n)
}

func (k size) check(n int64) error {
	if n < k.min {
		return fmt.Errorf("%s is below the minimum of %s", fmtSize(n), fmtSize(k.min))
	}
	if k.max > 0 && n > k.max {
		return fmt.Errorf("%s is above the maximum of %s", fmtSize(n), fmtSize(k.max))
	}
	return nil
}

func (k size) format(n int64) string { return fmtSize(n) }

func (k size) accepts() string {
	s := fmt.Sprintf("a size in bytes with an optional unit (e.g. 0, 512MiB, 20GiB, 1.5TB; KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB of 1000), at least %s", fmtSize(k.min))
	if k.max > 0 {
		s += " and at most " + fmtSize(k.max)
	}
	return s
}

func (k size) toJSON(n int64) any { return fmtSize(n) }

func (k size) fromJSON(raw json.RawMessage) (int64, error) {
	var n int64
	if err := json.Unmarshal(raw, &n); err == nil {
		return n, nil // the first layout wrote bytes as a number
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf("want a size such as \"20GiB\", got %s", raw)
	}
	return k.parse(s)
}

// fmtSize writes n as briefly as an exact unit allows: 256MiB, 1500GB,
// 123456789 (binary units first when as short).
func fmtSize(n int64) string {
	best := strconv.FormatInt(n, 10)
	if n == 0 {
		return best
	}
	for _, u := range sizeUnits {
		m := int64(u.mult)
		if m == 1 || u.name == "kB" || n%m != 0 {
			continue
		}
		if s := strconv.FormatInt(n/m, 10) + u.name; len(s) < len(best) {
			best = s
		}
	}
	return best
}

// apiAddr is a loopback HOST:PORT.
type apiAddr struct{}

func (apiAddr) parse(s string) (string, error) {
	s = strings.TrimSpace(s)
	return s, apiAddr{}.check(s)
}
func (apiAddr) check(s string) error   { return ValidateAPIAddr(s) }
func (apiAddr) format(s string) string { return s }
func (apiAddr) accepts() string {
	return "HOST:PORT on loopback (127.0.0.1:5101, [::1]:5101, localhost:5101; port 0 picks one)"
}
func (apiAddr) toJSON(s string) any { return s }
func (apiAddr) fromJSON(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("want a string, got %s", raw)
	}
	return s, nil
}

// label is an organisation label (ledger.CheckOrg), or empty.
type label struct{}

func (label) parse(s string) (string, error) { return s, label{}.check(s) }
func (label) check(s string) error {
	if s == "" {
		return nil
	}
	return ledger.CheckOrg(s)
}
func (label) format(s string) string { return s }
func (label) accepts() string {
	return "a label of letters, digits, spaces and . , & ' ( ) - / _ (at most 128 bytes), or \"\" for none"
}
func (label) toJSON(s string) any { return s }
func (label) fromJSON(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("want a string, got %s", raw)
	}
	return s, nil
}

// multiaddrs is a list of multiaddrs: TCP ones (tcp), with a /p2p/ peer
// ID (peer), or with no wildcard host (public: an address peers can dial).
type multiaddrs struct{ tcp, peer, public bool }

func (multiaddrs) isList() {}

func (k multiaddrs) parse(s string) ([]string, error) {
	out := []string{}
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out, k.check(out)
}

func (k multiaddrs) check(as []string) error {
	for _, a := range as {
		ma, err := multiaddr.NewMultiaddr(a)
		if err != nil {
			return fmt.Errorf("%q is not a multiaddr: %v", a, err)
		}
		_, perr := ma.ValueForProtocol(multiaddr.P_P2P)
		switch {
		case k.peer:
			if _, err := peer.AddrInfoFromP2pAddr(ma); err != nil {
				return fmt.Errorf("%q does not end in /p2p/PEERID", a)
			}
		case perr == nil:
			return fmt.Errorf("%q has a /p2p/ part (give the address only)", a)
		}
		if k.tcp {
			if _, err := ma.ValueForProtocol(multiaddr.P_TCP); err != nil {
				return fmt.Errorf("%q is not a TCP address (only TCP carries the network's pre-shared key)", a)
			}
		}
		if k.public {
			if ip, err := ipOf(ma); err == nil && ip.IsUnspecified() {
				return fmt.Errorf("%q: peers cannot dial the wildcard address %s", a, ip)
			}
		}
	}
	return nil
}

func ipOf(ma multiaddr.Multiaddr) (net.IP, error) {
	for _, p := range []int{multiaddr.P_IP4, multiaddr.P_IP6} {
		if v, err := ma.ValueForProtocol(p); err == nil {
			return net.ParseIP(v), nil
		}
	}
	return nil, errors.New("no IP")
}

func (k multiaddrs) format(as []string) string { return strings.Join(as, ",") }

func (k multiaddrs) accepts() string {
	switch {
	case k.peer:
		return "multiaddrs ending in /p2p/PEERID (e.g. /ip4/198.51.100.4/tcp/4101/p2p/12D3KooW...), as separate arguments or separated by commas; \"\" for none"
	case k.public:
		return "TCP multiaddrs peers can dial (e.g. /ip4/203.0.113.7/tcp/4101, /dns4/pacs.example.org/tcp/4101), as separate arguments or separated by commas; \"\" for none"
	}
	return "TCP multiaddrs (e.g. /ip4/0.0.0.0/tcp/4101, /ip6/::/tcp/4101), as separate arguments or separated by commas; \"\" for none"
}

func (k multiaddrs) toJSON(as []string) any {
	if as == nil {
		return []string{}
	}
	return as
}

func (k multiaddrs) fromJSON(raw json.RawMessage) ([]string, error) {
	var as []string
	if err := json.Unmarshal(raw, &as); err != nil {
		return nil, fmt.Errorf("want a list of multiaddr strings, got %s", raw)
	}
	if as == nil {
		as = []string{}
	}
	return as, nil
}

// hostPort is a TCP HOST:PORT to listen on, or "" for off. Any host is
// allowed (unlike the API's): DICOM peers are on the LAN.
type hostPort struct{}

func (hostPort) parse(s string) (string, error) {
	s = strings.TrimSpace(s)
	return s, hostPort{}.check(s)
}

func (hostPort) check(s string) error {
	if s == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not HOST:PORT", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port must be 0..65535", s)
	}
	return nil
}
func (hostPort) format(s string) string { return s }
func (hostPort) accepts() string {
	return "HOST:PORT (e.g. 0.0.0.0:11112, 10.0.0.5:104, 127.0.0.1:11112), or \"\" for off"
}
func (hostPort) toJSON(s string) any { return s }
func (hostPort) fromJSON(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("want a string, got %s", raw)
	}
	return s, nil
}

// aeTitle is a DICOM AE title (PS3.5 AE: 1 to 16 characters, no
// backslash or control characters, no leading or trailing spaces).
type aeTitle struct{}

func (aeTitle) parse(s string) (string, error) { return s, aeTitle{}.check(s) }
func (aeTitle) check(s string) error {
	if s == "" || len(s) > 16 || strings.TrimSpace(s) != s {
		return fmt.Errorf("%q is not 1 to 16 characters without leading or trailing spaces", s)
	}
	for _, r := range s {
		if r < 0x20 || r > 0x7E || r == '\\' {
			return fmt.Errorf("%q has a character an AE title cannot hold", s)
		}
	}
	return nil
}
func (aeTitle) format(s string) string { return s }
func (aeTitle) accepts() string {
	return "an AE title: 1 to 16 printable ASCII characters, no backslash (e.g. MEDMESH, RADIOLOGY_1)"
}
func (aeTitle) toJSON(s string) any { return s }
func (aeTitle) fromJSON(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("want a string, got %s", raw)
	}
	return s, nil
}

// dicomList is a list of entries checked one by one (callers,
// destinations, origins).
type dicomList struct {
	what string
	one  func(string) error
}

func (dicomList) isList() {}

func (k dicomList) parse(s string) ([]string, error) {
	out := []string{}
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out, k.check(out)
}

func (k dicomList) check(as []string) error {
	for _, a := range as {
		if err := k.one(a); err != nil {
			return err
		}
	}
	return nil
}

func (k dicomList) format(as []string) string { return strings.Join(as, ",") }
func (k dicomList) accepts() string {
	switch k.what {
	case "caller":
		return "AE@HOST entries (e.g. CT1@10.0.0.21, WS@10.0.1.0/24, PACS@pacs.local, ANY@*), as separate arguments or separated by commas; \"\" for none"
	case "destination":
		return "AE=HOST:PORT entries (e.g. WS1=10.0.1.7:11112, PACS=pacs.local:104), as separate arguments or separated by commas; \"\" for none"
	}
	return "origins scheme://host[:port] (e.g. https://viewer.example.org, http://localhost:3000), as separate arguments or separated by commas; \"\" for none"
}
func (k dicomList) toJSON(as []string) any {
	if as == nil {
		return []string{}
	}
	return as
}
func (k dicomList) fromJSON(raw json.RawMessage) ([]string, error) {
	var as []string
	if err := json.Unmarshal(raw, &as); err != nil {
		return nil, fmt.Errorf("want a list of strings, got %s", raw)
	}
	if as == nil {
		as = []string{}
	}
	return as, nil
}

func parseCaller(s string) error {
	_, err := dimse.ParseCaller(s)
	return err
}

func parseDestination(s string) error {
	_, err := dimse.ParseDestinations(s)
	return err
}

// checkOrigin accepts a web origin: scheme://host[:port], nothing after.
func checkOrigin(s string) error {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "http" && scheme != "https") || rest == "" || strings.ContainsAny(rest, "/?#@ ") {
		return fmt.Errorf("%q is not an origin (scheme://host[:port], no path)", s)
	}
	return nil
}
