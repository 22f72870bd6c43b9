package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestJSONListSameBytes: JSONList writes exactly what JSON writes for the
// same list (ls --json passes it through as the command's output).
func TestJSONListSameBytes(t *testing.T) {
	at := time.Date(2026, 12, 6, 15, 0, 0, 0, time.UTC)
	lists := [][]Record{
		{},
		{{ID: "bafkrei1", Size: 2, Owner: "12D3a", Class: "report", Version: 1, Created: at, Holders: []string{"12D3a"}}},
		{
			{ID: "bafkrei1", Size: 2, Owner: "12D3a", Class: "report <&>", Version: 2, Prev: "bafkrei0", Created: at, Mine: true, Held: true, Readable: true, Replicas: 3, Holders: []string{"12D3a", "12D3b"}, Under: true},
			{ID: "bafkrei2", Owner: "12D3b", Created: at, Holders: []string{}},
		},
	}
	for _, l := range lists {
		a, b := httptest.NewRecorder(), httptest.NewRecorder()
		JSON(a, 200, l)
		JSONList(b, 200, l)
		if a.Body.String() != b.Body.String() || b.Header().Get("Content-Type") != "application/json" || b.Code != 200 {
			t.Fatalf("JSON:\n%s\nJSONList:\n%s", a.Body, b.Body)
		}
	}
}

// BenchmarkJSONRecords: an answer of 100,000 records through JSON and
// JSONList.
func BenchmarkJSONRecords(b *testing.B) {
	recs := make([]Record, 100000)
	for i := range recs {
		recs[i] = Record{ID: "bafkreihp5zw3a35ok22zjmr2vmdtwctociqliii7dubhfzwoyarbmwhnpq", Size: 2048, Owner: "12D3KooWETDG1tbzqjMsunNnzmrcr3AT3pHDYcQqUNr8DLBKRa6j",
			Class: "report", Version: 1, Created: time.Now(), Mine: true, Held: true, Readable: true, Replicas: 3,
			Holders: []string{"12D3KooWETDG1tbzqjMsunNnzmrcr3AT3pHDYcQqUNr8DLBKRa6j", "12D3KooWETDG1tbzqjMsunNnzmrcr3AT3pHDYcQqUNr8DLBKRa6k"}}
	}
	b.Run("JSON", func(b *testing.B) {
		for range b.N {
			JSON(discard{}, 200, recs)
		}
	})
	b.Run("JSONList", func(b *testing.B) {
		for range b.N {
			JSONList(discard{}, 200, recs)
		}
	})
}

// discard is a ResponseWriter that keeps nothing (a recorder's growing
// buffer would be most of what the benchmark measures).
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// A record writes itself (appendListJSON) exactly as encoding/json writes
// it in a list, whatever its strings and time hold.
func TestRecordListJSON(t *testing.T) {
	at := time.Date(2026, 12, 6, 15, 4, 5, 123456789, time.UTC)
	east := time.FixedZone("east", 5*3600+30*60)
	odd := []string{"", "report", "report <&>", "a\"b\\c", "tab\there\nnew", "\x00\x1f\x7f", "héllo ✓", "\u2028\u2029", "bad \xff\xfe utf8", "emoji 🩻"}
	var recs []Record
	for i, s := range odd {
		recs = append(recs,
			Record{ID: s, Size: int64(i) - 3, Owner: s, Class: s, Version: -i, Prev: s, Created: at.In(east).Add(time.Duration(i) * time.Hour),
				Mine: i%2 == 0, Held: i%3 == 0, Readable: i%4 == 0, Replicas: i, Holders: []string{s, "12D3KooWb"}, Under: i%5 == 0},
			Record{ID: "bafk" + s, Created: time.Time{}, Holders: []string{}},
			Record{ID: "bafk", Created: at.Truncate(time.Second), Holders: nil},
			Record{ID: "bafk", Created: time.Unix(0, int64(i)).In(time.FixedZone("w", -7*3600)), Holders: []string{s}, Size: 1 << 62},
		)
	}
	for i := range recs {
		want, err := json.MarshalIndent(&recs[i], "  ", "  ")
		if err != nil {
			t.Fatal(err)
		}
		got, ok := recs[i].appendListJSON(nil)
		if !ok || string(got) != string(want) {
			t.Fatalf("record %d (ok %v):\n%s\nencoding/json:\n%s", i, ok, got, want)
		}
	}
	// A time encoding/json refuses: the record says it cannot either.
	bad := Record{ID: "x", Created: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := json.MarshalIndent(&bad, "  ", "  "); err == nil {
		t.Fatal("encoding/json encodes year 10000")
	}
	if _, ok := bad.appendListJSON(nil); ok {
		t.Fatal("appendListJSON encodes year 10000")
	}
}

// FuzzRecordListJSON: the same, for any strings and instants.
func FuzzRecordListJSON(f *testing.F) {
	f.Add("bafkreihp5zw3a35ok22zjmr2vmdtwctociqliii7dubhfzwoyarbmwhnpq", "report <&>", "12D3KooWETDG1tbzqjMsunNnzmrcr3AT3pHDYcQqUNr8DLBKRa6j", int64(1765033200), int64(123), 3600, 2048, true)
	f.Add("", "\xff\u2028\"\\", "", int64(-62135596800), int64(0), -7*3600, -1, false)
	f.Fuzz(func(t *testing.T, id, class, holder string, sec, nsec int64, off, n int, flag bool) {
		r := Record{ID: id, Size: int64(n), Owner: holder, Class: class, Version: n, Prev: class,
			Created: time.Unix(sec, nsec).In(time.FixedZone("z", off)), Mine: flag, Held: !flag, Readable: flag,
			Replicas: n, Holders: []string{holder, id}, Under: flag}
		want, err := json.MarshalIndent(&r, "  ", "  ")
		got, ok := r.appendListJSON(nil)
		if err != nil {
			if ok {
				t.Fatalf("encoding/json fails (%v), appendListJSON writes\n%s", err, got)
			}
			return
		}
		if !ok || string(got) != string(want) {
			t.Fatalf("ok %v:\n%s\nencoding/json:\n%s", ok, got, want)
		}
	})
}
