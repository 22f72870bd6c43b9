package main

import (
	"log/slog"
	"os"
	"runtime"

	"github.com/medmesh/medmesh/node/daemon"
	"github.com/spf13/cobra"
)

func newDaemonCmd() *cobra.Command {
	var contention bool
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the node in the foreground (SIGINT/SIGTERM stop it cleanly)",
		Long: `Run the node: the libp2p host on the private network, the private DHT, bitswap
over the badger blockstore, the gossip ledger and the HTTP API on loopback.
When ready it writes the API's address to REPO/api; it removes it on exit.
One daemon runs on a repo: it holds REPO/repo.lock, and a second daemon on the
same repo exits at once with code 6, naming the running one's pid, and
leaves it alone.
Prometheus metrics are served at /metrics on the API (token required).
Go's profiler is at /debug/pprof/ on the API (token required); with
--profile-contention it also samples lock contention and blocking
(/debug/pprof/mutex and /debug/pprof/block, ?seconds=30 for a window), at a
small cost: for finding what a slow node waits for, not for every day.
Logs go to stderr (--log-json for JSON lines, -v for debug).`,
		Example: `  medmesh daemon --repo /srv/medmesh
  medmesh daemon --log-json 2>>/var/log/medmesh.jsonl
  medmesh daemon --profile-contention   # then, with the token in REPO/api.token:
  curl -H "Authorization: Bearer $TOKEN" "http://$(cat REPO/api)/debug/pprof/mutex?seconds=30" -o mutex.pprof`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if contention {
				runtime.SetMutexProfileFraction(10)  // one contention event in 10
				runtime.SetBlockProfileRate(100_000) // one blocking event per 100 µs blocked
			}
			return daemon.Run(cmd.Context(), repoDir(), daemon.Options{Logger: newLogger()})
		},
	}
	cmd.Flags().BoolVar(&contention, "profile-contention", false, "sample lock contention and blocking for /debug/pprof/mutex and /debug/pprof/block")
	return cmd
}

func newLogger() *slog.Logger {
	lvl := slog.LevelInfo
	if g.verbose {
		lvl = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if g.logJSON {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
