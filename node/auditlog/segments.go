package auditlog

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/record"
)

// RecordSegments keeps the log's segments (Segments) as this node's own
// records: encrypted under a fresh key like any record, announced with the
// class "other" (the set of classes is fixed; the manifest's kind, which
// only the owner reads, says what they are), replicated like any record,
// and hidden from `ls`. A restored node finds them again among the records
// the ledger says it owns, by opening their manifests.
const (
	segmentKind      = "medmesh-audit-segment"
	segmentMediaType = "application/vnd.medmesh.audit-segment"
)

// segmentMeta is a segment record's metadata (in its encrypted manifest).
type segmentMeta struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
}

// Records is what RecordSegments asks of the records service
// (*records.Service).
type Records interface {
	Add(ctx context.Context, req records.AddRequest) (*records.AddResult, error)
	Open(ctx context.Context, id cid.Cid, version int) (ledger.RecordInfo, *record.Manifest, record.Key, *ledger.Grant, error)
	Get(ctx context.Context, id cid.Cid, req records.GetRequest, w io.Writer) error
	Hide(ctx context.Context, id cid.Cid) error
}

// RecordSegments implements Segments over the records service.
type RecordSegments struct {
	Self    peer.ID
	Records Records
	// Ledger lists the records this node owns.
	Ledger interface {
		OwnedRecords(ctx context.Context, p peer.ID) ([]ledger.RecordInfo, error)
	}

	mu    sync.Mutex
	known map[cid.Cid]*segmentMeta // records opened: a segment's range, nil for another record
}

var _ Segments = (*RecordSegments)(nil)

func (a *RecordSegments) Put(ctx context.Context, from, to int64, write func(io.Writer) error) (cid.Cid, error) {
	meta, err := json.Marshal(segmentMeta{From: from, To: to})
	if err != nil {
		return cid.Undef, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(write(pw)) }()
	res, err := a.Records.Add(ctx, records.AddRequest{
		Name: fmt.Sprintf("audit log leaves %d to %d", from, to-1), MediaType: segmentMediaType, Kind: segmentKind,
		Class: ledger.ClassOther, Hidden: true, Meta: meta,
		Files: []records.FileSource{{Path: "segment", Open: func() (io.Reader, error) { return pr, nil }}},
	})
	pr.CloseWithError(io.ErrClosedPipe) // the writer stops if the add did
	if err != nil {
		return cid.Undef, err
	}
	a.mu.Lock()
	a.remember(res.ID, &segmentMeta{From: from, To: to})
	a.mu.Unlock()
	return res.ID, nil
}

func (a *RecordSegments) remember(id cid.Cid, m *segmentMeta) {
	if a.known == nil {
		a.known = map[cid.Cid]*segmentMeta{}
	}
	a.known[id] = m
}

// List opens the manifest of each record of class "other" this node owns
// and has not opened yet (after a restore, each fetched from a holder), and
// returns the segments among them. A manifest that cannot be fetched yet
// makes it an error: the caller asks again.
func (a *RecordSegments) List(ctx context.Context) ([]SegmentRef, error) {
	owned, err := a.Ledger.OwnedRecords(ctx, a.Self)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []SegmentRef
	unread := 0
	var firstErr error
	for _, r := range owned {
		if r.Class != ledger.ClassOther {
			continue
		}
		m, ok := a.known[r.ID]
		if !ok {
			_, man, _, _, err := a.Records.Open(ctx, r.ID, int(r.Version))
			if err != nil {
				unread++
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			if man.Kind == segmentKind {
				m = &segmentMeta{}
				if err := json.Unmarshal(man.Meta, m); err != nil || m.From < 0 || m.From >= m.To {
					return nil, fmt.Errorf("segment record %s: metadata %q: %v", r.ID, man.Meta, err)
				}
				if err := a.Records.Hide(ctx, r.ID); err != nil {
					return nil, err
				}
			}
			a.remember(r.ID, m)
		}
		if m != nil {
			out = append(out, SegmentRef{ID: r.ID, From: m.From, To: m.To})
		}
	}
	if unread > 0 {
		return out, fmt.Errorf("%d of this node's records of class %q could not be opened yet (the first: %w)", unread, ledger.ClassOther, firstErr)
	}
	return out, nil
}

func (a *RecordSegments) Read(ctx context.Context, id cid.Cid, w io.Writer) error {
	return a.Records.Get(ctx, id, records.GetRequest{File: -1}, w)
}
