package dicomweb

import (
	"mime"
	"sort"
	"strconv"
	"strings"
)

// mediaRange is one entry of an Accept header: a media type (possibly
// with wildcards) and its parameters, lower-cased names.
type mediaRange struct {
	typ    string // "multipart/related", "image/png", "*/*"
	params map[string]string
	q      float64
}

// param returns a parameter without its quotes ("" if absent).
func (m mediaRange) param(k string) string { return strings.Trim(m.params[k], `"`) }

// parseAccept splits an Accept header into its media ranges, most wanted
// first (by q, then in the order given). An empty header is "*/*". Ranges
// with q=0 (not acceptable) are dropped.
func parseAccept(h string) []mediaRange {
	if strings.TrimSpace(h) == "" {
		return []mediaRange{{typ: "*/*", params: map[string]string{}, q: 1}}
	}
	var out []mediaRange
	for _, part := range splitAccept(h) {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		mt, params, err := mime.ParseMediaType(part)
		if err != nil {
			// be lenient with what mime refuses (e.g. transfer-syntax=*)
			fields := strings.Split(part, ";")
			mt, params = strings.ToLower(strings.TrimSpace(fields[0])), map[string]string{}
			for _, f := range fields[1:] {
				if k, v, ok := strings.Cut(f, "="); ok {
					params[strings.ToLower(strings.TrimSpace(k))] = strings.Trim(strings.TrimSpace(v), `"`)
				}
			}
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				q = f
			}
			delete(params, "q")
		}
		if q <= 0 {
			continue
		}
		out = append(out, mediaRange{typ: mt, params: params, q: q})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].q > out[j].q })
	return out
}

// splitAccept splits on commas outside quotes.
func splitAccept(h string) []string {
	var out []string
	quoted, start := false, 0
	for i, r := range h {
		switch r {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, h[start:i])
				start = i + 1
			}
		}
	}
	return append(out, h[start:])
}

// matches reports whether media type t (no wildcards) is in the range.
func (m mediaRange) matches(t string) bool {
	if m.typ == "*/*" || m.typ == t {
		return true
	}
	if major, sub, ok := strings.Cut(m.typ, "/"); ok && sub == "*" {
		return strings.HasPrefix(t, major+"/")
	}
	return false
}
