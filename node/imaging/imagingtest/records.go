// Package imagingtest is an in-memory stand-in for what the imaging
// service needs from the rest of the node (imaging.Records and
// imaging.Ledger), so the service, and the protocols over it (DICOMweb,
// DIMSE), are tested without a network:
//
//	r := imagingtest.New(t)
//	svc, err := imaging.New(imaging.Config{Records: r, Ledger: r, Self: r.Self,
//		Identity: r.Identity, DS: r.DS, Dir: t.TempDir()})
package imagingtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/record"
)

// Records is an in-memory records service and ledger record table
// (imaging.Records and imaging.Ledger): records are kept in clear, owned
// by Self, with their version chains. It stands in for the network-backed
// records service, which the devnet tests in node/daemon exercise.
type Records struct {
	// Self, Identity and DS are a node's identity and datastore for
	// imaging.Config.
	Self     peer.ID
	Identity crypto.PrivKey
	DS       datastore.Batching

	mu    sync.Mutex
	recs  map[cid.Cid]*fakeRecord
	next  int
	reads int
}

type fakeRecord struct {
	info  ledger.RecordInfo
	m     *record.Manifest
	files [][]byte
}

// New returns an empty Records with a fresh identity and an in-memory
// datastore.
func New(t testing.TB) *Records {
	t.Helper()
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	self, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &Records{Self: self, Identity: priv, DS: dssync.MutexWrap(datastore.NewMapDatastore()), recs: map[cid.Cid]*fakeRecord{}}
}

func (f *Records) Add(ctx context.Context, req records.AddRequest) (*records.AddResult, error) {
	m := &record.Manifest{Kind: req.Kind, Name: req.Name, MediaType: req.MediaType, Version: 1, Prev: req.Prev, Meta: req.Meta}
	var files [][]byte
	for _, fs := range req.Files {
		r, err := fs.Open()
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(r)
		if c, ok := r.(io.Closer); ok {
			c.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", fs.Path, err)
		}
		m.Files = append(m.Files, record.File{Path: fs.Path, Size: int64(len(b)), SHA256: sha256.Sum256(b)})
		files = append(files, b)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.Prev.Defined() {
		m.Version = int(f.latest(req.Prev).Version) + 1
	}
	f.next++
	h, _ := mh.Sum([]byte(fmt.Sprint("fake record ", f.next)), mh.SHA2_256, -1)
	id := cid.NewCidV1(cid.Raw, h)
	f.recs[id] = &fakeRecord{info: ledger.RecordInfo{ID: id, Owner: f.Self, Version: uint64(m.Version), Prev: req.Prev, Class: req.Class}, m: m, files: files}
	return &records.AddResult{ID: id, Manifest: m, Size: m.Size(), Version: m.Version}, nil
}

func (f *Records) Update(ctx context.Context, req records.AddRequest) (*records.AddResult, error) {
	if _, ok := f.Record(req.Prev); !ok {
		return nil, fault.NotFoundf("", "unknown record %s", req.Prev)
	}
	return f.Add(ctx, req)
}

// latest follows id's chain to its newest version; f.mu held.
func (f *Records) latest(id cid.Cid) ledger.RecordInfo {
	best := f.recs[id].info
	for again := true; again; {
		again = false
		for _, r := range f.recs {
			if r.info.Prev == best.ID {
				best, again = r.info, true
			}
		}
	}
	return best
}

func (f *Records) OpenFor(ctx context.Context, id cid.Cid, version int, purpose string) (ledger.RecordInfo, *record.Manifest, record.Key, *ledger.Grant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.recs[id]
	if !ok {
		return ledger.RecordInfo{}, nil, record.Key{}, nil, fault.NotFoundf("", "unknown record %s", id)
	}
	if version == 0 {
		r = f.recs[f.latest(id).ID]
	}
	if version != 0 && int(r.info.Version) != version {
		return r.info, nil, record.Key{}, nil, fault.NotFoundf("", "record %s has no version %d", id, version)
	}
	return r.info, r.m, record.Key{}, nil, nil
}

func (f *Records) ReadFiles(ctx context.Context, m *record.Manifest, key record.Key, which []int, w io.Writer) error {
	f.mu.Lock()
	var files [][]byte
	for _, r := range f.recs {
		if r.m == m {
			files = r.files
		}
	}
	f.mu.Unlock()
	for _, i := range which {
		if i < 0 || i >= len(files) {
			return fault.NotFoundf("", "record has no file %d", i)
		}
		if _, err := io.Copy(w, bytes.NewReader(files[i])); err != nil {
			return err
		}
	}
	return nil
}

func (f *Records) LatestVersion(id cid.Cid) ledger.RecordInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.latest(id)
}

func (f *Records) ReadDone(ctx context.Context, info ledger.RecordInfo, purpose string, g *ledger.Grant) {
	f.mu.Lock()
	f.reads++
	f.mu.Unlock()
}

func (f *Records) Record(id cid.Cid) (ledger.RecordInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.recs[id]
	if !ok {
		return ledger.RecordInfo{}, false
	}
	return r.info, true
}

// Count is the number of records stored.
func (f *Records) Count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.recs)
}

// Reads is the number of ReadDone calls.
func (f *Records) Reads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}
