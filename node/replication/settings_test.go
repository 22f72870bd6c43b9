package replication

import (
	"testing"

	"github.com/medmesh/medmesh/node/repo"
)

// The settings' defaults (`medmesh help config`) are the manager's own.
func TestDefaultsMatchSettings(t *testing.T) {
	var o Options
	o.defaults()
	c := repo.DefaultConfig()
	for _, x := range []struct {
		key       string
		got, want any
	}{
		{"replication.interval", c.ReplicationInterval, o.Interval},
		{"replication.grace", c.ReplicationGrace, o.Grace},
		{"replication.verify_interval", c.VerifyInterval, o.VerifyInterval},
		{"replication.sweep_interval", c.SweepInterval, o.SweepInterval},
		{"replication.reprovide_interval", c.ReprovideInterval, o.ReprovideInterval},
		{"storage.disk_reserve", c.DiskReserve, o.DiskReserve},
	} {
		if x.got != x.want {
			t.Errorf("%s: the setting's default is %v, the manager's %v", x.key, x.got, x.want)
		}
	}
}
