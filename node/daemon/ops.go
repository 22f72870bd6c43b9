package daemon

import (
	"fmt"

	"github.com/medmesh/medmesh/node/erasure"
	"github.com/medmesh/medmesh/node/health"
	"github.com/medmesh/medmesh/node/p2p"
	"github.com/medmesh/medmesh/node/repo"
	"github.com/multiformats/go-multiaddr"
)

// What the daemon does for its operator: settings (`medmesh config`) into
// options, health and its gauges.

// withConfig fills what the caller left unset in o from the repo's
// settings (`medmesh config`): the settings are the operator's, explicit
// Options (tests, embedders) win.
func (o *Options) withConfig(c repo.Config) {
	r := &o.Replication
	set := func(dst *int64, v int64) {
		if *dst == 0 {
			*dst = v
		}
	}
	if r.Grace == 0 {
		r.Grace = c.ReplicationGrace
	}
	if r.Interval == 0 {
		r.Interval = c.ReplicationInterval
	}
	if r.VerifyInterval == 0 {
		r.VerifyInterval = c.VerifyInterval
	}
	if r.SweepInterval == 0 {
		r.SweepInterval = c.SweepInterval
	}
	if r.ReprovideInterval == 0 {
		r.ReprovideInterval = c.ReprovideInterval
	}
	set(&r.DiskReserve, c.DiskReserve)
}

// newHealth builds the operator's view (node/health) and registers its
// gauges, and the imaging service's count of stored instances.
func (d *Daemon) newHealth() *health.Checker {
	hc := health.New(health.Config{
		Ledger: erasure.Hide{Ledger: d.Ledger, S: d.erasure}, Host: d.P2P.Host, Factor: d.Repo.Config.ReplicationFactor,
		DataDir: d.Repo.Path(repo.DatastoreDir), AuditRestoring: d.auditlog.Restoring,
	})
	hc.Register(d.reg)
	if err := d.imaging.RegisterMetrics(d.reg); err != nil {
		d.log.Warn("register the imaging metrics", "err", err)
	}
	return hc
}

// addrsOf parses the addresses to listen on and to announce.
func addrsOf(c repo.Config) (listen []multiaddr.Multiaddr, a p2p.Announce, err error) {
	if listen, err = multiaddrs("addresses.listen", c.Listen); err != nil {
		return
	}
	if a.Replace, err = multiaddrs("addresses.announce", c.Announce); err != nil {
		return
	}
	a.Append, err = multiaddrs("addresses.append_announce", c.AppendAnnounce)
	return
}

// multiaddrs parses a setting's addresses.
func multiaddrs(key string, ss []string) ([]multiaddr.Multiaddr, error) {
	var out []multiaddr.Multiaddr
	for _, s := range ss {
		ma, err := multiaddr.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("config %s %q: %w", key, s, err)
		}
		out = append(out, ma)
	}
	return out, nil
}
