package research

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/medmesh/medmesh/storage/record"
)

// world is the records, grants, members and keys the fake services of
// several nodes share: what the ledger and the network give real ones.
type world struct {
	mu      sync.Mutex
	now     func() time.Time
	recs    map[cid.Cid]*fakeRecord
	order   []cid.Cid
	grants  map[cid.Cid][]ledger.Grant
	members map[peer.ID]bool
	keys    map[peer.ID][]byte
	// reads counts ReadDone per reader and record; deids counts
	// Deidentify per source record.
	reads map[peer.ID]map[cid.Cid]int
	deids map[cid.Cid]int
	// claims counts the opens of other nodes' records (each a read
	// claimed on the ledger), per reader.
	claims map[peer.ID]int
	// granted lists every grant's record, in order.
	granted []cid.Cid
	// corrupt makes ReadFiles return other bytes for records named so.
	corrupt map[cid.Cid]bool
}

type fakeRecord struct {
	info  ledger.RecordInfo
	man   *record.Manifest
	files [][]byte
}

func newWorld(now func() time.Time) *world {
	return &world{now: now, recs: map[cid.Cid]*fakeRecord{}, grants: map[cid.Cid][]ledger.Grant{}, members: map[peer.ID]bool{},
		keys: map[peer.ID][]byte{}, reads: map[peer.ID]map[cid.Cid]int{}, deids: map[cid.Cid]int{}, claims: map[peer.ID]int{}, corrupt: map[cid.Cid]bool{}}
}

func (w *world) chain(id cid.Cid) []ledger.RecordInfo {
	r, ok := w.recs[id]
	if !ok {
		return nil
	}
	root := r.info
	for root.Prev.Defined() {
		root = w.recs[root.Prev].info
	}
	out := []ledger.RecordInfo{root}
	for i := 0; i < len(out); i++ {
		for _, c := range w.order {
			if w.recs[c].info.Prev == out[i].ID {
				out = append(out, w.recs[c].info)
			}
		}
	}
	return out
}

// fakeLedger is a real ledger for consents (Append, Log, Entry) with the
// world's records, grants, members and keys.
type fakeLedger struct {
	*ledger.Ledger
	w *world
}

func (l fakeLedger) OwnedRecords(_ context.Context, p peer.ID) ([]ledger.RecordInfo, error) {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	var out []ledger.RecordInfo
	for _, c := range l.w.order {
		if r := l.w.recs[c].info; r.Owner == p {
			out = append(out, r)
		}
	}
	return out, nil
}

// GrantedIDs lists every record of another owner: the service checks the
// grants itself.
func (l fakeLedger) GrantedIDs(_ context.Context, p peer.ID) ([]cid.Cid, error) {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	var out []cid.Cid
	for _, c := range l.w.order {
		if l.w.recs[c].info.Owner != p {
			out = append(out, c)
		}
	}
	return out, nil
}

func (l fakeLedger) Record(id cid.Cid) (ledger.RecordInfo, bool) {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	r, ok := l.w.recs[id]
	if !ok {
		return ledger.RecordInfo{}, false
	}
	return r.info, true
}

func (l fakeLedger) Versions(id cid.Cid) []ledger.RecordInfo {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	return l.w.chain(id)
}

func (l fakeLedger) Grants(id cid.Cid) []ledger.Grant {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	return slices.Clone(l.w.grants[id])
}

func (l fakeLedger) IsMember(p peer.ID) bool {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	return l.w.members[p]
}

func (l fakeLedger) KEMKey(p peer.ID) ([]byte, bool) {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	k, ok := l.w.keys[p]
	return k, ok
}

// fakeRecords is one node's records service: records in clear in the
// world, readable by their owner and by grantees with a live grant.
type fakeRecords struct {
	w    *world
	self peer.ID
}

func (f *fakeRecords) Add(ctx context.Context, req records.AddRequest) (*records.AddResult, error) {
	m := &record.Manifest{Kind: req.Kind, Name: req.Name, MediaType: req.MediaType, Meta: req.Meta, Version: 1, Prev: req.Prev}
	var files [][]byte
	h := sha256.New()
	for _, fs := range req.Files {
		r, err := fs.Open()
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return nil, err
		}
		files = append(files, b)
		m.Files = append(m.Files, record.File{Path: fs.Path, Size: int64(len(b)), SHA256: sha256.Sum256(b)})
		h.Write(b)
	}
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	fmt.Fprintf(h, "%s %d", req.Name, len(f.w.order))
	d, _ := mh.Encode(h.Sum(nil), mh.SHA2_256)
	id := cid.NewCidV1(cid.Raw, d)
	info := ledger.RecordInfo{ID: id, Owner: f.self, Class: req.Class, Version: 1, Prev: req.Prev, Announced: f.w.now()}
	if req.Prev.Defined() {
		prev, ok := f.w.recs[req.Prev]
		if !ok || prev.info.Owner != f.self {
			return nil, fault.Forbiddenf("", "not this node's record %s", req.Prev)
		}
		info.Version = prev.info.Version + 1
		m.Version = int(info.Version)
	}
	f.w.recs[id] = &fakeRecord{info: info, man: m, files: files}
	f.w.order = append(f.w.order, id)
	return &records.AddResult{ID: id, Version: int(info.Version), Manifest: m}, nil
}

