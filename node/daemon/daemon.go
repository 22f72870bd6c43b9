// Package daemon runs a medmesh node: it opens the repo's datastore, joins the
// private libp2p network, replays and follows the gossip ledger, and serves
// the HTTP API on loopback.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/medmesh/medmesh/internal/atomicfile"

	"github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/auditlog"
	"github.com/medmesh/medmesh/node/console"
	"github.com/medmesh/medmesh/node/dicomweb"
	"github.com/medmesh/medmesh/node/erasure"
	"github.com/medmesh/medmesh/node/fhir"
	"github.com/medmesh/medmesh/node/gc"
	"github.com/medmesh/medmesh/node/httpapi"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/node/implants"
	"github.com/medmesh/medmesh/node/keys"
	"github.com/medmesh/medmesh/node/membership"
	"github.com/medmesh/medmesh/node/p2p"
	"github.com/medmesh/medmesh/node/pacs"
	"github.com/medmesh/medmesh/node/records"
	"github.com/medmesh/medmesh/node/replication"
	"github.com/medmesh/medmesh/node/repo"
	"github.com/medmesh/medmesh/node/research"
	"github.com/medmesh/medmesh/sharing/access"
	"github.com/medmesh/medmesh/sharing/keywrap"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/blockstore"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Options tune a daemon.
type Options struct {
	Logger *slog.Logger
	// FetchTimeout bounds how long a get waits for a record's blocks to be
	// found on the network. Default 60s.
	FetchTimeout time.Duration
	// StallTimeout is passed to the fetcher (see p2p.Config). Default 5s.
	StallTimeout time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Replication tunes placement, repair and reprovides (node/replication).
	Replication ReplicationOptions
	// DICOM, if set, configures the DICOM application entity (node/pacs)
	// instead of the repo's dicom.* settings.
	DICOM *pacs.Settings
}

// Daemon is a running node.
type Daemon struct {
	Repo   *repo.Repo
	Store  *blockstore.Store
	Ledger *ledger.Ledger
	P2P    *p2p.Node
	// Records is the records service: add, read, share, the block filter.
	Records *records.Service
	// Research is the research service: consents and datasets.
	Research *research.Service

	self    peer.ID
	ident   crypto.PrivKey
	kem     *keywrap.Keyring // the current key-wrapping key and the previous ones kept
	log     *slog.Logger
	opts    Options
	reg     *prometheus.Registry
	api     *api.Server
	apiAddr string
	local   datastore.Batching   // node-local bookkeeping (/medmesh/local)
	lock    *repo.Lock           // the repo's lock, released last by Close
	gc      *gc.Service          // storage hygiene and the add protocol (node/gc)
	pins    *replication.Pinset  // replicas pinned and records in flight
	repl    *replication.Manager // placement, repair, proofs, reprovides

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	imaging  *imaging.Service
	pacs     *pacs.Service
	implants *implants.Service
	members  *membership.Service
	keys     *keys.Service
	erasure  *erasure.Service
	console  *console.Console  // the web console and the live events
	auditlog *auditlog.Service // the owner's CT-style log of its records' audit entries

	closeOnce sync.Once
	closeErr  error
}

