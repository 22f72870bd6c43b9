package imaging

import (
	"context"
	"errors"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"

	"github.com/medmesh/medmesh/storage/dicom"
)

// IndexGranted reads the study metadata of a record granted to this node
// (its newest readable version) and adds it to the index, so that queries
// (C-FIND, QIDO-RS) find it and retrieval (C-MOVE, C-GET, WADO-RS) can
// fetch it by UID. Opening the record is a read of someone else's study:
// it is claimed on the ledger with the grant's purpose, and its owner's
// audit shows it. It returns the record indexed (the version read).
func (s *Service) IndexGranted(ctx context.Context, id cid.Cid) (cid.Cid, error) {
	o, err := s.Open(ctx, id, 0, "")
	if err != nil {
		return cid.Undef, err
	}
	if o.Info.Owner == s.self {
		return o.Info.ID, nil // own studies are indexed when stored
	}
	if err := s.idx.Put(ctx, o.Info.ID.String(), o.Study); err != nil {
		return cid.Undef, err
	}
	return o.Info.ID, nil
}

// Indexed reports whether record id is in the index.
func (s *Service) Indexed(ctx context.Context, id cid.Cid) (bool, error) {
	_, err := s.idx.Study(ctx, id.String())
	switch {
	case err == nil, errors.Is(err, dicom.ErrNoDetail):
		return true, nil
	case errors.Is(err, ds.ErrNotFound):
		return false, nil
	}
	return false, err
}

// Unindex removes record id from the index (a revoked grant, a version
// superseded by a newer one). Removing what is absent is no error.
func (s *Service) Unindex(ctx context.Context, id cid.Cid) error {
	return s.idx.Delete(ctx, id.String())
}
