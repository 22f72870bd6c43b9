package ledger

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/sharing/keywrap"
)

// Scenario tests drive in-memory Cores with text scripts in testdata/, in
// the manner of raft's interaction tests: each command is followed by
// "----" and the output it must print, then a blank line. A rule or a flow
// is a new script, readable without Go. `go test -run TestScenarios
// -rewrite` rewrites the expected output from what the code prints.
//
// Commands (names are free words; peers, records and entries are printed
// by name, so the output does not depend on random keys):
//
//	network admin=NAME peers=NAME,... [scoped]
//	                                    the identities and the genesis
//	                                    (scoped: WithScopes)
//	node NAME...                        a Core on a MemStore per name
//	sign LABEL by=PEER on=NODE|parents=LABEL,... TYPE [k=v...]
//	                                    sign an entry (nothing applied)
//	ingest NODE LABEL...                one Ingest of those entries; prints the Outcome
//	append LABEL by=PEER on=NODE TYPE [k=v...]   sign then ingest on NODE
//	sync from=NODE to=NODE [scope=S]    what to lacks from from (PeerLacks of
//	                                    to's Offer), ingested into to
//	heads NODE [scope=S]                a scope's heads (default global)
//	lacks NODE peer=NODE                what NODE's peer lacks, and what NODE lacks
//	members NODE | grants NODE rec=R | receipts NODE rec=R | named NODE rec=R
//	involved NODE peer=PEER             what PEER owns, holds and was granted
//	converged NODE... [scope=S]         same heads and digest? (of scope S:
//	                                    its heads and ScopeDigest)
//
// A scope S is global, owner:PEER or audit:PEER. sign and append take
// scope=S too; without it an entry on=NODE goes where NODE's Sign would
// put it, and one with parents= is global.
//	fail-store NODE [commit|heal]       every store operation fails (only
//	                                    commits; or works again)
//	restart NODE                        a new Core on NODE's store: what it loads
//
// Payload keys per TYPE: member.add peer= org= roles=; member.remove peer=;
// member.org peer= org=; key.announce [key=PEER]; record.announce rec=
// [prev= version= replicas= class= escrow=PEER,...]; grant rec= to=
// [purpose= expires=DURATION key=PEER]; revoke rec= to=; access rec=
// grant=LABEL [purpose= version=]; replica.receipt rec= status=;
// replica.assign rec= holders=PEER,...; access.served rec= reader= grant=
// [reads=]. key=PEER seals to PEER's key instead of the natural one.

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of scenario tests")

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".txt")
		t.Run(name, func(t *testing.T) { runScenario(t, f, false) })
		// Every verdict must be the same when validation always walks the
		// causal view instead of reading the materialized state.
		// (storage.txt prints which key failed, which differs by path.)
		if !*rewrite && name != "storage" {
			t.Run(name+"-slow-path", func(t *testing.T) { runScenario(t, f, true) })
		}
	}
}

type scenario struct {
	t       *testing.T
	ctx     context.Context
	ids     map[string]*ident
	genesis []byte
	nodes   map[string]*Core
	stores  map[string]*flakyStore
	entries map[string]*Entry
	clock   uint64
	names   *strings.Replacer
	pairs   []string
	slow    bool // every Core validates on the slow path
}

// scenarioIdent derives a participant from its name, so peer IDs are the
// same in every run (KEM keys are random: only names are printed).
func scenarioIdent(t *testing.T, name string) *ident {
	seed := sha256.Sum256([]byte("medmesh scenario " + name))
	k, _, err := crypto.GenerateEd25519Key(bytes.NewReader(seed[:]))
	if err != nil {
		t.Fatal(err)
	}
	kem, err := keywrap.Generate()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return &ident{key: k, id: id, kem: kem}
}

