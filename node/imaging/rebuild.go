package imaging

import (
	"context"
	"errors"

	"github.com/ipfs/go-cid"
	"github.com/medmesh/medmesh/internal/fault"
)

// RebuildIndex indexes the studies among records (the newest version of
// each record this node owns whose class is imaging): the index of a node
// restored from a backup, whose datastore started empty. Each record is
// opened, its blocks coming from its holders when they are not here yet;
// a record that is not a DICOM study is skipped. It returns how many
// studies it indexed and how many it could not open (yet: the caller
// tries again later). Indexing a study again changes nothing.
func (s *Service) RebuildIndex(ctx context.Context, records []cid.Cid) (indexed, failed int, err error) {
	for _, id := range records {
		if err := ctx.Err(); err != nil {
			return indexed, failed, err
		}
		o, err := s.Open(ctx, id, 0, "")
		var fe *fault.Error
		if errors.As(err, &fe) && fe.Kind == fault.Invalid {
			continue // an imaging record that is not a DICOM study
		}
		if err != nil {
			s.log.Warn("rebuild DICOM index: open study", "record", id, "err", err)
			failed++
			continue
		}
		if err := s.idx.Put(ctx, o.Info.ID.String(), o.Study); err != nil {
			return indexed, failed, wrapRecord(id, err)
		}
		indexed++
	}
	return indexed, failed, nil
}
