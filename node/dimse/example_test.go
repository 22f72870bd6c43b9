package dimse_test

import (
	"context"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/medmesh/medmesh/node/dimse"
)

// fileStore writes each received instance as a Part 10 file.
type fileStore struct{ dir string }

func (s fileStore) Store(ctx context.Context, req *dimse.StoreRequest, data io.Reader) error {
	f, err := os.CreateTemp(s.dir, ".incoming-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op once renamed
	p10, err := dimse.Part10(req.FileMeta(), data)
	if err != nil {
		f.Close()
		return err
	}
	if _, err := io.Copy(f, p10); err != nil { // streams: nothing is held whole
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(s.dir, req.SOPInstanceUID+".dcm"))
}

// A storage SCP for two modalities and a workstation on the LAN.
func ExampleServer() {
	callers, err := dimse.ParseCallers("CT1@10.0.0.21,MR1@10.0.0.22,WS@10.0.1.0/24")
	if err != nil {
		log.Fatal(err)
	}
	s, err := dimse.NewServer(dimse.ServerOptions{
		AETitle: "MEDMESH",
		Allowed: callers,
		Store:   fileStore{dir: "/var/lib/incoming"},
	})
	if err != nil {
		log.Fatal(err)
	}
	go s.ListenAndServe("0.0.0.0:11112")
	defer s.Close()
}

// Send a Part 10 file to a PACS, as stored.
func ExampleDial() {
	ctx := context.Background()
	f, err := os.Open("/tmp/image.dcm")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	p, data, err := dimse.Part10Params(f)
	if err != nil {
		log.Fatal(err)
	}
	a, err := dimse.Dial(ctx, "pacs.example:104", dimse.ClientOptions{
		CallingAE: "MEDMESH", CalledAE: "PACS",
		Proposals: dimse.StorageProposals([]dimse.StoreParams{p}),
	})
	if err != nil {
		log.Fatal(err) // e.g. *dimse.RejectError: calling AE title not recognized
	}
	defer a.Release(ctx)
	if _, err := a.Store(ctx, p, data); err != nil {
		log.Fatal(err) // a *dimse.Status for a failure status, or a *dimse.NoContextError
	}
}
