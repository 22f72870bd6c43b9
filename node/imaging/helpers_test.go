package imaging

import (
	"testing"

	"github.com/medmesh/medmesh/node/imaging/imagingtest"
)

// newTestService is a service over in-memory records, with dir as its
// repo folder.
func newTestService(t *testing.T, dir string) (*Service, *imagingtest.Records) {
	t.Helper()
	r := imagingtest.New(t)
	s, err := New(Config{Records: r, Ledger: r, Self: r.Self, Identity: r.Identity, DS: r.DS, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return s, r
}
