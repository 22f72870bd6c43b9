package fhir

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/medmesh/medmesh/internal/fault"
)

// Search parameter types this facade implements.
const (
	pToken     = "token"
	pDate      = "date"
	pReference = "reference"
)

// param is a search parameter of one resource type.
type param struct {
	name string
	typ  string
	// target is the resource type a reference parameter points at.
	target string
	// fold compares token codes ignoring case (DICOM modalities).
	fold bool
	// definition is the parameter's canonical URL when it is one of FHIR's;
	// "" for the ones medmesh defines.
	definition string
	doc        string
}

// token is a coded value an item is indexed under.
type token struct{ system, code string }

// dateRange is [start, end): what a date of some precision covers.
type dateRange struct{ start, end time.Time }

// item is one resource with the values its search parameters match.
type item struct {
	id     string
	res    any
	tokens map[string][]token
	dates  map[string][]dateRange
	refs   map[string][]string // "Type/id"
}

func newItem(id string, res any) *item {
	return &item{id: id, res: res, tokens: map[string][]token{"_id": {{"", id}}}, dates: map[string][]dateRange{}, refs: map[string][]string{}}
}

func (it *item) token(p, system, code string) {
	if code != "" {
		it.tokens[p] = append(it.tokens[p], token{system, code})
	}
}

func (it *item) date(p string, r dateRange) {
	if !r.start.IsZero() {
		it.dates[p] = append(it.dates[p], r)
	}
}

func (it *item) ref(p, typ, id string) {
	if id != "" {
		it.refs[p] = append(it.refs[p], typ+"/"+id)
	}
}

// query is a parsed search: conditions (AND of ORs) and paging.
type query struct {
	conds  []cond
	count  int
	offset int
	// raw keeps the parameters the search used, for the Bundle's links.
	raw url.Values
}

type cond struct {
	p      param
	values []string // OR
}

// Paging limits.
const (
	defaultCount = 50
	maxCount     = 500
)

var paging = map[string]bool{"_count": true, "_offset": true, "_format": true}

// parseQuery checks a search's parameters against the type's: an unknown
// parameter or modifier is an error naming the supported ones (the
// CapabilityStatement lists exactly these), unless the client asked for
// lenient handling (Prefer: handling=lenient), which ignores it.
func parseQuery(vals url.Values, params []param, lenient bool) (*query, error) {
	q := &query{count: defaultCount, raw: url.Values{}}
	by := map[string]param{"_id": {name: "_id", typ: pToken}}
	for _, p := range params {
		by[p.name] = p
	}
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vs := vals[k]
		switch k {
		case "_count", "_offset":
			n, err := strconv.Atoi(vs[len(vs)-1])
			if err != nil || n < 0 {
				return nil, fault.Invalidf("", "%s must be a number >= 0, got %q", k, vs[len(vs)-1])
			}
			if k == "_count" {
				q.count = min(n, maxCount)
			} else {
				q.offset = n
			}
			continue
		case "_format":
			if f := vs[len(vs)-1]; f != "json" && f != "application/fhir+json" && f != "application/json" {
				return nil, &statusError{406, fault.Invalidf("", "_format %q: this server speaks application/fhir+json only", f)}
			}
			q.raw[k] = vs
			continue
		}
		p, ok := by[k]
		if !ok {
			if lenient {
				continue
			}
			names := []string{}
			for n := range by {
				names = append(names, n)
			}
			sort.Strings(names)
			return nil, fault.Invalidf("supported: "+strings.Join(append(names, "_count", "_offset"), ", ")+" (see GET /fhir/metadata)", "unknown or unsupported search parameter %q", k)
		}
		for _, v := range vs {
			if v == "" {
				return nil, fault.Invalidf("", "search parameter %s is empty", k)
			}
			c := cond{p: p, values: strings.Split(v, ",")}
			if p.typ == pDate {
				for _, dv := range c.values {
					if _, _, err := parseDateParam(dv); err != nil {
						return nil, err
					}
				}
			}
			q.conds = append(q.conds, c)
		}
		q.raw[k] = vs
	}
	return q, nil
}

// value returns the first value of a parameter the query has.
func (q *query) value(name string) (string, bool) {
	for _, c := range q.conds {
		if c.p.name == name {
			return c.values[0], true
		}
	}
	return "", false
}

