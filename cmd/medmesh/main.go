// Command medmesh runs a medmesh node and talks to it: a peer-to-peer network
// on which clinics share encrypted medical records and imaging.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run executes one command line and returns its exit code (`medmesh help
// exit-codes`). Under --json a failure is one JSON object on stderr.
func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	root.SetArgs(args)
	started := false
	trackRun(root, &started)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if !started {
		// cobra refused the command line before the command ran: an
		// unknown command or flag, a bad flag value, wrong arguments.
		err = withCode(exitInvalid, err, "see `"+cmd.CommandPath()+" --help`")
	}
	return reportError(os.Stderr, err, g.json || wantsJSON(args))
}
