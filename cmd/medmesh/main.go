// Command medmesh runs a medmesh node and talks to it: a peer-to-peer network
// on which clinics share encrypted medical records and imaging.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/medmesh/medmesh/node/api"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "medmesh: error:", err)
		var re *api.RemoteError
		if errors.As(err, &re) && re.Status == 404 {
			os.Exit(3)
		}
		os.Exit(1)
	}
}