func (q *query) match(it *item) bool {
	for _, c := range q.conds {
		ok := false
		for _, v := range c.values {
			if matchOne(c.p, v, it) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func matchOne(p param, v string, it *item) bool {
	switch p.typ {
	case pToken:
		sys, code, hasSys := strings.Cut(v, "|")
		if !hasSys {
			sys, code = "", v
		}
		for _, t := range it.tokens[p.name] {
			if hasSys && t.system != sys {
				continue
			}
			if t.code == code || p.fold && strings.EqualFold(t.code, code) {
				return true
			}
		}
	case pReference:
		want := refValue(p.target, v)
		for _, r := range it.refs[p.name] {
			if r == want {
				return true
			}
		}
	case pDate:
		prefix, r, err := parseDateParam(v)
		if err != nil {
			return false
		}
		for _, d := range it.dates[p.name] {
			if matchDate(prefix, r, d) {
				return true
			}
		}
	}
	return false
}

// refValue normalizes a reference parameter's value ("123", "Patient/123"
// or an absolute URL ending in it) to "Type/id".
func refValue(target, v string) string {
	if parts := strings.Split(v, "/"); len(parts) >= 2 {
		return parts[len(parts)-2] + "/" + parts[len(parts)-1]
	}
	return target + "/" + v
}

var datePattern = regexp.MustCompile(`^(\d{4})(-(\d{2})(-(\d{2})(T(\d{2}):(\d{2})(:(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$`)

// parseDateParam reads a date search value: an optional prefix (eq, ne,
// gt, lt, ge, le) and a date of year, month, day or time precision.
func parseDateParam(v string) (string, dateRange, error) {
	prefix := "eq"
	if len(v) > 2 && v[0] >= 'a' && v[0] <= 'z' {
		prefix, v = v[:2], v[2:]
		switch prefix {
		case "eq", "ne", "gt", "lt", "ge", "le":
		default:
			return "", dateRange{}, fault.Invalidf("prefixes: eq, ne, gt, lt, ge, le", "date prefix %q is not supported", prefix)
		}
	}
	r, err := parseFHIRDate(v)
	if err != nil {
		return "", dateRange{}, fault.Invalidf("a date is YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss][Z|+hh:mm]", "date %q: %v", v, err)
	}
	return prefix, r, nil
}

// parseFHIRDate returns the range a FHIR date or dateTime covers.
func parseFHIRDate(v string) (dateRange, error) {
	m := datePattern.FindStringSubmatch(v)
	if m == nil {
		return dateRange{}, fmt.Errorf("not a FHIR date")
	}
	atoi := func(s string, def int) int {
		if s == "" {
			return def
		}
		n, _ := strconv.Atoi(s)
		return n
	}
	y, mo, d := atoi(m[1], 0), atoi(m[3], 1), atoi(m[5], 1)
	if mo < 1 || mo > 12 || d < 1 || d > 31 {
		return dateRange{}, fmt.Errorf("no such date")
	}
	switch {
	case m[2] == "":
		s := time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
		return dateRange{s, s.AddDate(1, 0, 0)}, nil
	case m[4] == "":
		s := time.Date(y, time.Month(mo), 1, 0, 0, 0, 0, time.UTC)
		return dateRange{s, s.AddDate(0, 1, 0)}, nil
	case m[6] == "":
		s := time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC)
		return dateRange{s, s.AddDate(0, 0, 1)}, nil
	}
	if atoi(m[7], 0) > 23 || atoi(m[8], 0) > 59 || atoi(m[10], 0) > 59 {
		return dateRange{}, fmt.Errorf("no such time")
	}
	loc := time.UTC
	if z := m[12]; z != "" && z != "Z" {
		t, err := time.Parse("-07:00", z)
		if err != nil {
			return dateRange{}, err
		}
		_, off := t.Zone()
		loc = time.FixedZone(z, off)
	}
	s := time.Date(y, time.Month(mo), d, atoi(m[7], 0), atoi(m[8], 0), atoi(m[10], 0), 0, loc)
	if m[9] == "" {
		return dateRange{s, s.Add(time.Minute)}, nil
	}
	return dateRange{s, s.Add(time.Second)}, nil
}

// matchDate applies a prefix as FHIR defines it for ranges: eq, the
// resource's range is within the parameter's; gt, it reaches above; lt,
// below; ge and le, either.
func matchDate(prefix string, p, r dateRange) bool {
	within := !r.start.Before(p.start) && !r.end.After(p.end)
	switch prefix {
	case "eq":
		return within
	case "ne":
		return !within
	case "gt":
		return r.end.After(p.end)
	case "lt":
		return r.start.Before(p.start)
	case "ge":
		return r.end.After(p.end) || within
	case "le":
		return r.start.Before(p.start) || within
	}
	return false
}

// dayRange is the range of one calendar day (a DICOM DA, YYYYMMDD).
func dayRange(da string) dateRange {
	t, err := time.Parse("20060102", da)
	if err != nil {
		return dateRange{}
	}
	return dateRange{t, t.AddDate(0, 0, 1)}
}

// instantRange is the range of an instant (to the second).
func instantRange(t time.Time) dateRange {
	if t.IsZero() {
		return dateRange{}
	}
	t = t.UTC().Truncate(time.Second)
	return dateRange{t, t.Add(time.Second)}
}
