package imaging

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// Matching of query keys against stored values (PS3.4 C.2.2.2), shared by
// C-FIND and QIDO-RS:
//
//   - an empty key, or "*", matches everything (universal matching);
//   - UI: a list of UIDs separated by "\" matches any of them;
//   - DA and TM: a single value, or a range "A-B", "A-" or "-B";
//   - PN: wildcards * and ?, ignoring case (as Orthanc does by default);
//     with fuzzy matching, a key without wildcards also matches when it
//     starts any component of the name (family, given, middle...), and
//     accents are ignored ("joh" finds "DOE^JOHN", "jose" finds "José");
//   - CS: wildcards, ignoring case, and a "\" list matches any value;
//   - numbers (IS, US, SL...): equal values;
//   - other strings: wildcards, case-sensitive.
//
// A multi-valued attribute (ModalitiesInStudy) matches when any of its
// values does.

// matchKey reports whether key matches one of values for an attribute of
// VR vr.
func matchKey(vr, key string, values []string, fuzzy bool) bool {
	key = strings.TrimSpace(key)
	if key == "" || key == "*" {
		return true
	}
	if len(values) == 0 {
		values = []string{""}
	}
	for _, v := range values {
		if matchOne(vr, key, strings.TrimSpace(v), fuzzy) {
			return true
		}
	}
	return false
}

func matchOne(vr, key, v string, fuzzy bool) bool {
	switch vr {
	case "UI":
		for _, k := range strings.FieldsFunc(key, func(r rune) bool { return r == '\\' || r == ',' }) {
			if strings.TrimSpace(k) == v {
				return true
			}
		}
		return false
	case "DA":
		return matchRange(key, v, normDA)
	case "TM":
		return matchRange(key, v, normTM)
	case "DT":
		return matchRange(key, v, func(s string) string { return s })
	case "PN":
		k, val := foldCase(key), foldCase(v)
		if wildMatch(k, val) {
			return true
		}
		if !fuzzy {
			return false
		}
		k, val = foldAccents(k), foldAccents(val)
		if wildMatch(k, val) {
			return true
		}
		if strings.ContainsAny(k, "*?") {
			return false
		}
		for _, comp := range strings.FieldsFunc(val, func(r rune) bool { return r == '^' || r == '=' || r == ' ' }) {
			if strings.HasPrefix(comp, k) {
				return true
			}
		}
		return strings.HasPrefix(val, k)
	case "CS":
		for _, k := range strings.Split(key, `\`) {
			if wildMatch(foldCase(strings.TrimSpace(k)), foldCase(v)) {
				return true
			}
		}
		return false
	case "IS", "US", "UL", "SL", "SS":
		return strings.TrimLeft(strings.TrimPrefix(key, "+"), "0") == strings.TrimLeft(strings.TrimPrefix(v, "+"), "0")
	}
	return wildMatch(key, v)
}

// matchRange matches a DA/TM/DT key: one value or a range, both ends
// inclusive. norm makes values comparable as strings; an empty stored
// value matches no range.
func matchRange(key, v string, norm func(string) string) bool {
	from, to, isRange := strings.Cut(key, "-")
	if !isRange {
		if strings.ContainsAny(key, "*?") {
			return wildMatch(key, v)
		}
		return v != "" && norm(v) == norm(key)
	}
	if v == "" {
		return false
	}
	nv := norm(v)
	if from != "" && nv < norm(from) {
		return false
	}
	if to != "" && nv > norm(to) {
		return false
	}
	return true
}

// normDA makes a DA comparable: YYYYMMDD (the retired YYYY.MM.DD form
// too).
func normDA(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), ".", "") }

// normTM makes a TM comparable: HHMMSS.FFFFFF, missing parts 0 (the
// retired HH:MM:SS form too).
func normTM(s string) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	whole, frac, _ := strings.Cut(s, ".")
	for len(whole) < 6 {
		whole += "0"
	}
	for len(frac) < 6 {
		frac += "0"
	}
	return whole + "." + frac
}

// wildMatch is DICOM wildcard matching: * any run, ? one character.
func wildMatch(pattern, s string) bool {
	if !strings.ContainsAny(pattern, "*?") {
		return pattern == s
	}
	p, t := []rune(pattern), []rune(s)
	star, match := -1, 0
	i, j := 0, 0
	for j < len(t) {
		switch {
		case i < len(p) && (p[i] == '?' || p[i] == t[j]):
			i++
			j++
		case i < len(p) && p[i] == '*':
			star, match = i, j
			i++
		case star >= 0:
			i = star + 1
			match++
			j = match
		default:
			return false
		}
	}
	for i < len(p) && p[i] == '*' {
		i++
	}
	return i == len(p)
}

func foldCase(s string) string { return strings.ToUpper(s) }

// foldAccents removes combining marks ("JOSÉ" becomes "JOSE").
func foldAccents(s string) string {
	if isASCII(s) {
		return s
	}
	out, _, err := transform.String(transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC), s)
	if err != nil {
		return s
	}
	return out
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
