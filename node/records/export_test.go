package records

import (
	"context"

	"github.com/medmesh/medmesh/sharing/ledger"
)

// CountRead counts a read of info under g as a read resolved at pos does
// (for a test of a revoke that arrives while the read fetches).
func (s *Service) CountRead(info ledger.RecordInfo, g *ledger.Grant, pos ledger.Position) {
	s.claim(context.Background(), info, "", g, &pos)
}
