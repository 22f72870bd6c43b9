package imaging

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/medmesh/medmesh/storage/record"
	"github.com/prometheus/client_golang/prometheus"
)

// Record kind, ledger class and media type of a DICOM study record, and the
// names the service gives what it stores.
const (
	Kind      = "dicom-study"
	Class     = "imaging"
	MediaType = "application/dicom"
	// ProjectKeyFile is the default de-identification project key (32
	// random bytes, 0600) in the repo.
	ProjectKeyFile = "dicom-project.key"
	// StudyName is the record name of an imported study, DeidStudyName
	// that of a de-identified one (research datasets tell them apart by it).
	StudyName     = "DICOM study"
	DeidStudyName = "DICOM study (de-identified)"
)

// Records is what the imaging service needs from the records service:
// storing a study's instances as one record (and new versions of it),
// opening a record with its key (which claims a read of someone else's
// record on the ledger), streaming its files, and counting a completed
// read.
type Records interface {
	// Add stores a new record; Update stores a new version of req.Prev
	// (carrying its live grants over).
	Add(ctx context.Context, req records.AddRequest) (*records.AddResult, error)
	Update(ctx context.Context, req records.AddRequest) (*records.AddResult, error)
	// OpenFor fetches and decrypts a record's manifest (version 0: the
	// newest readable one), stating the purpose of the read.
	OpenFor(ctx context.Context, id cid.Cid, version int, purpose string) (ledger.RecordInfo, *record.Manifest, record.Key, *ledger.Grant, error)
	// ReadFiles streams files of an opened record into w, in order.
	ReadFiles(ctx context.Context, m *record.Manifest, key record.Key, which []int, w io.Writer) error
	// LatestVersion follows a record's version chain to its newest version.
	LatestVersion(id cid.Cid) ledger.RecordInfo
	// ReadDone counts a completed read of an opened record (the claim was
	// made when it was opened).
	ReadDone(ctx context.Context, info ledger.RecordInfo, purpose string, g *ledger.Grant)
}

// Ledger is what the service reads from the ledger (*ledger.Ledger).
type Ledger interface {
	Record(id cid.Cid) (ledger.RecordInfo, bool)
}

// Config holds a service's dependencies.
type Config struct {
	Records Records
	Ledger  Ledger
	// Self is this node's peer ID: the owner of the studies it imports.
	Self peer.ID
	// Identity is the node's private key; the local index key is derived
	// from it (nothing more to persist, and it never leaves the node).
	Identity crypto.PrivKey
	// DS holds the encrypted study index (dicom.IndexNamespace).
	DS datastore.Batching
	// Dir is the repo directory: the default project key lives there, and
	// instances that arrive as streams are staged there (never in a
	// shared temporary directory) until they are stored.
	Dir    string
	Logger *slog.Logger
}

// Service imports, finds, exports and de-identifies DICOM studies, each
// study one record of the records service, with an encrypted local index.
type Service struct {
	rec  Records
	led  Ledger
	self peer.ID
	idx  *dicom.Index
	dir  string
	log  *slog.Logger

	// locks serialise the read-modify-write of a study's versions, study
	// by study: two imports of one study must not both build on the same
	// version, and a study being streamed (WriteStudy) is not imported
	// meanwhile.
	locks studyLocks

	stored prometheus.Counter // nil until RegisterMetrics (metrics.go)
}

// New builds the service and opens its index.
func New(c Config) (*Service, error) {
	if c.Records == nil || c.Ledger == nil || c.Identity == nil || c.DS == nil || c.Dir == "" {
		return nil, errors.New("imaging: Records, Ledger, Identity, DS and Dir are required")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	key, err := indexKey(c.Identity)
	if err != nil {
		return nil, err
	}
	idx, err := dicom.NewIndex(c.DS, key)
	if err != nil {
		return nil, err
	}
	s := &Service{rec: c.Records, led: c.Ledger, self: c.Self, idx: idx, dir: c.Dir, log: c.Logger}
	s.removeStale()
	return s, nil
}

// indexKey derives the node-local index key from the node's identity key.
func indexKey(ident crypto.PrivKey) ([]byte, error) {
	raw, err := ident.Raw()
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, raw)
	m.Write([]byte("medmesh dicom local index key v1"))
	return m.Sum(nil), nil
}

// Prefixes of the service's temporary files and folders in the repo.
const (
	stagePrefix = ".stow-"
	metaPrefix  = ".wado-meta-"
)

// removeStale removes what a killed daemon left staged: instances in
// clear. The repo's lock keeps any other daemon out, so nothing else uses
// them.
func (s *Service) removeStale() {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		s.log.Warn("imaging: list repo for stale staging", "err", err)
		return
	}
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, stagePrefix) || strings.HasPrefix(n, metaPrefix) {
			if err := os.RemoveAll(filepath.Join(s.dir, n)); err != nil {
				s.log.Warn("imaging: remove stale staging", "path", n, "err", err)
			}
		}
	}
}

// Index is the node's encrypted local study index.
func (s *Service) Index() *dicom.Index { return s.idx }

// mine says whether this node owns record id.
func (s *Service) mine(id cid.Cid) bool {
	info, ok := s.led.Record(id)
	return ok && info.Owner == s.self
}

// ProjectKey reads the de-identification project key file at path (absolute,
// 16 to 4096 bytes, mode 0600), or the repo's default key (created, 32
// random bytes, 0600, on first use) if path is empty.
func (s *Service) ProjectKey(path string) ([]byte, error) {
	return projectKey(path, filepath.Join(s.dir, ProjectKeyFile))
}

func wrapRecord(id cid.Cid, err error) error { return fmt.Errorf("record %s: %w", id, err) }
