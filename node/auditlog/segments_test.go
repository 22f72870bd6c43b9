package auditlog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/record"
)

// fakeRecords stores records in memory; records in away do not open (their
// holders unreachable).
type fakeRecords struct {
	self   peer.ID
	owned  []ledger.RecordInfo
	man    map[cid.Cid]*record.Manifest
	data   map[cid.Cid][]byte
	hidden map[cid.Cid]bool
	away   map[cid.Cid]bool
	opened int
}

func (f *fakeRecords) Add(_ context.Context, req records.AddRequest) (*records.AddResult, error) {
	r, err := req.Files[0].Open()
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	id := recID(string(b))
	f.man[id] = &record.Manifest{Kind: req.Kind, Name: req.Name, Meta: req.Meta}
	f.data[id] = b
	if req.Hidden {
		f.hidden[id] = true
	}
	f.owned = append(f.owned, ledger.RecordInfo{ID: id, Owner: f.self, Class: req.Class, Version: 1})
	return &records.AddResult{ID: id}, nil
}

func (f *fakeRecords) Open(_ context.Context, id cid.Cid, _ int) (ledger.RecordInfo, *record.Manifest, record.Key, *ledger.Grant, error) {
	f.opened++
	if f.away[id] {
		return ledger.RecordInfo{}, nil, record.Key{}, nil, errors.New("no holder reachable")
	}
	return ledger.RecordInfo{ID: id}, f.man[id], record.Key{}, nil, nil
}

func (f *fakeRecords) Get(_ context.Context, id cid.Cid, _ records.GetRequest, w io.Writer) error {
	_, err := w.Write(f.data[id])
	return err
}

func (f *fakeRecords) Hide(_ context.Context, id cid.Cid) error { f.hidden[id] = true; return nil }

func (f *fakeRecords) OwnedRecords(context.Context, peer.ID) ([]ledger.RecordInfo, error) {
	return f.owned, nil
}

// A restored node finds its segments among the records of class "other"
// it owns by their manifests' kind: other records of that class are not
// segments, a record it cannot open yet makes List an error (asked again
// later), each manifest is opened once, and the segments found are hidden.
func TestRecordSegmentsFound(t *testing.T) {
	ctx := context.Background()
	_, self := newKey(t)
	f := &fakeRecords{self: self, man: map[cid.Cid]*record.Manifest{}, data: map[cid.Cid][]byte{},
		hidden: map[cid.Cid]bool{}, away: map[cid.Cid]bool{}}
	put := func(rs *RecordSegments, from, to int64, body string) cid.Cid {
		id, err := rs.Put(ctx, from, to, func(w io.Writer) error { _, err := io.WriteString(w, body); return err })
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	before := &RecordSegments{Self: self, Records: f, Ledger: f}
	s1 := put(before, 0, 4, "leaves 0-3")
	s2 := put(before, 4, 9, "leaves 4-8")
	if !f.hidden[s1] || !f.hidden[s2] || f.owned[0].Class != ledger.ClassOther || f.man[s1].Kind != segmentKind {
		t.Fatalf("a segment is stored as %+v, hidden %v", f.owned[0], f.hidden)
	}
	other, _ := f.Add(ctx, records.AddRequest{Class: ledger.ClassOther, Kind: "file",
		Files: []records.FileSource{{Open: func() (io.Reader, error) { return bytes.NewReader([]byte("a letter")), nil }}}})
	report, _ := f.Add(ctx, records.AddRequest{Class: ledger.ClassReport, Kind: "file",
		Files: []records.FileSource{{Open: func() (io.Reader, error) { return bytes.NewReader([]byte("a report")), nil }}}})

	// After the restore: no hidden marks, and one segment's holders away.
	f.hidden = map[cid.Cid]bool{}
	f.away[s2] = true
	after := &RecordSegments{Self: self, Records: f, Ledger: f}
	refs, err := after.List(ctx)
	if err == nil || len(refs) != 1 || refs[0] != (SegmentRef{ID: s1, From: 0, To: 4}) {
		t.Fatalf("with a segment away: %+v, %v", refs, err)
	}
	delete(f.away, s2)
	f.opened = 0
	refs, err = after.List(ctx)
	if err != nil || len(refs) != 2 || refs[1] != (SegmentRef{ID: s2, From: 4, To: 9}) {
		t.Fatalf("segments: %+v, %v", refs, err)
	}
	if f.opened != 1 {
		t.Fatalf("opened %d manifests again; only the one that was away is new", f.opened)
	}
	if !f.hidden[s1] || !f.hidden[s2] || f.hidden[other.ID] || f.hidden[report.ID] {
		t.Fatalf("hidden after List: %v", f.hidden)
	}
	var buf bytes.Buffer
	if err := after.Read(ctx, s2, &buf); err != nil || buf.String() != "leaves 4-8" {
		t.Fatalf("read %q, %v", buf.String(), err)
	}
}