// Start opens the repo in dir and brings the node up. The API is serving
// and DIR/api written when Start returns.
func Start(ctx context.Context, dir string, o Options) (d *Daemon, err error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.FetchTimeout == 0 {
		o.FetchTimeout = 60 * time.Second
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r, err := repo.Open(dir)
	if err != nil {
		return nil, err
	}
	o.withConfig(r.Config)
	// One daemon per repo, checked before anything in it is touched: a
	// second daemon must not remove the running one's api file.
	lock, err := r.Lock()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.Unlock() // after d.Close (deferred later, so run earlier)
		}
	}()
	network, err := r.Network()
	if err != nil {
		return nil, err
	}
	ident, err := r.Identity()
	if err != nil {
		return nil, err
	}
	kem, err := keys.LoadKeyring(r)
	if err != nil {
		return nil, err
	}
	token, err := r.Token()
	if err != nil {
		return nil, err
	}
	self, err := peer.IDFromPrivateKey(ident)
	if err != nil {
		return nil, err
	}
	// A stale api file from a killed daemon would send clients nowhere.
	os.Remove(r.Path(repo.APIFile))

	store, err := blockstore.Open(r.Path(repo.DatastoreDir))
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithCancel(context.Background())
	d = &Daemon{
		Repo: r, Store: store, lock: lock, self: self, ident: ident, kem: kem,
		log: o.Logger.With("node", self.ShortString()), opts: o,
		reg: prometheus.NewRegistry(), ctx: dctx, cancel: cancel,
		local: namespace.Wrap(store.DS, datastore.NewKey("/medmesh/local")),
	}
	// `return nil, err` sets the named result d to nil before deferred
	// calls run: close the daemon through its own variable.
	started := d
	defer func() {
		if err != nil {
			started.Close()
		}
	}()
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	d.Ledger, err = ledger.Open(ctx, ledger.Options{
		DS: store.DS, Blocks: store.Blocks, Key: ident, Genesis: network.Genesis,
		Logger: d.log, Metrics: d.reg, Now: o.Now, Types: LedgerTypes(),
		// A heads exchange with one random peer is a few hundred bytes:
		// doing it every second bounds how stale a node can be.
		SyncInterval: time.Second,
		// Scope checkpoints as the owners' scopes this node signs grow.
		ScopeCheckpointEvery: r.Config.ScopeCheckpointEvery,
		PruneAfterCheckpoint: r.Config.PruneAfterCheckpoint,
		// Replays (checkpoint drafts) build their state on disk, not in
		// memory.
		ScratchDir:    r.Path(repo.ScratchDir),
		CheckpointDir: r.Path(repo.CheckpointDir),
	})
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	if d.pins, err = replication.OpenPinset(ctx, d.local); err != nil {
		return nil, err
	}
	d.erasure, err = erasure.New(erasure.Config{Self: self, Ledger: d.Ledger, Blocks: store.Blocks, Pins: d.pins, Reclaim: store.Reclaim, Now: o.Now, Logger: d.log})
	if err != nil {
		return nil, err
	}
	// The services that read, serve, place or index records see the
	// ledger without the erased ones.
	view := erasure.Hide{Ledger: d.Ledger, S: d.erasure}
	d.Records, err = records.New(ctx, records.Config{
		Self: self, KEM: kem, Ledger: view, Blocks: store.Blocks, HasAll: store.HasAll, Durable: store.DS, Local: d.local, Erased: d.erasure.Erased,
		BeginAdd: func(ctx context.Context) (records.Add, error) {
			a, err := d.gc.BeginAdd(ctx)
			if err != nil {
				return nil, err
			}
			return a, nil
		},
		Replicas: r.Config.ReplicationFactor, FetchTimeout: o.FetchTimeout,
		Now: o.Now, Logger: d.log, Metrics: d.reg,
	})
	if err != nil {
		return nil, err
	}
	d.gc, err = gc.New(gc.Config{
		Self: self, Store: store, Local: d.local, DiskDir: r.Path(repo.DatastoreDir),
		Ledger: view, Records: d.Records, Replicas: d.pins, Now: o.Now, Log: d.log, Metrics: d.reg,
	})
	if err != nil {
		return nil, err
	}
	// Only if an add was interrupted (its marker is left): sweep, while
	// nothing else writes.
	d.gc.RecoverInterruptedAdds(ctx)
	d.members, err = membership.New(ctx, membership.Config{
		Self: self, KEMPublic: kem.Public, Ledger: d.Ledger, Repo: r, Local: d.local,
		Unwrap: func(rc access.Recipient, env []byte) ([]byte, error) { return rc.UnwrapWith(kem, env) },
		Org:    r.Config.Org, Now: o.Now, Logger: d.log,
	})
	if err != nil {
		return nil, err
	}
	d.imaging, err = imaging.New(imaging.Config{
		Records: d.Records, Ledger: view, Self: self, Identity: ident, DS: store.DS, Dir: r.Dir, Logger: d.log,
	})
	if err != nil {
		return nil, err
	}
	dicomSet, err := dicomSettings(r.Config, o.DICOM)
	if err != nil {
		return nil, err
	}
	d.pacs, err = pacs.New(pacs.Config{Settings: dicomSet, Imaging: d.imaging, Ledger: d.Ledger, Self: self, Dir: r.Dir,
		Logger: d.log, Metrics: d.reg})
	if err != nil {
		return nil, err
	}
	d.implants, err = implants.New(implants.Config{
		Ledger: d.Ledger, Self: self, DS: store.DS, Dir: r.Dir, Now: o.Now, Logger: d.log,
	})
	if err != nil {
		return nil, err
	}
	if err := d.startResearch(); err != nil {
		return nil, err
	}

	listen, announce, err := addrsOf(r.Config)
	if err != nil {
		return nil, err
	}
	var boot []peer.AddrInfo
	for _, s := range r.Config.Bootstrap {
		ai, err := peer.AddrInfoFromString(s)
		if err != nil {
			return nil, fmt.Errorf("config bootstrap address %q: %w", s, err)
		}
		boot = append(boot, *ai)
	}
	rest, err := openRestore(r, d.Ledger, d.log)
	if err != nil {
		return nil, err
	}
	boot = append(boot, rest.bootstrap()...)
	d.P2P, err = p2p.New(ctx, p2p.Config{
		Identity:    ident,
		ListenAddrs: listen,
		Announce:    announce,
		NetworkKeys: d.members.NetworkKeys(),
		Now:         o.Now,
		NetworkID:   d.Ledger.NetworkID().String(),
		Members:     rest.members(d.Ledger),
		Guests:      d.members.Guests,
		Blockstore:  store.Blocks,
		// Provider records on disk: in a network of fewer than the DHT's
		// 20 closest peers every member stores a provider record for every
		// block of every record, which in memory grew a node's heap with
		// records it has nothing to do with (issue #16).
		Datastore:    store.DS,
		BlockFilter:  d.Records.Allow,
		Served:       d.Records.Served,
		Bootstrap:    boot,
		Metrics:      d.reg,
		Logger:       d.log,
		StallTimeout: o.StallTimeout,
	})
	if err != nil {
		return nil, err
	}
	d.Records.Start(d.P2P)
	d.erasure.Start(d.Records, d.imaging)
	d.keys, err = keys.New(keys.Config{Self: self, Ring: kem, Repo: r, Ledger: view, Records: d.Records, Now: o.Now, Logger: d.log})
	if err != nil {
		return nil, err
	}
	d.keys.Start()
	d.members.Start(membershipNet{d.P2P})
	d.loadPeerBook(ctx)
	// The audit log follows the ledger from before it syncs: no entry is
	// applied unseen.
	// Its leaves' order is kept in segments, this node's own hidden
	// records; a restored node holds its appends until they are back.
	d.auditlog, err = auditlog.New(ctx, auditlog.Config{
		Self: self, Key: ident, Ledger: d.Ledger, DS: namespace.Wrap(store.DS, datastore.NewKey(repo.AuditLogPrefix)),
		Now: o.Now, Logger: d.log, Metrics: d.reg,
		Segments: &auditlog.RecordSegments{Self: self, Records: d.Records, Ledger: view}, Restoring: rest != nil,
	})
	if err != nil {
		return nil, err
	}
	d.auditlog.Start()
	if err := d.Ledger.Start(dctx, d.P2P.Host, d.P2P.PubSub); err != nil {
		return nil, fmt.Errorf("start ledger sync: %w", err)
	}
	d.wg.Add(2)
	go d.followLedger()
	go d.keepPeerBook()
	d.repl, err = replication.New(replication.Config{
		Self: self, Options: o.Replication, Replicas: r.Config.ReplicationFactor, Quota: r.Config.StorageQuota,
		DiskDir: r.Path(repo.DatastoreDir), FetchTimeout: o.FetchTimeout,
		Ledger: view, Erased: d.erasure.Erased, Net: p2pNetwork{d.P2P}, Host: d.P2P.Host, Blocks: store.Blocks, Durable: store.DS,
		Pins: d.pins, Records: d.Records, Now: o.Now, Log: d.log, Metrics: d.reg,
	})
	if err != nil {
		return nil, err
	}
	d.repl.Start(dctx)
	// The inbox's leftovers are stored, and the SCP listens, once the
	// network is up.
	if err := d.pacs.Start(); err != nil {
		return nil, err
	}

	hc := d.newHealth()
	d.console, err = console.New(console.Config{
		Self: self, Org: r.Config.Org, DataDir: r.Path(repo.DatastoreDir), Addr: func() string { return d.apiAddr },
		Records: d.Records, Ledger: d.Ledger, Members: d.members, Health: hc, Imaging: d.imaging, Research: d.Research,
		Now: o.Now, Log: d.log,
	})
	if err != nil {
		return nil, err
	}
	d.console.Start()
	d.api = httpapi.New(token, d.log,
		httpapi.Debug{Metrics: d.reg},
		httpapi.Identity{Of: d.identity},
		httpapi.Ledger{L: d.Ledger},
		httpapi.Checkpoints{L: d.Ledger},
		httpapi.Members{S: d.members},
		httpapi.Erasure{S: d.erasure},
		httpapi.Keys{S: d.keys},
		httpapi.Records{S: d.Records, Log: d.log},
		httpapi.AuditLog{S: d.auditlog},
		httpapi.Replication{R: d.repl},
		httpapi.Storage{S: d.gc},
		httpapi.Implants{S: d.implants},
		httpapi.Imaging{S: d.imaging},
		dicomweb.Area{Imaging: d.imaging, Log: d.log},
		httpapi.DICOM{S: d.pacs},
		fhir.Area{Self: self, Implants: d.implants, Imaging: d.imaging, Records: d.Records, Research: d.Research, Log: d.log},
		httpapi.Health{H: hc},
		httpapi.Research{S: d.Research},
		httpapi.Backup{B: d},
		d.console,
	)
	// Browser viewers of the configured origins may call DICOMweb.
	d.api.AllowOrigins(dicomweb.Prefix+"/", r.Config.DICOMwebCORSOrigins)
	httpapi.Instrument(d.api, d.reg)
	addr, err := d.api.Listen(r.Config.API)
	if err != nil {
		return nil, err
	}
	d.apiAddr = addr.String()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.api.Serve(); err != nil {
			d.log.Error("API server stopped", "err", err)
		}
	}()
	if err := atomicfile.WriteBytes(r.Path(repo.APIFile), []byte(d.apiAddr+"\n"), 0o600); err != nil {
		return nil, err
	}
	rest.run(d)
	d.log.Info("medmesh node ready", "peer", self.String(), "api", d.apiAddr, "addrs", d.P2P.Host.Addrs(), "network", d.Ledger.NetworkID().String())
	return d, nil
}

