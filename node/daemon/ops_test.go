package daemon

import (
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/repo"
)

// The settings' defaults are the replication manager's defaults, and a
// setting reaches the daemon's options unless the caller set the option.
func TestOptionsFromConfig(t *testing.T) {
	var fromCfg, builtin Options
	fromCfg.withConfig(repo.DefaultConfig())
	fromCfg.Replication.defaults()
	builtin.Replication.defaults()
	if fromCfg.Replication != builtin.Replication {
		t.Fatalf("config defaults %+v\nbuilt-in defaults %+v", fromCfg.Replication, builtin.Replication)
	}
	c := repo.DefaultConfig()
	c.ReplicationGrace, c.ReplicationInterval, c.DiskReserve = 5*time.Second, time.Second, 1<<30
	o := Options{Replication: ReplicationOptions{Interval: 50 * time.Millisecond}}
	o.withConfig(c)
	if o.Replication.Grace != 5*time.Second || o.Replication.Interval != 50*time.Millisecond || o.Replication.DiskReserve != 1<<30 {
		t.Fatalf("options: %+v", o.Replication)
	}
}
