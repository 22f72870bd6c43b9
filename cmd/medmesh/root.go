package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/medmesh/medmesh/internal/buildinfo"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/repo"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// globals are the flags every command shares.
type globals struct {
	repo    string
	json    bool
	noProg  bool
	logJSON bool
	verbose bool
}

var g globals

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "medmesh",
		Short: "Share encrypted medical records and imaging between clinics, peer to peer",
		Long: `medmesh runs a node of a private peer-to-peer network on which clinics share
medical records and DICOM studies. Every block that leaves a node is ciphertext;
who may read what is decided by signed entries on a gossip ledger.

Start here:
  medmesh demo                         a three-node network on this machine, with sample data
  medmesh init --repo DIR              create a node
  medmesh network create --repo DIR    make it the first node of a new network
  medmesh daemon --repo DIR            run it

The repo defaults to $MEDMESH_REPO, then ~/.medmesh.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildinfo.Get().Version,
	}
	root.SetVersionTemplate("medmesh {{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVar(&g.repo, "repo", "", "node repository directory (default $MEDMESH_REPO, then ~/.medmesh)")
	pf.BoolVar(&g.json, "json", false, "print machine-readable JSON")
	pf.BoolVar(&g.noProg, "no-progress", false, "never draw progress bars")
	pf.BoolVar(&g.logJSON, "log-json", false, "structured logs as JSON (daemon)")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "debug logging")
	root.AddCommand(
		newInitCmd(), newIDCmd(), newNetworkCmd(), newDaemonCmd(),
		newAddCmd(), newGetCmd(), newLsCmd(), newUpdateCmd(), newDeleteCmd(), newKeysCmd(),
		newGrantCmd(), newGrantsCmd(), newRevokeCmd(), newAuditCmd(), newStatusCmd(),
		newLedgerCmd(), newDemoCmd(), newDicomCmd(), newMembersCmd(),
		newGCCmd(), newRepoCmd(), newReprovideCmd(), newConsentCmd(), newDatasetCmd(), newImplantCmd(), newFHIRCmd(),
		newExitCodesTopic(), newJSONTopic(),
	)
	// Operating a node: settings, version, health, backup.
	root.AddCommand(newConfigCmd(), newVersionCmd(), newHealthCmd(), newBackupCmd(), newRestoreCmd())
	// The web console and the live events.
	root.AddCommand(newUICmd(), newWatchCmd())
	// A command that only groups others must not exit 0 on a typo.
	var groups func(c *cobra.Command)
	groups = func(c *cobra.Command) {
		for _, s := range c.Commands() {
			if s.HasSubCommands() && s.Run == nil && s.RunE == nil {
				s.RunE = groupRun
			}
			groups(s)
		}
	}
	groups(root)
	return root
}

func repoDir() string { return repo.DefaultDir(g.repo) }

// client connects to the daemon of the selected repo.
func client() (*api.Client, error) {
	dir := repoDir()
	if _, err := repo.Open(dir); err != nil {
		return nil, err
	}
	return api.ClientForRepo(dir)
}

// printJSON writes v as indented JSON on stdout, lists as [] (never null).
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(api.EmptyLists(v))
}

// output prints v as JSON with --json, else calls human.
func output(v any, human func()) error {
	if g.json {
		return printJSON(v)
	}
	human()
	return nil
}

// progress wraps r in a progress bar when stderr is a terminal.
func progress(r io.Reader, size int64, desc string) (io.Reader, func()) {
	if g.json || g.noProg || size < 8<<20 || !term.IsTerminal(int(os.Stderr.Fd())) {
		return r, func() {}
	}
	bar := progressbar.DefaultBytes(size, desc)
	pr := progressbar.NewReader(r, bar)
	return &pr, func() { bar.Finish() }
}

// progressWriter wraps w in a progress bar when stderr is a terminal.
func progressWriter(w io.Writer, size int64, desc string) (io.Writer, func()) {
	if g.json || g.noProg || size < 8<<20 || !term.IsTerminal(int(os.Stderr.Fd())) {
		return w, func() {}
	}
	bar := progressbar.DefaultBytes(size, desc)
	return io.MultiWriter(w, bar), func() { bar.Finish() }
}

func ctxOf(cmd *cobra.Command) context.Context { return cmd.Context() }

func say(format string, args ...any) { fmt.Fprintf(os.Stdout, format+"\n", args...) }
