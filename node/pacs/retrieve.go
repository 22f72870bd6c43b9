package pacs

import (
	"context"
	"fmt"
	"io"
	"iter"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/node/dimse"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/storage/dicom"
)

// C-MOVE and C-GET: the identifier selects instances through the same
// query engine as C-FIND (at the image level, so the count is exact); each
// study is opened once (a granted study is fetched from the clinics that
// hold it, and the read is claimed on the ledger as `dicom export` claims
// it) and its instances are streamed from their records, as stored, byte
// for byte.

// Move implements dimse.MoveHandler.
func (s *Service) Move(ctx context.Context, req *dimse.QueryRequest) (*dimse.Retrieval, error) {
	return s.retrieve(ctx, req)
}

// Get implements dimse.GetHandler.
func (s *Service) Get(ctx context.Context, req *dimse.QueryRequest) (*dimse.Retrieval, error) {
	return s.retrieve(ctx, req)
}

func (s *Service) retrieve(ctx context.Context, req *dimse.QueryRequest) (*dimse.Retrieval, error) {
	level, err := imaging.ParseLevel(req.Level)
	if err != nil {
		return nil, dimse.NewStatus(dimse.StatusIdentifierMismatch, err.Error())
	}
	keys := identifierKeys(req.Identifier)
	// Only the keys of the requested level and above select (PS3.4
	// C.4.2.2.1); the engine then lists the instances under them.
	for t := range keys {
		if a, ok := imaging.Attribute(t); ok && a.Level > level {
			delete(keys, t)
		}
	}
	rows, _, err := s.img.Search(ctx, imaging.Query{Level: imaging.LevelImage, Keys: keys})
	if err != nil {
		return nil, dimse.NewStatus(dimse.StatusUnableToProcess, "query failed: "+err.Error())
	}
	return &dimse.Retrieval{Count: len(rows), Instances: s.instances(ctx, rows)}, nil
}

// instances yields the rows' instances, opening each study once.
func (s *Service) instances(ctx context.Context, rows []*imaging.Row) iter.Seq2[dimse.Instance, error] {
	return func(yield func(dimse.Instance, error) bool) {
		var o *imaging.Opened
		var open string
		var bySOP map[string]*dicom.InstanceRef
		done := func() {
			if o != nil {
				s.img.ReadDone(ctx, o, "")
			}
		}
		defer done()
		for _, r := range rows {
			if r.RecordID != open {
				done()
				o, open = nil, r.RecordID
				id, err := cid.Decode(r.RecordID)
				if err == nil {
					o, err = s.img.Open(ctx, id, 0, "")
				}
				if err != nil {
					s.log.Warn("dicom: retrieve: open study", "record", r.RecordID, "err", err)
					yield(dimse.Instance{}, dimse.NewStatus(dimse.StatusOutOfResourcesSubOps, "study cannot be read: "+err.Error()))
					return
				}
				bySOP = map[string]*dicom.InstanceRef{}
				for _, in := range o.Study.Instances() {
					bySOP[in.SOPInstanceUID] = in
				}
			}
			in := bySOP[r.Instance.SOPInstanceUID]
			if in == nil {
				// The record read is another version than the index's.
				yield(dimse.Instance{}, dimse.NewStatus(dimse.StatusOutOfResourcesSubOps, fmt.Sprintf("instance %s is not in record %s", r.Instance.SOPInstanceUID, o.Info.ID)))
				return
			}
			opened := o
			if !yield(dimse.Instance{SOPClassUID: in.SOPClassUID, SOPInstanceUID: in.SOPInstanceUID, TransferSyntaxUID: in.TransferSyntax, Part10: true,
				Open: func(ctx context.Context) (io.ReadCloser, error) { return s.img.OpenInstance(ctx, opened, in), nil }}, nil) {
				return
			}
		}
	}
}
