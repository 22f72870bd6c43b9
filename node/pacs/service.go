package pacs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/dimse"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
)

// Imaging is what the DICOM application entity needs from the imaging
// service (*imaging.Service).
type Imaging interface {
	// Import stores the files under paths as `medmesh dicom import` does.
	Import(ctx context.Context, paths []string) (*api.DicomImportResult, error)
	// WriteStudy stores a new study as its instances arrive (an error,
	// e.g. for a study already stored: Import them instead).
	WriteStudy(ctx context.Context, studyUID string) (*imaging.StudyWriter, error)
	// Search answers a query from the encrypted index.
	Search(ctx context.Context, q imaging.Query) ([]*imaging.Row, []uint32, error)
	// Open opens a study record (claiming the read of a granted one).
	Open(ctx context.Context, id cid.Cid, version int, purpose string) (*imaging.Opened, error)
	// OpenInstance and WriteInstance stream one instance's original Part
	// 10 file.
	OpenInstance(ctx context.Context, o *imaging.Opened, in *dicom.InstanceRef) io.ReadCloser
	WriteInstance(ctx context.Context, o *imaging.Opened, in *dicom.InstanceRef, w io.Writer) error
	// ReadDone counts a completed read.
	ReadDone(ctx context.Context, o *imaging.Opened, purpose string)
	// IndexGranted, Indexed and Unindex keep studies granted to this node
	// in the index.
	IndexGranted(ctx context.Context, id cid.Cid) (cid.Cid, error)
	Indexed(ctx context.Context, id cid.Cid) (bool, error)
	Unindex(ctx context.Context, id cid.Cid) error
}

// Ledger is what the service reads from the ledger (*ledger.Ledger).
type Ledger interface {
	IsMember(p peer.ID) bool
	Record(id cid.Cid) (ledger.RecordInfo, bool)
	// GrantedIDs lists the records p has or had a grant on (the ledger's
	// grantee index): the studies to index at start.
	GrantedIDs(ctx context.Context, p peer.ID) ([]cid.Cid, error)
	Grants(record cid.Cid) []ledger.Grant
	Versions(id cid.Cid) []ledger.RecordInfo
}

// Settings are the node's DICOM settings (the dicom.* keys of `medmesh
// config`).
type Settings struct {
	// Listen is the DICOM listener's host:port; "" turns the SCP off. A
	// LAN address is allowed (modalities are on the LAN); who may
	// associate is Allowed.
	Listen string
	// AETitle is the node's AE title, as SCP and as SCU.
	AETitle string
	// Allowed are the callers that may associate (AE@host); anyone else
	// is rejected with A-ASSOCIATE-RJ.
	Allowed []dimse.Caller
	// Destinations are where C-MOVE may send (AE=host:port), also the
	// names `medmesh dicom send --to` accepts.
	Destinations []dimse.Destination
	// MaxPDU is the largest P-DATA-TF PDU accepted.
	MaxPDU uint32
	// MaxAssociations caps concurrent associations.
	MaxAssociations int
	// Timeouts of associations (ARTIM, DIMSE, idle).
	Timeouts dimse.Timeouts
	// StoreDelay (0: none) is how long a study's received instances wait, once the
	// associations that brought them have ended, before they are stored:
	// a study sent over several associations in a row ends as one
	// version.
	StoreDelay time.Duration
}

// Defaults of the settings.
const (
	DefaultAETitle         = "MEDMESH"
	DefaultMaxPDU          = dimse.DefaultMaxPDULength
	DefaultMaxAssociations = 32
	DefaultStoreDelay      = 2 * time.Second
)

// Config holds a service's dependencies.
type Config struct {
	Settings Settings
	Imaging  Imaging
	Ledger   Ledger
	Self     peer.ID
	// Dir is the repo directory: received instances wait in
	// Dir/dicom-inbox until they are stored.
	Dir     string
	Logger  *slog.Logger
	Metrics prometheus.Registerer
}

