package dicom

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
)

// IndexNamespace is the datastore prefix of the study index.
const IndexNamespace = "/dicom/index"

// Hit is one study returned by Index.Query.
type Hit struct {
	RecordID    string
	StudyUID    string
	PatientID   string
	PatientName string
	Modalities  []string
	StudyDate   string // YYYYMMDD
	Description string
	Instances   int
	// The rest of the study-level attributes (empty for entries indexed
	// before they were kept; Detailed says whether they are).
	PatientBirthDate   string
	PatientSex         string
	StudyTime          string
	AccessionNumber    string
	ReferringPhysician string
	StudyID            string
	NumSeries          int
	SOPClasses         []string
	Detailed           bool
}

// Filter selects studies; empty fields match everything. Modality matches
// any series' modality, ignoring case. From and To are inclusive YYYYMMDD
// study dates (see DateString for a time.Time).
type Filter struct {
	PatientID string
	Modality  string
	StudyUID  string
	From, To  string
}

// DateString formats t as a DICOM DA value (YYYYMMDD) for Filter.
func DateString(t time.Time) string { return t.Format("20060102") }

type indexEntry struct {
	StudyUID    string   `cbor:"1,keyasint"`
	PatientID   string   `cbor:"2,keyasint"`
	PatientName string   `cbor:"3,keyasint"`
	Modalities  []string `cbor:"4,keyasint"`
	StudyDate   string   `cbor:"5,keyasint"`
	Description string   `cbor:"6,keyasint"`
	Instances   int      `cbor:"7,keyasint"`
	// Since index version 2 (Detailed): the study's other query
	// attributes, and a detail entry (/d/) holds its series and instances.
	Detailed           bool     `cbor:"8,keyasint,omitempty"`
	PatientBirthDate   string   `cbor:"9,keyasint,omitempty"`
	PatientSex         string   `cbor:"10,keyasint,omitempty"`
	StudyTime          string   `cbor:"11,keyasint,omitempty"`
	AccessionNumber    string   `cbor:"12,keyasint,omitempty"`
	ReferringPhysician string   `cbor:"13,keyasint,omitempty"`
	StudyID            string   `cbor:"14,keyasint,omitempty"`
	NumSeries          int      `cbor:"15,keyasint,omitempty"`
	SOPClasses         []string `cbor:"16,keyasint,omitempty"`
}

func (e *indexEntry) hit(id string) Hit {
	return Hit{RecordID: id, StudyUID: e.StudyUID, PatientID: e.PatientID, PatientName: e.PatientName,
		Modalities: e.Modalities, StudyDate: e.StudyDate, Description: e.Description, Instances: e.Instances,
		PatientBirthDate: e.PatientBirthDate, PatientSex: e.PatientSex, StudyTime: e.StudyTime,
		AccessionNumber: e.AccessionNumber, ReferringPhysician: e.ReferringPhysician, StudyID: e.StudyID,
		NumSeries: e.NumSeries, SOPClasses: e.SOPClasses, Detailed: e.Detailed}
}

// Index is the node's local, encrypted index of imported studies, stored in
// a go-datastore under IndexNamespace.
//
// Layout: /dicom/index/r/<hex(recordID)> holds the entry sealed with
// AES-256-GCM (random 96-bit nonce, record ID as additional data, so an entry
// cannot be moved to another record): the study-level attributes queries
// match. /dicom/index/d/<hex(recordID)> holds the study's series and
// instances (its EncodeStudyMeta form, sealed likewise with its own
// additional data), read only by queries below the study level. Equality lookups use blind keys
// /dicom/index/{p,m,s}/<HMAC-SHA256(k, value)>/<hex(recordID)> with empty
// values; patient IDs, names, dates and UIDs never appear in clear. Date
// ranges are filtered after decryption. Keys are derived from the 32-byte
// local key with HMAC-SHA256 and distinct labels.
type Index struct {
	ds    ds.Batching
	aead  cipher.AEAD
	blind []byte
}

// NewIndex opens the index over d with the 32-byte local key.
func NewIndex(d ds.Batching, key []byte) (*Index, error) {
	if len(key) != 32 {
		return nil, errors.New("dicom: index key must be 32 bytes")
	}
	derive := func(label string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte("medmesh dicom index " + label))
		return m.Sum(nil)
	}
	blk, err := aes.NewCipher(derive("aead"))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	return &Index{ds: d, aead: aead, blind: derive("blind")}, nil
}

func (x *Index) recKey(recordID string) ds.Key {
	return ds.NewKey(IndexNamespace + "/r/" + hex.EncodeToString([]byte(recordID)))
}

