package api

import (
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
			JSON(httptest.NewRecorder(), 200, recs)
		}
	})
	b.Run("JSONList", func(b *testing.B) {
		for range b.N {
			JSONList(httptest.NewRecorder(), 200, recs)
		}
	})
}
