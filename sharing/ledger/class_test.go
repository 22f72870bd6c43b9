package ledger

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestRecordClassFixedSet: record.announce carries its class in clear, so a
// modified node must not be able to publish free text there: every class
// outside Classes() is rejected by every node, each listed class accepted.
func TestRecordClassFixedSet(t *testing.T) {
	w := newWorld(t, 2)
	l := openNode(t, w.admin, w.genesis)
	w.setup(t, l)
	m := w.members[1]
	for _, bad := range []string{"smith-john-mrn12345", "", "Document", "document ", "imaging2", "fhir"} {
		p := recordPayload(t, m, "bad "+bad)
		p.Class = bad
		e := forge(t, l, m, TypeRecordAnnounce, p, nil)
		err := l.Ingest(context.Background(), e.raw)
		if !errors.As(err, new(*RejectError)) || !strings.Contains(err.Error(), "choose one of") {
			t.Errorf("class %q: %v, want a rejection listing the classes", bad, err)
		}
		if _, ok := l.Record(p.Record); ok {
			t.Errorf("class %q: record announced", bad)
		}
	}
	for _, c := range Classes() {
		if err := CheckClass(c); err != nil {
			t.Fatal(err)
		}
		p := recordPayload(t, m, "good "+c)
		p.Class = c
		as(t, l, m, TypeRecordAnnounce, p)
		if info, ok := l.Record(p.Record); !ok || info.Class != c {
			t.Errorf("class %q: %+v %v", c, info, ok)
		}
	}
}