func runScenario(t *testing.T, path string, slow bool) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := &scenario{t: t, ctx: context.Background(), ids: map[string]*ident{}, nodes: map[string]*Core{},
		stores: map[string]*flakyStore{}, entries: map[string]*Entry{}, clock: uint64(testEpoch.UnixMilli()), slow: slow}
	var out strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(raw))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	for i := 0; i < len(lines); {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			out.WriteString(line + "\n")
			i++
			continue
		}
		cmd := line
		i++
		if i >= len(lines) || lines[i] != "----" {
			t.Fatalf("%s:%d: %q is not followed by ----", path, i, cmd)
		}
		i++
		var want []string
		for i < len(lines) && lines[i] != "" {
			want = append(want, lines[i])
			i++
		}
		got := strings.TrimRight(s.run(cmd), "\n")
		if !*rewrite && got != strings.Join(want, "\n") {
			t.Errorf("%s: %s\n got:\n%s\nwant:\n%s", path, cmd, got, strings.Join(want, "\n"))
		}
		out.WriteString(cmd + "\n----\n")
		if got != "" {
			out.WriteString(got + "\n")
		}
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// run executes one command and returns its output; a failing command
// prints "error: ...".
func (s *scenario) run(line string) string {
	f := strings.Fields(line)
	args := map[string]string{}
	var pos []string
	for _, w := range f[1:] {
		if k, v, ok := strings.Cut(w, "="); ok {
			args[k] = v
		} else {
			pos = append(pos, w)
		}
	}
	out, err := s.exec(f[0], pos, args)
	if err != nil {
		return out + "error: " + s.name(err.Error())
	}
	return out
}

func (s *scenario) exec(cmd string, pos []string, args map[string]string) (string, error) {
	switch cmd {
	case "network":
		for _, w := range pos {
			if w == "scoped" {
				args["scoped"] = ""
			}
		}
		return "", s.network(args)
	case "node":
		for _, n := range pos {
			st := &flakyStore{Store: NewMemStore()}
			c, err := NewCore(s.ctx, CoreConfig{Store: st, Genesis: s.genesis, Types: Builtin()})
			if err != nil {
				return "", err
			}
			c.slowPathOnly = s.slow
			s.nodes[n], s.stores[n] = c, st
		}
		return "", nil
	case "sign":
		e, err := s.sign(pos, args)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s: %s by %s on %s", pos[0], e.Type, s.name(e.Author.String()), s.labels(e.Parents)), nil
	case "append":
		e, err := s.sign(pos, args)
		if err != nil {
			return "", err
		}
		return s.ingest(args["on"], []*Entry{e})
	case "ingest":
		var es []*Entry
		for _, l := range pos[1:] {
			e, ok := s.entries[l]
			if !ok {
				return "", fmt.Errorf("no entry %q", l)
			}
			es = append(es, e)
		}
		return s.ingest(pos[0], es)
	case "sync":
		return s.sync(args["from"], args["to"], args["scope"])
	case "heads":
		c := s.nodes[pos[0]]
		if c == nil {
			return "", fmt.Errorf("no node %q", pos[0])
		}
		sc, err := s.scopeArg(args["scope"])
		if err != nil {
			return "", err
		}
		return "heads " + s.labels(c.ScopeHeads(sc)), nil
	case "lacks":
		return s.lacks(pos[0], args["peer"])
	case "members", "grants", "receipts", "named":
		return s.query(cmd, pos[0], args)
	case "involved":
		return s.involved(pos[0], args)
	case "listing":
		return s.listing(pos[0], args)
	case "converged":
		if sc := args["scope"]; sc != "" {
			return s.convergedScope(pos, sc)
		}
		return s.converged(pos)
	case "restart":
		c, err := NewCore(s.ctx, CoreConfig{Store: s.stores[pos[0]], Genesis: s.genesis, Types: Builtin()})
		if err != nil {
			return "", err
		}
		c.slowPathOnly = s.slow
		s.nodes[pos[0]] = c
		return "heads " + s.labels(c.Heads()), nil
	case "fail-store":
		st := s.stores[pos[0]]
		switch mode := strings.Join(pos[1:], " "); mode {
		case "":
			st.set(errors.New("disk failed"), nil)
		case "commit":
			st.set(nil, errors.New("disk failed"))
		case "heal":
			st.set(nil, nil)
		default:
			return "", fmt.Errorf("fail-store: unknown mode %q", mode)
		}
		return "", nil
	}
	return "", fmt.Errorf("unknown command %q", cmd)
}

