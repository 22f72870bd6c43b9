package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/medmesh/medmesh/internal/atomicfile"
	"github.com/medmesh/medmesh/node/api"
	"github.com/spf13/cobra"
)

// uiResult is what `medmesh ui --json` prints.
type uiResult struct {
	URL     string    `json:"url"`
	Expires time.Time `json:"expires"`
	// Opened says whether a browser was started with the link.
	Opened bool `json:"opened"`
}

func newUICmd() *cobra.Command {
	var urlOnly bool
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Open the node's web console in a browser (with a one-time sign-in link)",
		Long: `Open the web console of the running node: records (add, read, audit), sharing
with other clinics, imaging studies, research datasets and consents, and a live
feed of what is shared with this node and read of its records.

The console is served by the daemon itself on its loopback API address
(nothing is loaded from the internet). Signing in takes a link that works once,
for 2 minutes: ` + "`medmesh ui`" + ` asks the daemon for one and opens it in the default
browser; where there is no browser to open (no display, or --url), it prints
the link instead: open it in a browser on this machine. Opening it signs the
browser in with a session cookie; a used or expired link shows nothing.
Sessions end after 30 minutes unused, after 12 hours, when you sign out, and
when the daemon restarts.

A browser is started with a file in the repo (console-login.html, 0600) that
forwards to the link, so the link is never on a command line other users of
the machine can see. $BROWSER, if set, names the browser to start.`,
		Example: `  medmesh ui
  medmesh ui --url                 # print the link only
  medmesh ui --url --json | jq -r .url`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var l api.ConsoleLogin
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/console/login", nil, &l); err != nil {
				return err
			}
			res := uiResult{URL: l.URL, Expires: l.Expires}
			if !urlOnly {
				res.Opened = openBrowser(repoDir(), l.URL)
			}
			return output(res, func() {
				if res.Opened {
					say("Opened the console in your browser.")
					say("If it did not appear, open this link in a browser on this machine (it works once, until %s):", l.Expires.Local().Format("15:04:05"))
				} else {
					say("Open this link in a browser on this machine (it works once, until %s):", l.Expires.Local().Format("15:04:05"))
				}
				say("  %s", l.URL)
			})
		},
	}
	cmd.Flags().BoolVar(&urlOnly, "url", false, "print the sign-in link; do not start a browser")
	return cmd
}

// openBrowser starts a browser on the sign-in link, through a 0600 file in
// the repo that forwards to it, and reports whether one started. It starts
// none where there is no display to show it on.
func openBrowser(repoDir, url string) bool {
	var launcher []string
	switch b := os.Getenv("BROWSER"); {
	case b == "none":
		return false
	case b != "":
		launcher = strings.Fields(b)
	case runtime.GOOS == "darwin":
		launcher = []string{"open"}
	case runtime.GOOS == "windows":
		launcher = []string{"rundll32", "url.dll,FileProtocolHandler"}
	case os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "":
		launcher = []string{"xdg-open"}
	default:
		return false
	}
	if _, err := exec.LookPath(launcher[0]); err != nil {
		return false
	}
	page := filepath.Join(repoDir, "console-login.html")
	// A forwarding page, not the link itself on the command line: the
	// link's code is a secret until it is used. The console's sign-in
	// page forwards again, from its own origin, so its cookie is sent.
	body := fmt.Sprintf(`<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=%s"><title>medmesh console</title><a href="%s">Open the medmesh console</a>`+"\n",
		html.EscapeString(url), html.EscapeString(url))
	if err := atomicfile.WriteBytes(page, []byte(body), 0o600); err != nil {
		return false
	}
	cmd := exec.Command(launcher[0], append(launcher[1:], "file://"+filepath.ToSlash(page))...)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return false
	}
	go cmd.Wait()
	return true
}

