package ledger

import (
	"bytes"
	"fmt"
	"path"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

// The signed message is cut out of the entry's bytes; it must equal the
// encoding of the entry without its signature.
func TestSignedMessageIsUnsignedEncoding(t *testing.T) {
	_, _, raws := seedEntries(t)
	for i, raw := range raws {
		var w wireEntry
		if err := decMode.Unmarshal(raw, &w); err != nil {
			t.Fatal(err)
		}
		u := w
		u.Sig = nil
		unsigned, err := encMode.Marshal(&u)
		if err != nil {
			t.Fatal(err)
		}
		want := append(append([]byte(nil), signDomain...), unsigned...)
		got, err := signedMessage(raw, &w)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("entry %d: signed message differs from the unsigned encoding (%v)", i, err)
		}
		if len(got) != len(signDomain)+len(raw)-67 {
			t.Fatalf("entry %d: the fast cut was not taken", i)
		}
	}
}

func TestClockKey(t *testing.T) {
	c := fakeCid("x")
	for _, h := range []HLC{{}, {1, 2}, {^uint64(0), ^uint32(0)}, {0x0123456789abcdef, 0xfedcba98}} {
		want := fmt.Sprintf("%016x%08x/%s", h.Wall, h.Counter, c)
		if got := clockKey(h, c); got != want {
			t.Fatalf("clockKey(%v) = %s, want %s", h, got, want)
		}
		if got, want := revClockKey(h, c.String()), fmt.Sprintf("%016x%08x/%s", ^h.Wall, ^h.Counter, c); got != want {
			t.Fatalf("revClockKey(%v) = %s, want %s", h, got, want)
		}
	}
}

func TestIsCleanKey(t *testing.T) {
	for _, k := range []string{"/", "", "a", "/a", "/a/b", "/a//b", "/a/", "/a/./b", "/a/../b", "/.", "/..", "/a/.b", "/a/b..", "//", "/s/x/t/k"} {
		clean := len(k) > 0 && k[0] == '/' && path.Clean(k) == k && k != "/"
		if got := isCleanKey(k); got != clean {
			t.Fatalf("isCleanKey(%q) = %v, want %v", k, got, clean)
		}
	}
}

// encodeMeta writes meta by hand; it must produce encMode's bytes.
func TestEncodeMetaIsCanonical(t *testing.T) {
	_, l, _ := seedEntries(t)
	author := l.self
	vals := []uint64{0, 1, 23, 24, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, 1<<64 - 1}
	parents := [][]cid.Cid{nil, {fakeCid("a")}, {fakeCid("a"), fakeCid("b"), fakeCid("c")}}
	for _, w := range vals {
		for _, c := range vals {
			if c > 1<<32-1 {
				continue
			}
			for _, ps := range parents {
				for i, typ := range []string{"a", TypeAccess, "a-type-name-that-is-longer-than-twenty-four"} {
					scope := ""
					if len(ps) > 0 && i > 0 {
						scope = AuditScope(author)
					}
					e := &Entry{Clock: HLC{w, uint32(c)}, Parents: ps, Type: typ, Author: author, Scope: scope}
					m := meta{Wall: w, Counter: uint32(c), Type: typ, Author: []byte(author), Scope: scope}
					for _, p := range ps {
						m.Parents = append(m.Parents, p.Bytes())
					}
					want, err := encMode.Marshal(&m)
					if err != nil {
						t.Fatal(err)
					}
					got, err := encodeMeta(e)
					if err != nil || !bytes.Equal(got, want) {
						t.Fatalf("meta %+v: got %x, want %x (%v)", m, got, want, err)
					}
				}
			}
		}
	}
}

// encodeAccessStored copies the payload; it must produce encMode's bytes.
func TestEncodeAccessStoredIsCanonical(t *testing.T) {
	w, l, _ := seedEntries(t)
	rec := recordPayload(t, w.members[1], "b").Record
	for i, p := range []AccessPayload{
		{Record: rec, Version: 1, Purpose: PurposeTreatment, Time: testEpoch, Grant: fakeCid("g")},
		{Record: rec, Version: 1 << 40, Purpose: PurposeResearch, Grant: fakeCid("g2")},
		{Record: rec, Version: 7, Purpose: PurposeEmergency, Time: time.UnixMilli(-5), Grant: fakeCid("g3")},
	} {
		e := forge(t, l, w.members[2], TypeAccess, p, nil)
		var ac accessWire
		if err := canonicalUnmarshal(e.Payload, &ac); err != nil {
			t.Fatal(err)
		}
		want, err := encMode.Marshal(&accessStored{Access: ac, Reader: []byte(e.Author), Entry: e.cid.Bytes()})
		if err != nil {
			t.Fatal(err)
		}
		if got := encodeAccessStored(e); !bytes.Equal(got, want) {
			t.Fatalf("access %d: got %x, want %x", i, got, want)
		}
	}
}