// grant returns this node's live grant of a record, if any.
func (f *fakeRecords) grant(id cid.Cid) *ledger.Grant {
	for _, g := range f.w.grants[id] {
		if g.Grantee == f.self && g.LiveAt(f.w.now()) {
			return &g
		}
	}
	return nil
}

func (f *fakeRecords) OpenFor(ctx context.Context, id cid.Cid, version int, purpose string) (ledger.RecordInfo, *record.Manifest, record.Key, *ledger.Grant, error) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	chain := f.w.chain(id)
	if chain == nil {
		return ledger.RecordInfo{}, nil, record.Key{}, nil, fault.NotFoundf("", "unknown record %s", id)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		v := chain[i]
		if version > 0 && int(v.Version) != version {
			continue
		}
		if v.Owner == f.self {
			return v, f.w.recs[v.ID].man, record.Key{}, nil, nil
		}
		if g := f.grant(v.ID); g != nil {
			f.w.claims[f.self]++
			return v, f.w.recs[v.ID].man, record.Key{}, g, nil
		}
	}
	return ledger.RecordInfo{}, nil, record.Key{}, nil, fault.Forbiddenf("ask the owner for a grant", "no key for record %s", id)
}

func (f *fakeRecords) ReadFiles(ctx context.Context, m *record.Manifest, key record.Key, which []int, w io.Writer) error {
	f.w.mu.Lock()
	var r *fakeRecord
	for _, x := range f.w.recs {
		if x.man == m {
			r = x
		}
	}
	corrupt := r != nil && f.w.corrupt[r.info.ID]
	f.w.mu.Unlock()
	if r == nil {
		return fault.NotFoundf("", "no such record")
	}
	for _, i := range which {
		b := r.files[i]
		if corrupt {
			b = bytes.ToUpper(b)
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeRecords) ReadDone(ctx context.Context, info ledger.RecordInfo, purpose string, g *ledger.Grant) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	if f.w.reads[f.self] == nil {
		f.w.reads[f.self] = map[cid.Cid]int{}
	}
	f.w.reads[f.self][info.ID]++
}

func (f *fakeRecords) Holders(info ledger.RecordInfo) []peer.ID { return []peer.ID{info.Owner} }

func (f *fakeRecords) LatestVersion(id cid.Cid) ledger.RecordInfo {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	c := f.w.chain(id)
	return c[len(c)-1]
}

func (f *fakeRecords) ReadKey(ctx context.Context, info ledger.RecordInfo) (record.Key, *ledger.Grant, error) {
	if info.Owner != f.self {
		return record.Key{}, nil, fault.Forbiddenf("", "not this node's record")
	}
	return record.Key{1}, nil, nil
}

func (f *fakeRecords) GrantVersion(ctx context.Context, rec cid.Cid, key []byte, grantee peer.ID, pub []byte, purpose string, expires time.Time) (*ledger.Entry, error) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	if !bytes.Equal(pub, f.w.keys[grantee]) || key[0] != 1 {
		return nil, fmt.Errorf("grant of %s: wrong key", rec)
	}
	f.w.granted = append(f.w.granted, rec)
	f.w.grants[rec] = append(f.w.grants[rec], ledger.Grant{Record: rec, Grantee: grantee, Grantor: f.self, Purpose: purpose, Expires: expires, Time: f.w.now()})
	return &ledger.Entry{Type: ledger.TypeGrant}, nil
}

func (f *fakeRecords) Revoke(ctx context.Context, id cid.Cid, grantee peer.ID) (int, error) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	n := 0
	for _, v := range f.w.chain(id) {
		gs := f.w.grants[v.ID]
		f.w.grants[v.ID] = slices.DeleteFunc(gs, func(g ledger.Grant) bool { return g.Grantee == grantee })
		n += len(gs) - len(f.w.grants[v.ID])
	}
	if n == 0 {
		return 0, fault.NotFoundf("", "%s has no grant on %s", grantee, id)
	}
	return n, nil
}

// fakeImaging is one node's imaging service over fakeRecords, with a real
// study index. Its "de-identification" prefixes each instance's bytes,
// gives the study new UIDs and a pseudonymous patient, and excludes
// instances whose bytes start with BURNED (as burned-in annotation would).
type fakeImaging struct {
	rec *fakeRecords
	idx *dicom.Index
}

func newFakeImaging(rec *fakeRecords) *fakeImaging {
	idx, err := dicom.NewIndex(dssync.MutexWrap(datastore.NewMapDatastore()), bytes.Repeat([]byte{7}, 32))
	if err != nil {
		panic(err)
	}
	return &fakeImaging{rec: rec, idx: idx}
}

func (f *fakeImaging) Find(ctx context.Context, fl dicom.Filter) ([]dicom.Hit, error) {
	return f.idx.Query(ctx, fl)
}

