package research

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/medmesh/medmesh/storage/record"
)

// Ledger is what the service reads from and writes to the ledger
// (*ledger.Ledger): consent entries, the records and grants datasets are
// made of, and the membership and keys a grant needs.
type Ledger interface {
	Append(ctx context.Context, typ string, payload any) (*ledger.Entry, error)
	Log(ctx context.Context, typ string, limit int) ([]*ledger.Entry, error)
	// Entry reads one entry (consent ancestry: dataset.LedgerAncestry).
	Entry(ctx context.Context, c cid.Cid) (*ledger.Entry, error)
	// OwnedRecords and GrantedIDs read the ledger's involvement indexes:
	// the datasets a node lists are among its own records and those it
	// was granted, never every record on the ledger.
	OwnedRecords(ctx context.Context, p peer.ID) ([]ledger.RecordInfo, error)
	GrantedIDs(ctx context.Context, p peer.ID) ([]cid.Cid, error)
	Record(id cid.Cid) (ledger.RecordInfo, bool)
	Versions(id cid.Cid) []ledger.RecordInfo
	Grants(id cid.Cid) []ledger.Grant
	IsMember(p peer.ID) bool
	KEMKey(p peer.ID) ([]byte, bool)
}

// Records is what the service needs from the records service: storing a
// dataset's manifest and its de-identified studies, reading records
// (opening one claims a read of someone else's record on the ledger),
// granting one version of a record and revoking grants.
type Records interface {
	// Add stores a new record (a new version when req.Prev is set).
	Add(ctx context.Context, req records.AddRequest) (*records.AddResult, error)
	// OpenFor fetches and decrypts a record's manifest (version 0: the
	// newest readable one), stating the purpose of the read (the grant's
	// when empty).
	OpenFor(ctx context.Context, id cid.Cid, version int, purpose string) (ledger.RecordInfo, *record.Manifest, record.Key, *ledger.Grant, error)
	// ReadFiles streams files of an opened record into w, in order.
	ReadFiles(ctx context.Context, m *record.Manifest, key record.Key, which []int, w io.Writer) error
	// ReadDone counts a completed read of an opened record.
	ReadDone(ctx context.Context, info ledger.RecordInfo, purpose string, g *ledger.Grant)
	// Holders are the record's owner and replica holders: where a read
	// streams its blocks from.
	Holders(info ledger.RecordInfo) []peer.ID
	// LatestVersion follows a record's version chain to its newest version.
	LatestVersion(id cid.Cid) ledger.RecordInfo
	// ReadKey is this node's data key of a record it owns or was granted.
	ReadKey(ctx context.Context, info ledger.RecordInfo) (record.Key, *ledger.Grant, error)
	// GrantVersion wraps one record version's key to a grantee's public
	// key and publishes the grant.
	GrantVersion(ctx context.Context, rec cid.Cid, key []byte, grantee peer.ID, pub []byte, purpose string, expires time.Time) (*ledger.Entry, error)
	// Revoke cancels a peer's grants on every version of a record it owns,
	// returning how many it cancelled.
	Revoke(ctx context.Context, id cid.Cid, grantee peer.ID) (int, error)
}

// Imaging is what the service needs from the imaging service
// (*imaging.Service): the node's study index (to select studies by
// modality), opening a study record, and de-identifying it into a new one.
type Imaging interface {
	// Find queries the node's encrypted local study index.
	Find(ctx context.Context, f dicom.Filter) ([]dicom.Hit, error)
	// Open opens a study record (version 0: the newest readable one) for
	// purpose; a record that is not a study is a fault.Invalid error.
	Open(ctx context.Context, id cid.Cid, version int, purpose string) (*imaging.Opened, error)
	// Deidentify stores the de-identified copy of the series keep selects
	// as a new study record; imaging.ErrAllExcluded when it excludes
	// every instance.
	Deidentify(ctx context.Context, src *imaging.Opened, opts dicom.DeidOptions, keep func(*dicom.Series) bool) (*imaging.Deidentified, error)
	// ProjectKey reads a de-identification project key file (absolute),
	// or the node's default one when path is empty.
	ProjectKey(path string) ([]byte, error)
}

// Config holds a service's dependencies.
type Config struct {
	Ledger  Ledger
	Records Records
	Imaging Imaging
	// Self is this node's peer ID: the author of its consents and the
	// owner of the datasets it publishes.
	Self peer.ID
	// Identity is the node's private key; the clinic's secret consent
	// pseudonym key is derived from it (nothing more to persist, and it
	// never leaves the node).
	Identity crypto.PrivKey
	// Local is node-local bookkeeping (never replicated): which
	// de-identified study a source study gave, so a new dataset version
	// reuses it.
	Local datastore.Datastore
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Service records patients' consents and publishes, grants, lists and
// fetches research datasets.
type Service struct {
	led     Ledger
	rec     Records
	img     Imaging
	self    peer.ID
	ckey    []byte // consent pseudonym key
	local   datastore.Datastore
	now     func() time.Time
	log     *slog.Logger
	fetches fetchJobs // progress of named fetches

	// createMu makes dataset creation one at a time: versions of a name
	// must not race, nor two creates de-identify the same study.
	createMu sync.Mutex
}

// New builds the service.
func New(c Config) (*Service, error) {
	if c.Ledger == nil || c.Records == nil || c.Imaging == nil || c.Identity == nil || c.Local == nil || c.Self == "" {
		return nil, errors.New("research: Ledger, Records, Imaging, Identity, Local and Self are required")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	ckey, err := consentKey(c.Identity)
	if err != nil {
		return nil, err
	}
	return &Service{led: c.Ledger, rec: c.Records, img: c.Imaging, self: c.Self, ckey: ckey, local: c.Local,
		now: c.Now, log: c.Logger}, nil
}

// consentKey is the clinic's secret pseudonym key, derived from its
// identity key: stable, never stored apart, never leaves the node.
func consentKey(ident crypto.PrivKey) ([]byte, error) {
	raw, err := ident.Raw()
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, raw)
	m.Write([]byte("medmesh consent pseudonym key v1"))
	return m.Sum(nil), nil
}