func (x *Index) blindKey(kind, value, recordID string) ds.Key {
	return ds.NewKey(IndexNamespace + "/" + kind + "/" + x.blindValue(kind, value) + "/" + hex.EncodeToString([]byte(recordID)))
}

func (x *Index) blindValue(kind, value string) string {
	m := hmac.New(sha256.New, x.blind)
	m.Write([]byte(kind + "\x00" + value))
	return hex.EncodeToString(m.Sum(nil))
}

func (x *Index) detailKey(recordID string) ds.Key {
	return ds.NewKey(IndexNamespace + "/d/" + hex.EncodeToString([]byte(recordID)))
}

func ad(recordID string) []byte { return []byte("medmesh dicom index v1\x00" + recordID) }

func detailAD(recordID string) []byte { return []byte("medmesh dicom index detail v1\x00" + recordID) }

func (x *Index) seal(pt, ad []byte) ([]byte, error) {
	nonce := make([]byte, x.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return x.aead.Seal(nonce, nonce, pt, ad), nil
}

func (x *Index) unseal(v, ad []byte) ([]byte, error) {
	ns := x.aead.NonceSize()
	if len(v) < ns+x.aead.Overhead() {
		return nil, errors.New("too short")
	}
	return x.aead.Open(nil, v[:ns], v[ns:], ad)
}

func (e *indexEntry) blindKeys(x *Index, recordID string) []ds.Key {
	keys := []ds.Key{x.blindKey("p", e.PatientID, recordID), x.blindKey("s", e.StudyUID, recordID)}
	for _, m := range e.Modalities {
		keys = append(keys, x.blindKey("m", modalityKey(m), recordID))
	}
	return keys
}

// Put indexes (or re-indexes) the study stored as recordID.
func (x *Index) Put(ctx context.Context, recordID string, s *Study) error {
	if recordID == "" || s == nil {
		return errors.New("dicom: index: empty record ID or nil study")
	}
	e := &indexEntry{StudyUID: s.UID, PatientID: s.PatientID, PatientName: s.PatientName, Modalities: s.Modalities(),
		StudyDate: s.StudyDate, Description: s.Description, Instances: s.NumInstances(),
		Detailed: true, PatientBirthDate: s.PatientBirthDate, PatientSex: s.PatientSex, StudyTime: s.StudyTime,
		AccessionNumber: s.AccessionNumber, ReferringPhysician: s.ReferringPhysician, StudyID: s.StudyID,
		NumSeries: len(s.Series), SOPClasses: s.SOPClasses()}
	pt, err := metaEnc.Marshal(e)
	if err != nil {
		return err
	}
	sealed, err := x.seal(pt, ad(recordID))
	if err != nil {
		return err
	}
	detail, err := EncodeStudyMeta(s)
	if err != nil {
		return err
	}
	sealedDetail, err := x.seal(detail, detailAD(recordID))
	if err != nil {
		return err
	}
	b, err := x.ds.Batch(ctx)
	if err != nil {
		return err
	}
	if old, err := x.get(ctx, recordID); err == nil {
		for _, k := range old.blindKeys(x, recordID) {
			if err := b.Delete(ctx, k); err != nil {
				return err
			}
		}
	} else if !errors.Is(err, ds.ErrNotFound) {
		return err
	}
	if err := b.Put(ctx, x.recKey(recordID), sealed); err != nil {
		return err
	}
	if err := b.Put(ctx, x.detailKey(recordID), sealedDetail); err != nil {
		return err
	}
	for _, k := range e.blindKeys(x, recordID) {
		if err := b.Put(ctx, k, nil); err != nil {
			return err
		}
	}
	return b.Commit(ctx)
}

// Delete removes the record from the index (no error if absent).
func (x *Index) Delete(ctx context.Context, recordID string) error {
	old, err := x.get(ctx, recordID)
	if errors.Is(err, ds.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	b, err := x.ds.Batch(ctx)
	if err != nil {
		return err
	}
	for _, k := range old.blindKeys(x, recordID) {
		if err := b.Delete(ctx, k); err != nil {
			return err
		}
	}
	if err := b.Delete(ctx, x.recKey(recordID)); err != nil {
		return err
	}
	if err := b.Delete(ctx, x.detailKey(recordID)); err != nil {
		return err
	}
	return b.Commit(ctx)
}

func (x *Index) get(ctx context.Context, recordID string) (*indexEntry, error) {
	v, err := x.ds.Get(ctx, x.recKey(recordID))
	if err != nil {
		return nil, err
	}
	return x.open(recordID, v)
}

func (x *Index) open(recordID string, v []byte) (*indexEntry, error) {
	pt, err := x.unseal(v, ad(recordID))
	if err != nil {
		return nil, fmt.Errorf("dicom: index entry for %q: %w", recordID, err)
	}
	var e indexEntry
	if err := metaDec.Unmarshal(pt, &e); err != nil {
		return nil, fmt.Errorf("dicom: index entry for %q: %w", recordID, err)
	}
	return &e, nil
}

func validDA(s string) bool {
	if s == "" {
		return true
	}
	_, err := time.Parse("20060102", s)
	return err == nil
}

// Query returns the studies matching f, sorted by study date then record ID.
func (x *Index) Query(ctx context.Context, f Filter) ([]Hit, error) {
	if !validDA(f.From) || !validDA(f.To) {
		return nil, fmt.Errorf("dicom: index: From/To must be YYYYMMDD, got %q/%q", f.From, f.To)
	}
	var candidates map[string]bool // nil: all
	narrow := func(kind, value string) error {
		if value == "" {
			return nil
		}
		prefix := IndexNamespace + "/" + kind + "/" + x.blindValue(kind, value)
		res, err := x.ds.Query(ctx, query.Query{Prefix: prefix, KeysOnly: true})
		if err != nil {
			return err
		}
		defer res.Close()
		found := map[string]bool{}
		for r := range res.Next() {
			if r.Error != nil {
				return r.Error
			}
			id, err := hex.DecodeString(ds.RawKey(r.Key).BaseNamespace())
			if err != nil {
				continue
			}
			if candidates == nil || candidates[string(id)] {
				found[string(id)] = true
			}
		}
		candidates = found
		return nil
	}
	for _, n := range [][2]string{{"p", f.PatientID}, {"s", f.StudyUID}, {"m", modalityKey(f.Modality)}} {
		if err := narrow(n[0], n[1]); err != nil {
			return nil, err
		}
	}
	var hits []Hit
	consider := func(id string, e *indexEntry) {
		if f.PatientID != "" && e.PatientID != f.PatientID || f.StudyUID != "" && e.StudyUID != f.StudyUID {
			return
		}
		if f.Modality != "" && !contains(e.Modalities, modalityKey(f.Modality)) {
			return
		}
		if f.From != "" && (e.StudyDate == "" || e.StudyDate < f.From) || f.To != "" && (e.StudyDate == "" || e.StudyDate > f.To) {
			return
		}
		hits = append(hits, e.hit(id))
	}
	if candidates != nil {
		for id := range candidates {
			e, err := x.get(ctx, id)
			if errors.Is(err, ds.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			consider(id, e)
		}
	} else {
		res, err := x.ds.Query(ctx, query.Query{Prefix: IndexNamespace + "/r"})
		if err != nil {
			return nil, err
		}
		for r := range res.Next() {
			if r.Error != nil {
				res.Close()
				return nil, r.Error
			}
			idb, err := hex.DecodeString(ds.RawKey(r.Key).BaseNamespace())
			if err != nil {
				continue
			}
			e, err := x.open(string(idb), r.Value)
			if err != nil {
				res.Close()
				return nil, err
			}
			consider(string(idb), e)
		}
		res.Close()
	}
	sort.Slice(hits, func(i, j int) bool {
		if hits[i].StudyDate != hits[j].StudyDate {
			return hits[i].StudyDate < hits[j].StudyDate
		}
		return hits[i].RecordID < hits[j].RecordID
	})
	return hits, nil
}

// ErrNoDetail is returned by Index.Study for a study indexed before the
// index kept series and instances (its record must be opened instead).
var ErrNoDetail = errors.New("dicom: index: study indexed without its series and instances")

// Study returns the series and instances of the study indexed as
// recordID (as EncodeStudyMeta encoded them: file indexes, no paths). It
// fails with ds.ErrNotFound for a record not in the index and ErrNoDetail
// for one indexed before the detail was kept.
func (x *Index) Study(ctx context.Context, recordID string) (*Study, error) {
	v, err := x.ds.Get(ctx, x.detailKey(recordID))
	if errors.Is(err, ds.ErrNotFound) {
		if _, gerr := x.ds.Get(ctx, x.recKey(recordID)); gerr == nil {
			return nil, ErrNoDetail
		}
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	pt, err := x.unseal(v, detailAD(recordID))
	if err != nil {
		return nil, fmt.Errorf("dicom: index detail for %q: %w", recordID, err)
	}
	st, err := DecodeStudyMeta(pt)
	if err != nil {
		return nil, fmt.Errorf("dicom: index detail for %q: %w", recordID, err)
	}
	return st, nil
}

// modalityKey is the form of a modality in the blind index: modalities
// match case-insensitively (CS values are upper case, users type "ct").
// Any value is a valid query: modalities are open-ended.
func modalityKey(m string) string { return strings.ToUpper(strings.TrimSpace(m)) }

func contains(ss []string, s string) bool {
	for _, v := range ss {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