// Service is the node as a DICOM application entity.
type Service struct {
	cfg Config
	set Settings
	img Imaging
	led Ledger
	log *slog.Logger
	m   *metrics
	in  *inbox
	gr  *grants

	mu     sync.Mutex
	srv    *dimse.Server
	ln     net.Listener
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

// New builds the service; Start starts the SCP if Settings.Listen is set.
func New(c Config) (*Service, error) {
	if c.Imaging == nil || c.Ledger == nil || c.Dir == "" {
		return nil, errors.New("pacs: Imaging, Ledger and Dir are required")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	s := &Service{cfg: c, set: c.Settings, img: c.Imaging, led: c.Ledger, log: c.Logger.With("svc", "dicom")}
	if s.set.AETitle == "" {
		s.set.AETitle = DefaultAETitle
	}
	if s.set.MaxPDU == 0 {
		s.set.MaxPDU = DefaultMaxPDU
	}
	if s.set.MaxAssociations == 0 {
		s.set.MaxAssociations = DefaultMaxAssociations
	}
	var err error
	if s.m, err = newMetrics(c.Metrics); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.in = newInbox(s)
	s.gr = newGrants(s)
	return s, nil
}

// AETitle is the node's AE title.
func (s *Service) AETitle() string { return s.set.AETitle }

// Addr is the SCP's listening address, or nil when it is off.
func (s *Service) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Start stores what a stopped daemon left in the inbox and, if
// Settings.Listen is set, starts the SCP and keeps the studies granted to
// this node in the index.
func (s *Service) Start() error {
	if err := s.in.load(); err != nil {
		return err
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.in.run(s.ctx) }()
	if s.set.Listen == "" {
		return nil
	}
	srv, err := dimse.NewServer(dimse.ServerOptions{
		AETitle: s.set.AETitle, Allowed: s.set.Allowed, Destinations: s.set.Destinations,
		MaxPDULength: s.set.MaxPDU, MaxAssociations: s.set.MaxAssociations, Timeouts: s.set.Timeouts,
		Logger: s.log, Echo: s, Store: s, Find: s, Move: s, Get: s, Observer: s,
	})
	if err != nil {
		return fmt.Errorf("dicom: %w", err)
	}
	ln, err := net.Listen("tcp", s.set.Listen)
	if err != nil {
		return fmt.Errorf("dicom.listen %s: %w (choose a free port with `medmesh config set dicom.listen HOST:PORT`)", s.set.Listen, err)
	}
	s.mu.Lock()
	s.srv, s.ln = srv, ln
	s.mu.Unlock()
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, dimse.ErrServerClosed) {
			s.log.Error("dicom: listener stopped", "err", err)
		}
	}()
	go func() { defer s.wg.Done(); s.gr.run(s.ctx) }()
	s.log.Info("dicom: SCP listening", "addr", ln.Addr().String(), "ae", s.set.AETitle, "allowed", len(s.set.Allowed), "destinations", len(s.set.Destinations))
	return nil
}

// OnEntry reacts to a ledger entry (cheap, non-blocking): grants to this
// node and their revocations keep granted studies in the index.
func (s *Service) OnEntry(e *ledger.Entry) { s.gr.onEntry(e) }

// Close stops the SCP (aborting its associations), stores what was
// received (bounded by a minute; the rest is stored at the next start)
// and waits for the service's goroutines.
func (s *Service) Close() error {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
	s.in.closing()
	s.cancel()
	s.wg.Wait()
	return nil
}

// Echo answers C-ECHO.
func (s *Service) Echo(ctx context.Context, a *dimse.AssociationInfo) error { return nil }

// Rejected implements dimse.Observer.
func (s *Service) Rejected(callingAE, calledAE string, remote net.Addr, reason string) {
	s.m.associations.WithLabelValues("rejected").Inc()
}

// Accepted implements dimse.Observer.
func (s *Service) Accepted(a *dimse.AssociationInfo) {
	s.m.associations.WithLabelValues("accepted").Inc()
	s.m.active.Inc()
}

// Ended implements dimse.Observer.
func (s *Service) Ended(a *dimse.AssociationInfo, err error) {
	s.m.active.Dec()
	s.in.ended(a)
}

// Operation implements dimse.Observer.
func (s *Service) Operation(a *dimse.AssociationInfo, command uint16, status uint16) {
	s.m.operations.WithLabelValues(opName(command), dimse.CategoryOf(status).String()).Inc()
}

func opName(c uint16) string {
	switch c {
	case dimse.CEchoRQ:
		return "echo"
	case dimse.CStoreRQ:
		return "store"
	case dimse.CFindRQ:
		return "find"
	case dimse.CMoveRQ:
		return "move"
	case dimse.CGetRQ:
		return "get"
	}
	return "other"
}