func newWatchCmd() *cobra.Command {
	var recent bool
	var count int
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Print what happens to this node's sharing as it happens: records shared with it, revoked, read",
		Long: `Print this node's events as they happen, from its ledger:

  shared    another clinic shared a record with this node (its name, the
            owner's organisation, the grant's purpose and expiry)
  revoked   a clinic revoked this node's access to a record
  read      a record this node owns was read: the reader's own claim, or a
            holder's attestation that it served the read (the audit matches
            the two: ` + "`medmesh audit ID`" + `)

The console's Live page shows the same events. With --json, each event is one
JSON object on its own line (` + "`medmesh help json`" + `). It runs until interrupted
(exit 0), until --count events were printed, or until the daemon stops (exit 7);
with --timeout, also when no event came for that long (exit 7).`,
		Example: `  medmesh watch
  medmesh watch --json | jq -c 'select(.type == "shared")'
  medmesh watch --recent --count 1 --json    # the oldest event kept, then exit
  medmesh watch --count 1 --timeout 10m      # wait for the next event, at most 10 minutes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if count < 0 {
				return invalidf("", "--count must be 0 (no limit) or more, not %d", count)
			}
			if timeout < 0 {
				return invalidf("", "--timeout must be a positive duration such as 30s")
			}
			c, err := client()
			if err != nil {
				return err
			}
			path := api.Prefix + "/events"
			if recent {
				path += "?recent=true"
			}
			ctx, cancel := context.WithCancel(ctxOf(cmd))
			defer cancel()
			st, err := c.Open(ctx, path)
			if err != nil {
				return err
			}
			defer st.Close()
			var idle *time.Timer
			var timedOut atomic.Bool
			if timeout > 0 {
				idle = time.AfterFunc(timeout, func() { timedOut.Store(true); cancel() })
				defer idle.Stop()
			}
			err = printEvents(ctx, st.Body, count, func() {
				if idle != nil {
					idle.Reset(timeout)
				}
			})
			if timedOut.Load() {
				return withCode(exitUnavailable, fmt.Errorf("no event within %s", timeout), "")
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&recent, "recent", false, "first print the events kept since the daemon started (at most 256)")
	cmd.Flags().IntVar(&count, "count", 0, "exit after this many events (0: run until interrupted)")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "exit (code 7) when no event came for this long (0: wait for ever)")
	return cmd
}

// printEvents prints the event stream until count events (0: no limit),
// the end of ctx (exit 0) or the end of the stream.
func printEvents(ctx context.Context, r io.Reader, count int, seen func()) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		line := sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		var ev api.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("the daemon sent an event that does not decode: %w", err)
		}
		if g.json {
			b, _ := json.Marshal(api.EmptyLists(ev))
			os.Stdout.Write(append(b, '\n'))
		} else {
			say("%s", describeEvent(ev))
		}
		seen()
		if n++; count > 0 && n >= count {
			return nil
		}
	}
	if ctx.Err() != nil {
		return nil // interrupted
	}
	err := sc.Err()
	if err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
		err = errors.New("the daemon ended the event stream")
	}
	return withCode(exitUnavailable, err, "is the daemon still running? `medmesh health` says")
}

// describeEvent is one line for a person.
func describeEvent(ev api.Event) string {
	name := ev.Name
	if name == "" {
		name = "a " + ev.Class + " record"
	}
	name += fmt.Sprintf(" (%s, v%d)", ev.ID, ev.Version)
	who := func(org, p string) string {
		if org == "" {
			return p
		}
		return org + " (" + p + ")"
	}
	t := ev.Time.UTC().Format("2006-01-02 15:04:05Z")
	switch ev.Type {
	case api.EventShared:
		exp := "no expiry"
		if !ev.Expires.IsZero() {
			exp = "until " + ev.Expires.UTC().Format(time.RFC3339)
		}
		return fmt.Sprintf("%s  shared   %s shared %s with this node for %s, %s", t, who(ev.OwnerOrg, ev.Owner), name, ev.Purpose, exp)
	case api.EventRevoked:
		return fmt.Sprintf("%s  revoked  %s revoked this node's access to %s", t, who(ev.OwnerOrg, ev.Owner), name)
	case api.EventRead:
		if len(ev.AttestedBy) > 0 {
			return fmt.Sprintf("%s  read     %s attests it served %d read(s) of %s to %s", t, ev.AttestedBy[0], ev.Count, name, who(ev.ReaderOrg, ev.Reader))
		}
		return fmt.Sprintf("%s  read     %s read %s (purpose %s)", t, who(ev.ReaderOrg, ev.Reader), name, ev.Purpose)
	}
	return fmt.Sprintf("%s  %s  %s", t, ev.Type, name)
}
