package records

import (
	"context"
	"fmt"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore/query"

	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/keywrap"
)

// RewrapOwnerKeys re-seals the wrapped data key of every record this node
// owns (its local copy, /keys) to its current key-wrapping key, after a
// rotation (node/keys). It returns how many it re-sealed, and how many it
// could not open (sealed to a key the node no longer has). The envelope in
// a record's announcement on the ledger cannot change: it stays sealed to
// the key the record was added under.
func (s *Service) RewrapOwnerKeys(ctx context.Context) (rewrapped, unopened int, err error) {
	cur := keywrap.IDOf(s.kem.Public())
	res, err := s.local.Query(ctx, query.Query{Prefix: keysPrefix.String()})
	if err != nil {
		return 0, 0, fmt.Errorf("list owned records' keys: %w", err)
	}
	entries, err := res.Rest()
	if err != nil {
		return 0, 0, fmt.Errorf("list owned records' keys: %w", err)
	}
	for _, e := range entries {
		id, err := cid.Decode(strings.TrimPrefix(e.Key, keysPrefix.String()+"/"))
		if err != nil {
			continue
		}
		var env keywrap.Envelope
		if err := env.UnmarshalBinary(e.Value); err != nil {
			return rewrapped, unopened, fmt.Errorf("the stored key of record %s: %w", id, err)
		}
		if env.KeyID == cur {
			continue
		}
		r := access.OwnerRecipient(id)
		k, err := r.UnwrapWith(s.kem, e.Value)
		if err != nil {
			unopened++
			s.log.Error("an owned record's key does not open with this node's keys", "record", id, "err", err)
			continue
		}
		b, err := r.Wrap(s.kem.Public(), k)
		if err != nil {
			return rewrapped, unopened, err
		}
		if err := s.local.Put(ctx, keyKey(id), b); err != nil {
			return rewrapped, unopened, fmt.Errorf("store the re-sealed key of record %s: %w", id, err)
		}
		rewrapped++
	}
	if err := s.local.Sync(ctx, keysPrefix); err != nil {
		return rewrapped, unopened, fmt.Errorf("sync re-sealed keys: %w", err)
	}
	return rewrapped, unopened, nil
}

// OwnerKeysSealedTo counts the owned records whose local wrapped key is
// sealed to key id (what destroying that key would lose).
func (s *Service) OwnerKeysSealedTo(ctx context.Context, id keywrap.KeyID) (int, error) {
	res, err := s.local.Query(ctx, query.Query{Prefix: keysPrefix.String()})
	if err != nil {
		return 0, err
	}
	entries, err := res.Rest()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		var env keywrap.Envelope
		if env.UnmarshalBinary(e.Value) == nil && env.KeyID == id {
			n++
		}
	}
	return n, nil
}
