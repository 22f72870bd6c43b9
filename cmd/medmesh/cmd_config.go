package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/medmesh/medmesh/node/repo"
	"github.com/spf13/cobra"
)

// configSetting is one setting in `config show --json`. Every value is a
// string, written as `config set` takes it (lists: comma-separated).
type configSetting struct {
	Key         string `json:"key"`
	Value       string `json:"value"`
	Default     string `json:"default"`
	IsDefault   bool   `json:"is_default"`
	Accepts     string `json:"accepts"`
	Description string `json:"description"`
}

// configShow is what `config show --json` prints.
type configShow struct {
	File string `json:"file"`
	// DaemonRunning: a daemon runs on the repo; RestartNeeded: config.json
	// changed after it started, so it runs with other values.
	DaemonRunning bool            `json:"daemon_running"`
	RestartNeeded bool            `json:"restart_needed"`
	Settings      []configSetting `json:"settings"`
}

// configSetResult is what `config set` and `config unset` print.
type configSetResult struct {
	Key           string `json:"key"`
	Value         string `json:"value"`
	Previous      string `json:"previous"`
	Changed       bool   `json:"changed"`
	DaemonRunning bool   `json:"daemon_running"`
	RestartNeeded bool   `json:"restart_needed"`
}

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show and change the node's settings (config.json), with or without a daemon",
		Long: `Show and change the node's settings, kept in REPO/config.json. The commands
work on the repo directly: no daemon is needed. The daemon reads the settings
when it starts; when one is running, ` + "`config set`" + ` says so, and it must be
restarted for a change to take effect.

Every setting, its default and what it does:

` + settingsDoc() + `
Keys are dotted; config.json nests them ({"replication": {"grace": "10m"}}).
Durations take a unit (30s, 10m, 1h30m); sizes take an optional unit (512MiB,
20GiB; KB/MB/GB/TB are powers of 1000); lists take several values, as
separate arguments or separated by commas ("" for none). An invalid value is
refused (exit 2) and the file is left as it was. A config.json with an
invalid or unknown setting stops the daemon from starting, with the same
message; fix it with ` + "`config set`" + ` or ` + "`config unset`" + `.`,
		Example: `  medmesh config show
  medmesh config set replication.grace 30m
  medmesh config set addresses.announce /ip4/203.0.113.7/tcp/4101
  medmesh config set storage.quota 500GiB
  medmesh config unset replication.grace
  medmesh config show --json | jq -r '.settings[] | select(.is_default | not) | "\(.key)=\(.value)"'`,
	}
	cmd.AddCommand(newConfigShowCmd(), newConfigSetCmd(), newConfigUnsetCmd())
	return cmd
}

// settingsDoc lists the settings for `medmesh help config`.
func settingsDoc() string {
	var b strings.Builder
	for _, s := range repo.Settings() {
		def := s.Default
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(&b, "  %s (default %s)\n", s.Key, def)
		b.WriteString(wrap(s.Doc, "      ", 78))
		b.WriteString(wrap("Takes "+s.Accepts+".", "      ", 78))
	}
	return b.String()
}

// wrap breaks text into lines of at most width, each starting with indent.
func wrap(text, indent string, width int) string {
	var b strings.Builder
	line := indent
	for _, w := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += w
	}
	b.WriteString(line + "\n")
	return b.String()
}

func newConfigShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show [KEY...]",
		Short: "Print the settings (all, or the keys named) with their defaults",
		Long: `Print every setting of the repo's config.json (or only the keys named), its
value and, where it differs, the default. Works without a daemon. When a daemon
runs on the repo and config.json changed after it started, it says that the
daemon runs with other values until it is restarted ("restart_needed": true).`,
		Example: `  medmesh config show
  medmesh config show replication.grace storage.quota
  medmesh config show --json | jq -r '.settings[] | select(.key == "replication.grace") | .value'`,
		RunE: func(cmd *cobra.Command, keys []string) error {
			dir := repoDir()
			c, err := repo.LoadConfig(dir)
			if err != nil {
				return configErr(err)
			}
			want := map[string]bool{}
			for _, k := range keys {
				if _, ok := repo.Lookup(k); !ok {
					return configErr(&repo.UnknownSettingError{Key: k})
				}
				want[k] = true
			}
			out := configShow{File: filepath.Join(dir, repo.ConfigFile), Settings: []configSetting{}}
			out.DaemonRunning, out.RestartNeeded = daemonState(dir)
			for _, s := range repo.Settings() {
				if len(want) > 0 && !want[s.Key] {
					continue
				}
				v := s.Get(&c)
				out.Settings = append(out.Settings, configSetting{Key: s.Key, Value: v, Default: s.Default, IsDefault: v == s.Default, Accepts: s.Accepts, Description: s.Doc})
			}
			return output(out, func() {
				tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
				for _, s := range out.Settings {
					v := s.Value
					if v == "" {
						v = `""`
					}
					note := ""
					if !s.IsDefault {
						d := s.Default
						if d == "" {
							d = `""`
						}
						note = "(default " + d + ")"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Key, v, note)
				}
				tw.Flush()
				if out.RestartNeeded {
					say("config.json changed after the running daemon started: restart it for these values to take effect")
				}
			})
		},
	}
}

func newConfigSetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "set KEY VALUE...",
		Short: "Change one setting in config.json (checked; takes effect when the daemon starts)",
		Long: `Change one setting in the repo's config.json. The value is checked against what
the setting accepts (` + "`medmesh help config`" + `); an invalid value is refused with
exit code 2 and nothing is written. Lists take several values, as separate
arguments or separated by commas; "" empties a list. Works without a daemon;
when one is running on the repo, it says so: restart the daemon for the change
to take effect.`,
		Example: `  medmesh config set replication.grace 30m
  medmesh config set replication.factor 2
  medmesh config set storage.quota 500GiB
  medmesh config set addresses.announce /ip4/203.0.113.7/tcp/4101 /dns4/pacs.example.org/tcp/4101
  medmesh config set bootstrap ""`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := repo.SetConfig(repoDir(), args[0], args[1:])
			if err != nil {
				return configErr(err)
			}
			return printSet(res)
		},
	}
}

func newConfigUnsetCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "unset KEY",
		Short:   "Set one setting back to its default",
		Long:    `Set one setting of the repo's config.json back to its default. Works without a daemon; restart a running daemon for it to take effect.`,
		Example: `  medmesh config unset replication.grace`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := repo.UnsetConfig(repoDir(), args[0])
			if err != nil {
				return configErr(err)
			}
			return printSet(res)
		},
	}
}

func printSet(res repo.SetResult) error {
	out := configSetResult{Key: res.Key, Value: res.Value, Previous: res.Previous, Changed: res.Changed}
	pid := 0
	pid, out.DaemonRunning = repo.DaemonRunning(repoDir())
	out.RestartNeeded = out.DaemonRunning && res.Changed
	return output(out, func() {
		show := func(v string) string {
			if v == "" {
				return `""`
			}
			return v
		}
		if !res.Changed {
			say("%s is already %s", res.Key, show(res.Value))
		} else {
			say("%s: %s -> %s", res.Key, show(res.Previous), show(res.Value))
		}
		if _, err := repo.LoadConfig(repoDir()); err != nil {
			say("config.json still has problems: %v", err)
		}
		switch {
		case out.RestartNeeded:
			who := "a daemon"
			if pid > 0 {
				who = fmt.Sprintf("a daemon (pid %d)", pid)
			}
			say("%s is running on this repo: restart it for the change to take effect (systemctl restart medmesh, or stop it and run `medmesh daemon`)", who)
		case res.Changed:
			say("takes effect when the daemon starts")
		}
	})
}

// daemonState reports whether a daemon runs on dir, and whether
// config.json changed after it started (its lock file is written then).
func daemonState(dir string) (running, restart bool) {
	_, running = repo.DaemonRunning(dir)
	if !running {
		return false, false
	}
	cfg, err1 := os.Stat(filepath.Join(dir, repo.ConfigFile))
	lock, err2 := os.Stat(filepath.Join(dir, repo.LockFile))
	return true, err1 == nil && err2 == nil && cfg.ModTime().After(lock.ModTime())
}

// configErr gives the config package's errors their exit codes: a value,
// key or file that is wrong is invalid input (2).
func configErr(err error) error {
	var ve *repo.ValueError
	var ue *repo.UnknownSettingError
	var ce *repo.ConfigError
	switch {
	case errors.As(err, &ve):
		return withCode(exitInvalid, errors.New(strings.TrimSuffix(err.Error(), " ("+ve.Hint()+")")), ve.Hint())
	case errors.As(err, &ue):
		return withCode(exitInvalid, fmt.Errorf("unknown setting %q", ue.Key), ue.Hint())
	case errors.As(err, &ce):
		return withCode(exitInvalid, errors.New(strings.TrimSuffix(err.Error(), " ("+ce.Hint()+")")), ce.Hint())
	}
	return err
}
