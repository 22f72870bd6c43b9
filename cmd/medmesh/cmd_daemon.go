package main

import (
	"log/slog"
	"os"

	"github.com/medmesh/medmesh/node/daemon"
	"github.com/spf13/cobra"
)

func newDaemonCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "daemon",
		Short: "Run the node in the foreground (SIGINT/SIGTERM stop it cleanly)",
		Long: `Run the node: the libp2p host on the private network, the private DHT, bitswap
over the badger blockstore, the gossip ledger and the HTTP API on loopback.
When ready it writes the API's address to REPO/api; it removes it on exit.
One daemon runs on a repo: it holds REPO/repo.lock, and a second daemon on the
same repo exits at once with code 6, naming the running one's pid, and
leaves it alone.
Prometheus metrics are served at /metrics on the API (token required).
Logs go to stderr (--log-json for JSON lines, -v for debug).`,
		Example: `  medmesh daemon --repo /srv/medmesh
  medmesh daemon --log-json 2>>/var/log/medmesh.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return daemon.Run(cmd.Context(), repoDir(), daemon.Options{Logger: newLogger()})
		},
	}
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
