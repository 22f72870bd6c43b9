package daemon

import (
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/repo"
)

// A setting reaches the daemon's options unless the caller set the option
// (node/replication's TestDefaultsMatchSettings checks the defaults agree).
func TestOptionsFromConfig(t *testing.T) {
	c := repo.DefaultConfig()
	c.ReplicationGrace, c.ReplicationInterval, c.DiskReserve, c.VerifyInterval = 5*time.Second, time.Second, 1<<30, time.Minute
	o := Options{Replication: ReplicationOptions{Interval: 50 * time.Millisecond}}
	o.withConfig(c)
	r := o.Replication
	if r.Grace != 5*time.Second || r.Interval != 50*time.Millisecond || r.DiskReserve != 1<<30 || r.VerifyInterval != time.Minute ||
		r.SweepInterval != c.SweepInterval || r.ReprovideInterval != c.ReprovideInterval {
		t.Fatalf("options: %+v", r)
	}
}