func (s *scenario) network(args map[string]string) error {
	admin := args["admin"]
	all := append([]string{admin}, splitList(args["peers"])...)
	for _, n := range all {
		s.ids[n] = scenarioIdent(s.t, n)
		s.pairs = append(s.pairs, s.ids[n].id.String(), n)
	}
	var err error
	var netID cid.Cid
	var opts []GenesisOption
	if _, ok := args["scoped"]; ok {
		opts = append(opts, WithScopes())
	}
	s.genesis, netID, err = NewGenesis(s.ids[admin].key, "scenario", testEpoch, Builtin(), opts...)
	if err != nil {
		return err
	}
	s.entries["genesis"] = mustDecode(s.t, s.genesis)
	s.pairs = append(s.pairs, netID.String(), "genesis")
	s.names = strings.NewReplacer(s.pairs...)
	return nil
}

func splitList(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// name replaces every peer ID, entry CID and record ID in text by its name.
func (s *scenario) name(text string) string {
	if s.names == nil {
		return text
	}
	return s.names.Replace(text)
}

func (s *scenario) labels(cs []cid.Cid) string {
	var out []string
	for _, c := range cs {
		out = append(out, s.name(c.String()))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func (s *scenario) record(name string) cid.Cid {
	c := fakeCid("scenario record " + name)
	if !strings.Contains(strings.Join(s.pairs, " "), c.String()) {
		s.pairs = append(s.pairs, c.String(), "rec:"+name)
		s.names = strings.NewReplacer(s.pairs...)
	}
	return c
}

func (s *scenario) peerArg(v string) (*ident, error) {
	id, ok := s.ids[v]
	if !ok {
		return nil, fmt.Errorf("no peer %q", v)
	}
	return id, nil
}

func (s *scenario) sign(pos []string, args map[string]string) (*Entry, error) {
	if len(pos) != 2 {
		return nil, errors.New("want LABEL TYPE")
	}
	label, typ := pos[0], pos[1]
	if _, dup := s.entries[label]; dup {
		return nil, fmt.Errorf("entry %q exists", label)
	}
	by, err := s.peerArg(args["by"])
	if err != nil {
		return nil, err
	}
	var parents []cid.Cid
	scope, err := s.scopeArg(args["scope"])
	if err != nil {
		return nil, err
	}
	pl, err := s.payload(typ, by, args)
	if err != nil {
		return nil, err
	}
	b, err := encodePayload(newTestTable(), typ, pl)
	if err != nil {
		return nil, err
	}
	if p := args["parents"]; p != "" {
		for _, l := range splitList(p) {
			e, ok := s.entries[l]
			if !ok {
				return nil, fmt.Errorf("no entry %q", l)
			}
			parents = append(parents, e.CID())
		}
	} else {
		n, ok := s.nodes[args["on"]]
		if !ok {
			return nil, fmt.Errorf("no node %q: say on=NODE or parents=", args["on"])
		}
		if args["scope"] == "" && n.scoped {
			if scope, err = n.scopeFor(s.ctx, by.key, typ, b); err != nil {
				return nil, err
			}
		}
		parents = n.closureHeads(wireScope(scope))
	}
	s.clock++ // every entry later than every earlier one: a stable order
	e, err := signScoped(by.key, s.entries["genesis"].CID(), wireScope(scope), typ, b, parents, HLC{Wall: s.clock})
	if err != nil {
		return nil, err
	}
	s.entries[label] = e
	s.pairs = append(s.pairs, e.CID().String(), label)
	s.names = strings.NewReplacer(s.pairs...)
	return e, nil
}

func newTestTable() typeTable {
	tt, _ := newTypeTable(Builtin())
	return tt
}

func (s *scenario) sealTo(args map[string]string, natural *ident) (*ident, error) {
	if k := args["key"]; k != "" {
		return s.peerArg(k)
	}
	return natural, nil
}

func (s *scenario) env(to *ident, info string) []byte {
	return envelopeFor(s.t, to, info)
}

func (s *scenario) payload(typ string, by *ident, a map[string]string) (any, error) {
	num := func(k string, def uint64) uint64 {
		if v, err := strconv.ParseUint(a[k], 10, 64); err == nil {
			return v
		}
		return def
	}
	peers := func(k string) ([]peer.ID, error) {
		var out []peer.ID
		for _, n := range splitList(a[k]) {
			id, err := s.peerArg(n)
			if err != nil {
				return nil, err
			}
			out = append(out, id.id)
		}
		sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
		return out, nil
	}
	one := func(k string) (*ident, error) { return s.peerArg(a[k]) }
	switch typ {
	case TypeMemberAdd, TypeMemberRemove, TypeMemberOrg:
		p, err := one("peer")
		if err != nil {
			return nil, err
		}
		switch typ {
		case TypeMemberAdd:
			return MemberAddPayload{Peer: p.id, Org: a["org"], Roles: splitList(a["roles"])}, nil
		case TypeMemberRemove:
			return MemberRemovePayload{Peer: p.id}, nil
		}
		return MemberOrgPayload{Peer: p.id, Org: a["org"]}, nil
	case TypeKeyAnnounce:
		k, err := s.sealTo(a, by)
		if err != nil {
			return nil, err
		}
		return KeyAnnouncePayload{Public: k.kem.Public()}, nil
	case TypeRecordAnnounce:
		k, err := s.sealTo(a, by)
		if err != nil {
			return nil, err
		}
		p := RecordAnnouncePayload{Record: s.record(a["rec"]), Blocklist: fakeCid("bl " + a["rec"]), Size: 1000,
			Replicas: uint32(num("replicas", 3)), Class: ClassDocument, Version: num("version", 1), OwnerEnvelope: s.env(k, "owner")}
		if c := a["class"]; c != "" {
			p.Class = c
		}
		if prev := a["prev"]; prev != "" {
			p.Prev = s.record(prev)
		}
		for _, n := range splitList(a["escrow"]) {
			e, err := s.peerArg(n)
			if err != nil {
				return nil, err
			}
			p.Escrow = append(p.Escrow, EscrowEnvelope{Authority: e.id, Envelope: s.env(e, "escrow")})
		}
		return p, nil
	case TypeGrant:
		to, err := one("to")
		if err != nil {
			return nil, err
		}
		k, err := s.sealTo(a, to)
		if err != nil {
			return nil, err
		}
		p := GrantPayload{Record: s.record(a["rec"]), Grantee: to.id, Envelope: s.env(k, "grant"), Purpose: PurposeTreatment}
		if v := a["purpose"]; v != "" {
			p.Purpose = v
		}
		if v := a["expires"]; v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return nil, err
			}
			p.Expires = time.UnixMilli(int64(s.clock) + 1).Add(d)
		}
		return p, nil
	case TypeRevoke:
		to, err := one("to")
		if err != nil {
			return nil, err
		}
		return RevokePayload{Record: s.record(a["rec"]), Grantee: to.id}, nil
	case TypeAccess:
		g := s.entries[a["grant"]]
		p := AccessPayload{Record: s.record(a["rec"]), Version: num("version", 1), Purpose: PurposeTreatment, Time: testEpoch}
		if g != nil {
			p.Grant = g.CID()
		}
		if v := a["purpose"]; v != "" {
			p.Purpose = v
		}
		return p, nil
	case TypeReceipt:
		return ReceiptPayload{Record: s.record(a["rec"]), Status: a["status"]}, nil
	case TypeAssign:
		hs, err := peers("holders")
		if err != nil {
			return nil, err
		}
		return AssignPayload{Record: s.record(a["rec"]), Holders: hs}, nil
	case TypeServed:
		r, err := one("reader")
		if err != nil {
			return nil, err
		}
		p := ServedPayload{Record: s.record(a["rec"]), Reader: r.id, Reads: num("reads", 1), First: testEpoch, Last: testEpoch}
		if g := s.entries[a["grant"]]; g != nil {
			p.Grant = g.CID()
		}
		return p, nil
	}
	return nil, fmt.Errorf("no payload builder for %q", typ)
}

// ingest runs one Ingest and prints its Outcome.
func (s *scenario) ingest(node string, es []*Entry) (string, error) {
	c, ok := s.nodes[node]
	if !ok {
		return "", fmt.Errorf("no node %q", node)
	}
	out, err := c.Ingest(s.ctx, es)
	return s.outcome(es, out), err
}

func (s *scenario) outcome(es []*Entry, out Outcome) string {
	var b strings.Builder
	for i, r := range out.Results {
		if r.Status == 0 {
			continue // not reached: Ingest failed
		}
		fmt.Fprintf(&b, "%s: %s", s.name(es[i].CID().String()), r.Status)
		var re *RejectError
		if errors.As(r.Err, &re) {
			fmt.Fprintf(&b, " %s: %s", re.Reason, s.name(re.Err.Error()))
		}
		b.WriteString("\n")
	}
	var applied []string
	for _, e := range out.Applied {
		applied = append(applied, s.name(e.CID().String()))
	}
	if len(applied) > 0 && len(applied) != countStatus(out, Applied) {
		fmt.Fprintf(&b, "applied: %s\n", strings.Join(applied, " "))
	}
	for _, r := range out.Rejected {
		if !inputOf(es, r.Entry) {
			fmt.Fprintf(&b, "rejected with it: %s %s\n", s.name(r.Entry.String()), r.Reason)
		}
	}
	if len(out.Missing) > 0 {
		fmt.Fprintf(&b, "missing: %s\n", s.labels(out.Missing))
	}
	return b.String()
}

func countStatus(out Outcome, st Status) int {
	n := 0
	for _, r := range out.Results {
		if r.Status == st {
			n++
		}
	}
	return n
}

func inputOf(es []*Entry, c cid.Cid) bool {
	for _, e := range es {
		if e.CID() == c {
			return true
		}
	}
	return false
}

// sync carries what to lacks from from, as the sync protocol would.
func (s *scenario) sync(from, to, scope string) (string, error) {
	src, dst := s.nodes[from], s.nodes[to]
	if src == nil || dst == nil {
		return "", errors.New("want from=NODE to=NODE")
	}
	sc, err := s.scopeArg(scope)
	if err != nil {
		return "", err
	}
	offer, err := dst.ScopeOffer(s.ctx, sc)
	if err != nil {
		return "", err
	}
	lacks, err := src.ScopePeerLacks(s.ctx, sc, offer)
	if err != nil {
		return "", err
	}
	var es []*Entry
	for _, c := range lacks {
		raw, err := src.store.GetEntry(s.ctx, c)
		if err != nil {
			return "", err
		}
		e, err := DecodeEntry(raw)
		if err != nil {
			return "", err
		}
		es = append(es, e)
	}
	head := fmt.Sprintf("sends %d: %s\n", len(es), s.labels(lacks))
	if len(es) == 0 {
		return head, nil
	}
	out, err := dst.Ingest(s.ctx, es)
	return head + s.outcome(es, out), err
}

func (s *scenario) lacks(node, peerNode string) (string, error) {
	c, p := s.nodes[node], s.nodes[peerNode]
	if c == nil || p == nil {
		return "", errors.New("want NODE peer=NODE")
	}
	offer, err := p.Offer(s.ctx)
	if err != nil {
		return "", err
	}
	theirs, err := c.PeerLacks(s.ctx, offer)
	if err != nil {
		return "", err
	}
	ours, err := c.WeLack(s.ctx, offer)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s lacks: %s\n%s lacks: %s\n", peerNode, s.labels(theirs), node, s.labels(ours)), nil
}

func (s *scenario) query(what, node string, a map[string]string) (string, error) {
	c := s.nodes[node]
	if c == nil {
		return "", fmt.Errorf("no node %q", node)
	}
	st := c.State()
	var lines []string
	switch what {
	case "members":
		ms, err := st.Members(s.ctx)
		if err != nil {
			return "", err
		}
		for _, m := range ms {
			lines = append(lines, fmt.Sprintf("%s org=%q roles=%s by %s", s.name(m.Peer.String()), m.Org, strings.Join(m.Roles, ","), s.name(m.Entry.String())))
		}
	case "grants":
		gs, err := st.Grants(s.ctx, s.record(a["rec"]))
		if err != nil {
			return "", err
		}
		for _, g := range gs {
			lines = append(lines, fmt.Sprintf("%s to %s by %s purpose=%s", s.name(g.Entry.String()), s.name(g.Grantee.String()), s.name(g.Grantor.String()), g.Purpose))
		}
	case "receipts":
		rs, err := st.Receipts(s.ctx, s.record(a["rec"]))
		if err != nil {
			return "", err
		}
		for _, r := range rs {
			lines = append(lines, fmt.Sprintf("%s %s (%s)", s.name(r.Holder.String()), r.Status, s.name(r.Entry.String())))
		}
	case "named":
		ps, err := st.Named(s.ctx, s.record(a["rec"]))
		if err != nil {
			return "", err
		}
		for _, p := range ps {
			lines = append(lines, s.name(p.String()))
		}
	}
	sort.Strings(lines)
	if len(lines) == 0 {
		return "none", nil
	}
	return strings.Join(lines, "\n"), nil
}

// involved prints the records a peer owns, holds and has or had a grant
// on, from the involvement indexes.
func (s *scenario) involved(node string, a map[string]string) (string, error) {
	c := s.nodes[node]
	if c == nil {
		return "", fmt.Errorf("no node %q", node)
	}
	p, err := s.peerArg(a["peer"])
	if err != nil {
		return "", err
	}
	st := c.State()
	var b strings.Builder
	for _, q := range []struct {
		name string
		f    func(context.Context, peer.ID) ([]cid.Cid, error)
	}{{"owns", st.OwnedIDs}, {"holds", st.HeldIDs}, {"granted", st.GrantedIDs}} {
		ids, err := q.f(s.ctx, p.id)
		if err != nil {
			return "", err
		}
		l := s.labels(ids)
		if l == "" {
			l = "none"
		}
		fmt.Fprintf(&b, "%s: %s\n", q.name, l)
	}
	return b.String(), nil
}

// listing prints what `ls` shows of the records a peer owns (version,
// holders), from the owner's indexes, after checking it against a read of
// each record and its receipts.
func (s *scenario) listing(node string, a map[string]string) (string, error) {
	c := s.nodes[node]
	if c == nil {
		return "", fmt.Errorf("no node %q", node)
	}
	p, err := s.peerArg(a["peer"])
	if err != nil {
		return "", err
	}
	st := c.State()
	ls, err := st.OwnedListing(s.ctx, p.id)
	if err != nil {
		return "", err
	}
	recs, err := st.OwnedRecords(s.ctx, p.id)
	if err != nil {
		return "", err
	}
	if len(ls) != len(recs) {
		return "", fmt.Errorf("listing has %d records, the owner owns %d", len(ls), len(recs))
	}
	var lines []string
	for i, l := range ls {
		r := recs[i]
		holders := []peer.ID{r.Owner}
		rcs, err := st.Receipts(s.ctx, r.ID)
		if err != nil {
			return "", err
		}
		for _, rc := range rcs {
			if rc.Status == "held" {
				holders = append(holders, rc.Holder)
			}
		}
		sort.Slice(holders, func(i, j int) bool { return holders[i] < holders[j] })
		want := Listing{ID: r.ID, Owner: r.Owner, Class: r.Class, Size: r.Size, Replicas: r.Replicas, Version: r.Version,
			Prev: r.Prev, Announced: r.Announced, Holders: holders}
		if fmt.Sprint(l) != fmt.Sprint(want) {
			return "", fmt.Errorf("listing %+v, the record and its receipts say %+v", l, want)
		}
		var hs []string
		for _, h := range l.Holders {
			hs = append(hs, s.name(h.String()))
		}
		lines = append(lines, fmt.Sprintf("%s v%d holders %s", s.labels([]cid.Cid{l.ID}), l.Version, strings.Join(hs, ",")))
	}
	if len(lines) == 0 {
		return "none", nil
	}
	return strings.Join(lines, "\n"), nil
}

// scopeArg turns global, owner:PEER or audit:PEER into a scope name.
func (s *scenario) scopeArg(v string) (string, error) {
	if v == "" || v == ScopeGlobal {
		return ScopeGlobal, nil
	}
	kind, name, ok := strings.Cut(v, ":")
	if !ok {
		return "", fmt.Errorf("scope %q: want global, owner:PEER or audit:PEER", v)
	}
	p, err := s.peerArg(name)
	if err != nil {
		return "", err
	}
	switch kind {
	case "owner":
		return OwnerScope(p.id), nil
	case "audit":
		return AuditScope(p.id), nil
	}
	return "", fmt.Errorf("scope %q: want global, owner:PEER or audit:PEER", v)
}

// convergedScope compares the heads and ScopeDigest of one scope.
func (s *scenario) convergedScope(nodes []string, scope string) (string, error) {
	sc, err := s.scopeArg(scope)
	if err != nil {
		return "", err
	}
	var h0 string
	var d0 []byte
	for i, n := range nodes {
		c := s.nodes[n]
		if c == nil {
			return "", fmt.Errorf("no node %q", n)
		}
		d, count, err := c.ScopeDigest(s.ctx, sc)
		if err != nil {
			return "", err
		}
		if sc == ScopeGlobal { // and the materialized global state
			g, err := c.GlobalDigest(s.ctx)
			if err != nil {
				return "", err
			}
			d = append(d, g...)
		}
		h := fmt.Sprintf("%s (%d entries)", s.labels(c.ScopeHeads(sc)), count)
		if i == 0 {
			h0, d0 = h, d
			continue
		}
		if h != h0 || !bytes.Equal(d, d0) {
			return fmt.Sprintf("differ: %s heads %s, %s heads %s", nodes[0], h0, n, h), nil
		}
	}
	return "converged: heads " + h0, nil
}

func (s *scenario) converged(nodes []string) (string, error) {
	var h0 string
	var d0 []byte
	for i, n := range nodes {
		c := s.nodes[n]
		if c == nil {
			return "", fmt.Errorf("no node %q", n)
		}
		d, err := c.State().Digest(s.ctx)
		if err != nil {
			return "", err
		}
		h := s.labels(c.Heads())
		if i == 0 {
			h0, d0 = h, d
			continue
		}
		if h != h0 || !bytes.Equal(d, d0) {
			return fmt.Sprintf("differ: %s heads %s, %s heads %s", nodes[0], h0, n, h), nil
		}
	}
	return "converged: heads " + h0, nil
}
