package pacs

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/dimse"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
)

// fakeImaging records imports: each import's files by study, read when
// Import is called (the inbox removes them after).
type fakeImaging struct {
	mu      sync.Mutex
	fail    error
	imports [][]string // per import: the SOP UIDs it stored
	done    chan struct{}
}

func (f *fakeImaging) Import(ctx context.Context, paths []string) (*api.DicomImportResult, error) {
	f.mu.Lock()
	defer func() {
		f.mu.Unlock()
		select {
		case f.done <- struct{}{}:
		default:
		}
	}()
	if f.fail != nil {
		return nil, f.fail
	}
	var sops []string
	for _, p := range paths {
		ents, _ := os.ReadDir(p)
		for _, e := range ents {
			in, err := dicom.ParseFile(filepath.Join(p, e.Name()))
			if err != nil {
				return nil, err
			}
			sops = append(sops, in.SOPInstanceUID)
		}
	}
	sort.Strings(sops)
	f.imports = append(f.imports, sops)
	return &api.DicomImportResult{Studies: []api.DicomStudyResult{{Added: len(sops)}}}, nil
}

func (f *fakeImaging) WriteStudy(context.Context, string) (*imaging.StudyWriter, error) {
	return nil, imaging.ErrStudyStored // the fake stores at the end, by Import
}

func (f *fakeImaging) Search(context.Context, imaging.Query) ([]*imaging.Row, []uint32, error) {
	return nil, nil, nil
}
func (f *fakeImaging) Open(context.Context, cid.Cid, int, string) (*imaging.Opened, error) {
	return nil, errors.New("no")
}
func (f *fakeImaging) OpenInstance(context.Context, *imaging.Opened, *dicom.InstanceRef) io.ReadCloser {
	return nil
}
func (f *fakeImaging) WriteInstance(context.Context, *imaging.Opened, *dicom.InstanceRef, io.Writer) error {
	return errors.New("no")
}
func (f *fakeImaging) ReadDone(context.Context, *imaging.Opened, string) {}
func (f *fakeImaging) IndexGranted(context.Context, cid.Cid) (cid.Cid, error) {
	return cid.Undef, nil
}
func (f *fakeImaging) Indexed(context.Context, cid.Cid) (bool, error) { return false, nil }
func (f *fakeImaging) Unindex(context.Context, cid.Cid) error         { return nil }

type fakeLedger struct{}

func (fakeLedger) IsMember(peer.ID) bool                    { return true }
func (fakeLedger) Record(cid.Cid) (ledger.RecordInfo, bool) { return ledger.RecordInfo{}, false }
func (fakeLedger) GrantedIDs(context.Context, peer.ID) ([]cid.Cid, error) {
	return nil, nil
}
func (fakeLedger) Grants(cid.Cid) []ledger.Grant        { return nil }
func (fakeLedger) Versions(cid.Cid) []ledger.RecordInfo { return nil }

func newTestService(t *testing.T, dir string, img *fakeImaging, delay time.Duration) *Service {
	t.Helper()
	s, err := New(Config{Settings: Settings{StoreDelay: delay}, Imaging: img, Ledger: fakeLedger{}, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return s
}

// send hands a file to the store handler as a C-STORE of association a.
func send(t *testing.T, s *Service, a *dimse.AssociationInfo, path string) error {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, data, err := dimse.Part10Params(f)
	if err != nil {
		t.Fatal(err)
	}
	return s.Store(context.Background(), &dimse.StoreRequest{Association: a, SOPClassUID: p.SOPClassUID, SOPInstanceUID: p.SOPInstanceUID,
		TransferSyntaxUID: p.TransferSyntaxUID}, data)
}

func wait(t *testing.T, img *fakeImaging, n int) [][]string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		img.mu.Lock()
		got := len(img.imports)
		out := append([][]string(nil), img.imports...)
		img.mu.Unlock()
		if got >= n {
			return out
		}
		select {
		case <-img.done:
		case <-deadline:
			t.Fatalf("%d imports, want %d", got, n)
		}
	}
}