// APIAddr is the API's actual address.
func (d *Daemon) APIAddr() string { return d.apiAddr }

// PeerID is the node's peer ID.
func (d *Daemon) PeerID() peer.ID { return d.self }

// Client returns an API client for this daemon.
func (d *Daemon) Client() *api.Client {
	tok, _ := d.Repo.Token()
	return api.NewClient(d.apiAddr, tok)
}

// followLedger fans applied ledger entries out to the services that react
// to them.
func (d *Daemon) followLedger() {
	defer d.wg.Done()
	ch, cancel := d.Ledger.Subscribe()
	defer cancel()
	for {
		select {
		case <-d.ctx.Done():
			return
		case e, ok := <-ch:
			if !ok {
				return
			}
			d.Records.OnEntry(e)
			if d.pacs != nil {
				d.pacs.OnEntry(e)
			}
		}
	}
}

// Close shuts the node down: API first (no new work), then the network,
// the ledger and last the datastore, so nothing is half-written.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		var errs []error
		if d.console != nil {
			// Its event streams end, so the API's shutdown does not wait
			// on browsers and `medmesh watch`.
			d.console.Close()
		}
		if d.api != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			errs = append(errs, d.api.Shutdown(sctx))
			cancel()
		}
		if d.Repo != nil {
			os.Remove(d.Repo.Path(repo.APIFile))
		}
		if d.P2P != nil && d.Ledger != nil {
			d.savePeerBook(context.Background())
		}
		if d.pacs != nil {
			// What the SCP received is stored while the node is whole.
			errs = append(errs, d.pacs.Close())
		}
		d.cancel()
		if d.Records != nil {
			// Its last attestations go out while the network is up.
			d.Records.Close()
		}
		if d.members != nil {
			d.members.Close()
		}
		if d.erasure != nil {
			d.erasure.Close()
		}
		if d.keys != nil {
			d.keys.Close()
		}
		if d.auditlog != nil {
			d.auditlog.Close()
		}
		if d.repl != nil {
			d.repl.Close()
		}
		if d.P2P != nil {
			errs = append(errs, d.P2P.Close())
		}
		d.wg.Wait()
		if d.gc != nil {
			d.gc.Close()
		}
		if d.Ledger != nil {
			errs = append(errs, d.Ledger.Close())
		}
		if d.Store != nil {
			errs = append(errs, d.Store.Close())
		}
		errs = append(errs, d.lock.Unlock())
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// Run starts the daemon and runs it until ctx is done.
func Run(ctx context.Context, dir string, o Options) error {
	d, err := Start(ctx, dir, o)
	if err != nil {
		return err
	}
	<-ctx.Done()
	d.log.Info("shutting down")
	return d.Close()
}
