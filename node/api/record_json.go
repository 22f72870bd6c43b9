package api

import (
	"encoding/json"
	"strconv"
)

// listJSON is a list item that writes itself as JSONList would through
// encoding/json (json.MarshalIndent(item, "  ", "  ")), byte for byte,
// without reflection: `ls` of 100,000 records spent 15% of its CPU in
// encoding/json. ok is false where it cannot promise the same bytes; the
// caller then uses encoding/json.
type listJSON interface {
	appendListJSON(b []byte) (out []byte, ok bool)
}

// appendListJSON implements listJSON for a record of `ls`.
func (r *Record) appendListJSON(b []byte) ([]byte, bool) {
	b = append(b, "{\n    \"id\": "...)
	b = appendJSONString(b, r.ID)
	b = append(b, ",\n    \"size\": "...)
	b = strconv.AppendInt(b, r.Size, 10)
	b = append(b, ",\n    \"owner\": "...)
	b = appendJSONString(b, r.Owner)
	b = append(b, ",\n    \"class\": "...)
	b = appendJSONString(b, r.Class)
	b = append(b, ",\n    \"version\": "...)
	b = strconv.AppendInt(b, int64(r.Version), 10)
	if r.Prev != "" {
		b = append(b, ",\n    \"prev\": "...)
		b = appendJSONString(b, r.Prev)
	}
	b = append(b, ",\n    \"created\": \""...)
	// AppendText is what time.Time's MarshalJSON writes between its
	// quotes, and fails where it fails (a year outside 0-9999).
	b, err := r.Created.AppendText(b)
	if err != nil {
		return b, false
	}
	b = append(b, "\",\n    \"mine\": "...)
	b = strconv.AppendBool(b, r.Mine)
	b = append(b, ",\n    \"held\": "...)
	b = strconv.AppendBool(b, r.Held)
	b = append(b, ",\n    \"readable\": "...)
	b = strconv.AppendBool(b, r.Readable)
	b = append(b, ",\n    \"replicas\": "...)
	b = strconv.AppendInt(b, int64(r.Replicas), 10)
	b = append(b, ",\n    \"holders\": "...)
	switch {
	case r.Holders == nil:
		b = append(b, "null"...)
	case len(r.Holders) == 0:
		b = append(b, "[]"...)
	default:
		b = append(b, '[')
		for i, h := range r.Holders {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, "\n      "...)
			b = appendJSONString(b, h)
		}
		b = append(b, "\n    ]"...)
	}
	b = append(b, ",\n    \"under_replicated\": "...)
	b = strconv.AppendBool(b, r.Under)
	b = append(b, "\n  }"...)
	return b, true
}

// appendJSONString appends s as encoding/json writes a string: as it is
// when it needs no escape (IDs, peer IDs, classes), else through
// encoding/json (HTML-safe escapes, invalid UTF-8 replaced).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