// TestInbox: one association carrying two studies gives one import per
// study once it ends; a study sent over two associations in a row is one
// import; a failed import keeps the instances and is retried; what a
// stopped service left is stored at the next start.
func TestInbox(t *testing.T) {
	dir := t.TempDir()
	paths, err := dicomtest.WriteStudy(t.TempDir(), dicomtest.Options{Patients: 2, InstancesPerSeries: 3, Rows: 8, Cols: 8, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths) // P1/..., P2/...
	img := &fakeImaging{done: make(chan struct{}, 16)}
	s := newTestService(t, dir, img, 200*time.Millisecond)

	a1 := &dimse.AssociationInfo{CallingAE: "CT1"}
	for _, p := range paths {
		if err := send(t, s, a1, p); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(400 * time.Millisecond)
	if got := wait(t, img, 0); len(got) != 0 {
		t.Fatalf("imported while the association is open: %v", got)
	}
	s.Ended(a1, nil)
	if got := wait(t, img, 2); len(got) != 2 || len(got[0]) != 3 || len(got[1]) != 3 {
		t.Fatalf("one association, two studies: imports %v", got)
	}

	// One study over two associations in a row: one import.
	more, err := dicomtest.WriteStudy(t.TempDir(), dicomtest.Options{InstancesPerSeries: 4, Rows: 8, Cols: 8, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	a2, a3 := &dimse.AssociationInfo{CallingAE: "CT1"}, &dimse.AssociationInfo{CallingAE: "CT1"}
	send(t, s, a2, more[0])
	send(t, s, a2, more[1])
	s.Ended(a2, nil)
	send(t, s, a3, more[2])
	send(t, s, a3, more[3])
	s.Ended(a3, nil)
	if got := wait(t, img, 3); len(got) != 3 || len(got[2]) != 4 {
		t.Fatalf("a study over two associations: imports %v", got)
	}

	// A refused instance: not DICOM.
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("not dicom"), 0o600)
	err = s.Store(context.Background(), &dimse.StoreRequest{Association: a3, SOPClassUID: "1.2.840.10008.5.1.4.1.1.2", SOPInstanceUID: "1.2.3",
		TransferSyntaxUID: dimse.ExplicitVRLittleEndian}, mustOpen(t, bad))
	var st *dimse.Status
	if !errors.As(err, &st) || st.Code != dimse.StatusUnableToProcess {
		t.Fatalf("a data set that does not parse: %v", err)
	}

	// A failed import stays in the inbox, is retried, and survives a stop.
	img.mu.Lock()
	img.fail = errors.New("disk full")
	img.mu.Unlock()
	s.in.retry = 100 * time.Millisecond
	last, err := dicomtest.WriteStudy(t.TempDir(), dicomtest.Options{InstancesPerSeries: 2, Rows: 8, Cols: 8, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	a4 := &dimse.AssociationInfo{CallingAE: "CT1"}
	send(t, s, a4, last[0])
	send(t, s, a4, last[1])
	s.Ended(a4, nil)
	<-img.done
	<-img.done // retried
	s.Close()
	if ents, _ := os.ReadDir(filepath.Join(dir, InboxDir)); len(ents) != 2 { // .incoming and the study
		t.Fatalf("inbox after a failed import: %v", ents)
	}
	img.mu.Lock()
	img.fail = nil
	img.mu.Unlock()
	s = newTestService(t, dir, img, time.Hour)
	defer s.Close()
	if got := wait(t, img, 4); len(got[3]) != 2 {
		t.Fatalf("restart: imports %v", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ents, _ := os.ReadDir(filepath.Join(dir, InboxDir))
		if len(ents) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("inbox not emptied after the import: %v", ents)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustOpen(t *testing.T, p string) io.Reader {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
