package console

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/httpapi"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
)

// Records is what the console asks of the records service
// (*records.Service): the same calls, and so the same authority checks,
// as the CLI's.
type Records interface {
	List(ctx context.Context) ([]api.Record, error)
	Label(ctx context.Context, info ledger.RecordInfo) (access.Label, bool)
	Add(ctx context.Context, req records.AddRequest) (*records.AddResult, error)
	Get(ctx context.Context, id cid.Cid, req records.GetRequest, w io.Writer) error
	Grant(ctx context.Context, id cid.Cid, req api.GrantRequest) (*api.Grant, error)
	ListGrants(id cid.Cid) ([]api.Grant, error)
	Revoke(ctx context.Context, id cid.Cid, grantee peer.ID) (int, error)
	Audit(id cid.Cid) ([]api.AccessEvent, error)
	Holders(info ledger.RecordInfo) []peer.ID
}

// Ledger is what the console reads of the ledger (*ledger.Ledger).
type Ledger interface {
	NetworkID() cid.Cid
	Record(id cid.Cid) (ledger.RecordInfo, bool)
	Versions(id cid.Cid) []ledger.RecordInfo
	Grants(id cid.Cid) []ledger.Grant
	Members() []ledger.Member
	Subscribe() (<-chan *ledger.Entry, func())
}

// Members lists the network's members as this node knows them: their
// organisations and roles, whether connected, when last seen
// (*membership.Service).
type Members interface {
	Members(ctx context.Context) ([]api.Member, error)
}

// Health is the operator's view of the node (*health.Checker).
type Health interface {
	Check(ctx context.Context) api.Health
}

// Imaging is what the console asks of the imaging service
// (*imaging.Service).
type Imaging interface {
	Query(ctx context.Context, f dicom.Filter) ([]api.DicomStudyHit, error)
	Open(ctx context.Context, id cid.Cid, version int, purpose string) (*imaging.Opened, error)
	WriteInstance(ctx context.Context, o *imaging.Opened, in *dicom.InstanceRef, w io.Writer) error
	OpenInstance(ctx context.Context, o *imaging.Opened, in *dicom.InstanceRef) io.ReadCloser
	ReadDone(ctx context.Context, o *imaging.Opened, purpose string)
	DeidentifyRecord(ctx context.Context, id cid.Cid, req api.DicomDeidRequest) (*api.DicomDeidResult, error)
}

// Research is what the console asks of consents and datasets.
type Research interface {
	Consents(ctx context.Context, patientID, purpose string) ([]api.ConsentInfo, error)
	AddConsent(ctx context.Context, req api.ConsentRequest) (*api.ConsentInfo, error)
	RevokeConsent(ctx context.Context, req api.ConsentRequest) (*api.ConsentRevokeResult, error)
	ListDatasets(ctx context.Context) []api.DatasetInfo
	FetchDataset(ctx context.Context, req api.DatasetFetchRequest, onProgress func(api.DatasetProgress)) (*api.DatasetFetchResult, error)
}

// Config is what a Console needs. Imaging and Research may be nil
// (their pages say so); the rest is required but Now, Log and the TTLs.
type Config struct {
	Self peer.ID
	// Org is this node's configured organisation, shown until the ledger
	// has one.
	Org string
	// DataDir is the datastore directory (disk use on the overview).
	DataDir string
	// Addr returns the API's address (host:port), for sign-in links.
	Addr func() string

	Records  Records
	Ledger   Ledger
	Members  Members
	Health   Health
	Imaging  Imaging
	Research Research

	// LoginTTL is how long a sign-in link works (default 2 minutes),
	// IdleTTL how long a session lasts unused (30 minutes), SessionTTL
	// how long it lasts at most (12 hours).
	LoginTTL, IdleTTL, SessionTTL time.Duration

	Now func() time.Time
	Log *slog.Logger
}

// Console is the web console: an Area of the HTTP layer that also serves
// pages under Prefix (httpapi.BrowserArea).
type Console struct {
	cfg   Config
	log   *slog.Logger
	sess  *sessions
	feed  *Feed
	names *names
	mux   *http.ServeMux
	jobs  *fetchJobs

	ctx    context.Context // ends with Close: streams and fetches end
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Prefix is where the console's pages are.
const Prefix = "/ui/"

// New builds the console. Start it to follow the ledger.
func New(c Config) (*Console, error) {
	if c.Self == "" || c.Addr == nil || c.Records == nil || c.Ledger == nil || c.Members == nil || c.Health == nil {
		return nil, errors.New("console: Config needs Self, Addr, Records, Ledger, Members and Health")
	}
	if c.LoginTTL <= 0 {
		c.LoginTTL = 2 * time.Minute
	}
	if c.IdleTTL <= 0 {
		c.IdleTTL = 30 * time.Minute
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = 12 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &Console{cfg: c, log: c.Log, sess: newSessions(c.Now, c.LoginTTL, c.IdleTTL, c.SessionTTL),
		names: newNames(c.Records), jobs: newFetchJobs(), ctx: ctx, cancel: cancel}
	k.feed = newFeed(c.Self, c.Ledger, k.names, c.Log)
	k.mux = http.NewServeMux()
	k.pages(k.mux)
	return k, nil
}

// Start follows the ledger for live events until Close.
func (k *Console) Start() {
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		k.feed.run(k.ctx)
	}()
}

// Close ends the event streams (so the API's shutdown does not wait on
// them) and stops following the ledger and the dataset fetches it started.
func (k *Console) Close() {
	k.cancel()
	k.wg.Wait()
}

// Feed is the console's event feed.
func (k *Console) Feed() *Feed { return k.feed }

// Routes implements httpapi.Area: the token-authenticated routes of
// `medmesh ui` and `medmesh watch`.
func (k *Console) Routes(m httpapi.Mux) {
	m.HandleFunc("POST "+api.Prefix+"/console/login", k.handleNewLogin)
	m.HandleFunc("GET "+api.Prefix+"/events", k.handleWatch)
}

// Browser implements httpapi.BrowserArea: the pages under Prefix.
func (k *Console) Browser() (string, http.Handler) { return Prefix, http.HandlerFunc(k.serveBrowser) }

// handleNewLogin mints a sign-in link (`medmesh ui`).
func (k *Console) handleNewLogin(w http.ResponseWriter, r *http.Request) {
	code, exp := k.sess.newLogin()
	api.JSON(w, http.StatusOK, api.ConsoleLogin{URL: "http://" + k.cfg.Addr() + Prefix + "login?code=" + code, Expires: exp.UTC().Truncate(time.Second)})
}
