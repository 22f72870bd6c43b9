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
}

// Index is the node's local, encrypted index of imported studies, stored in
// a go-datastore under IndexNamespace.
//
// Layout: /dicom/index/r/<hex(recordID)> holds the entry sealed with
// AES-256-GCM (random 96-bit nonce, record ID as additional data, so an entry
// cannot be moved to another record). Equality lookups use blind keys
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

func ad(recordID string) []byte { return []byte("medmesh dicom index v1\x00" + recordID) }

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
		StudyDate: s.StudyDate, Description: s.Description, Instances: s.NumInstances()}
	pt, err := metaEnc.Marshal(e)
	if err != nil {
		return err
	}
	nonce := make([]byte, x.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	sealed := x.aead.Seal(nonce, nonce, pt, ad(recordID))
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
	ns := x.aead.NonceSize()
	if len(v) < ns+x.aead.Overhead() {
		return nil, fmt.Errorf("dicom: index entry for %q: too short", recordID)
	}
	pt, err := x.aead.Open(nil, v[:ns], v[ns:], ad(recordID))
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
		hits = append(hits, Hit{RecordID: id, StudyUID: e.StudyUID, PatientID: e.PatientID, PatientName: e.PatientName,
			Modalities: e.Modalities, StudyDate: e.StudyDate, Description: e.Description, Instances: e.Instances})
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
