package strictcbor

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

type msg struct {
	A int    `cbor:"1,keyasint"`
	B string `cbor:"2,keyasint,omitempty"`
}

// Every way around the policy is refused; the plain form decodes.
func TestDecRefuses(t *testing.T) {
	dec := Dec(Limits{Nesting: 4, Array: 16, Map: 16}) // 16: the library's least
	var m msg
	if err := dec.Unmarshal(mustHex(t, "a1 01 05"), &m); err != nil || m.A != 5 {
		t.Fatalf("plain map: %v %+v", err, m)
	}
	for name, in := range map[string]string{
		"duplicate key":  "a2 01 05 01 06",
		"indefinite map": "bf 01 05 ff",
		"tag":            "c1 a1 01 05",
		"unknown field":  "a1 03 05",
		"invalid UTF-8":  "a1 02 61 ff",
	} {
		if err := dec.Unmarshal(mustHex(t, in), &m); err == nil {
			t.Errorf("%s (%s) accepted", name, in)
		}
	}
	// The limits, on a generic value: 16 map pairs pass, 17 do not;
	// four nested arrays pass, five do not.
	pairs := func(n int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "%x", 0xa0+n)
		for k := range n {
			fmt.Fprintf(&b, "%02x01", k)
		}
		return b.String()
	}
	for in, ok := range map[string]bool{
		pairs(16): true, pairs(17): false,
		"8181818101": true, "818181818101": false,
	} {
		var v any
		if err := dec.Unmarshal(mustHex(t, in), &v); (err == nil) != ok {
			t.Errorf("%s: error %v, want accepted=%v", in, err, ok)
		}
	}
}

// Enc is deterministic: map keys in core order whatever the input order.
func TestEncDeterministic(t *testing.T) {
	a, err := Enc.Marshal(map[int]int{2: 1, 1: 2, 10: 3})
	if err != nil {
		t.Fatal(err)
	}
	if want := mustHex(t, "a3 01 02 02 01 0a 03"); !bytes.Equal(a, want) {
		t.Fatalf("got %x, want %x", a, want)
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(string(bytes.ReplaceAll([]byte(s), []byte(" "), nil)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