func (f *fakeImaging) Open(ctx context.Context, id cid.Cid, version int, purpose string) (*imaging.Opened, error) {
	info, m, key, g, err := f.rec.OpenFor(ctx, id, version, purpose)
	if err != nil {
		return nil, err
	}
	if m.Kind != imaging.Kind {
		return nil, fault.Invalidf("", "record %s is a %q record, not a DICOM study", info.ID, m.Kind)
	}
	st, err := dicom.DecodeStudyMeta(m.Meta)
	if err != nil {
		return nil, err
	}
	return &imaging.Opened{Info: info, Manifest: m, Key: key, Grant: g, Study: st}, nil
}

func (f *fakeImaging) ProjectKey(path string) ([]byte, error) {
	if path != "" {
		return nil, fault.Invalidf("", "no project key file %s here", path)
	}
	return []byte("project key 0123456789"), nil
}

// importStudy stores a study of one instance per (modality, body part,
// content) as a study record and indexes it.
func (f *fakeImaging) importStudy(ctx context.Context, n int, patient string, series ...[3]string) (cid.Cid, error) {
	st := &dicom.Study{UID: fmt.Sprintf("1.2.826.0.1.%d", n), PatientID: patient, PatientName: patient + "^NAME"}
	var files []records.FileSource
	for i, se := range series {
		b := []byte(se[2])
		st.Series = append(st.Series, &dicom.Series{UID: fmt.Sprintf("%s.%d", st.UID, i+1), Modality: se[0], BodyPart: se[1], Number: i + 1,
			Instances: []*dicom.InstanceRef{{SOPInstanceUID: fmt.Sprintf("%s.%d.1", st.UID, i+1), SOPClassUID: "1.2.840.10008.5.1.4.1.1.4",
				TransferSyntax: "1.2.840.10008.1.2.1", Number: 1, Size: int64(len(b)), FileIndex: i}}})
		files = append(files, records.FileSource{Path: fmt.Sprintf("%d.dcm", i), Open: func() (io.Reader, error) { return bytes.NewReader(b), nil }})
	}
	meta, err := dicom.EncodeStudyMeta(st)
	if err != nil {
		return cid.Undef, err
	}
	ar, err := f.rec.Add(ctx, records.AddRequest{Name: imaging.StudyName, Kind: imaging.Kind, Class: imaging.Class, MediaType: imaging.MediaType, Meta: meta, Files: files})
	if err != nil {
		return cid.Undef, err
	}
	return ar.ID, f.idx.Put(ctx, ar.ID.String(), st)
}

func (f *fakeImaging) Deidentify(ctx context.Context, src *imaging.Opened, opts dicom.DeidOptions, keep func(*dicom.Series) bool) (*imaging.Deidentified, error) {
	f.rec.w.mu.Lock()
	f.rec.w.deids[src.Info.ID]++
	f.rec.w.mu.Unlock()
	sum := sha256.Sum256(append(opts.ProjectKey, src.Study.UID...))
	ns := &dicom.Study{UID: fmt.Sprintf("2.25.%d", 1+int(sum[0])<<8|int(sum[1])), PatientID: fmt.Sprintf("ANON-%X", sum[2:6])}
	var files []records.FileSource
	for _, se := range src.Study.Series {
		if keep != nil && !keep(se) {
			continue
		}
		var nse *dicom.Series
		for _, in := range se.Instances {
			var buf bytes.Buffer
			if err := f.rec.ReadFiles(ctx, src.Manifest, src.Key, []int{in.FileIndex}, &buf); err != nil {
				return nil, err
			}
			if bytes.HasPrefix(buf.Bytes(), []byte("BURNED")) {
				continue
			}
			if nse == nil {
				nse = &dicom.Series{UID: fmt.Sprintf("%s.%d", ns.UID, len(ns.Series)+1), Modality: se.Modality, BodyPart: se.BodyPart}
				ns.Series = append(ns.Series, nse)
			}
			out := append([]byte("DEID "), buf.Bytes()...)
			nse.Instances = append(nse.Instances, &dicom.InstanceRef{SOPInstanceUID: fmt.Sprintf("%s.%d", nse.UID, len(nse.Instances)+1),
				SOPClassUID: in.SOPClassUID, TransferSyntax: in.TransferSyntax, Size: int64(len(out)), FileIndex: len(files)})
			files = append(files, records.FileSource{Path: "x.dcm", Open: func() (io.Reader, error) { return bytes.NewReader(out), nil }})
		}
	}
	if len(files) == 0 {
		return nil, fault.New(fault.Invalid, "", "%w", imaging.ErrAllExcluded)
	}
	meta, err := dicom.EncodeStudyMeta(ns)
	if err != nil {
		return nil, err
	}
	ar, err := f.rec.Add(ctx, records.AddRequest{Name: imaging.DeidStudyName, Kind: imaging.Kind, Class: imaging.Class, MediaType: imaging.MediaType, Meta: meta, Files: files})
	if err != nil {
		return nil, err
	}
	return &imaging.Deidentified{ID: ar.ID, Study: ns}, f.idx.Put(ctx, ar.ID.String(), ns)
}
