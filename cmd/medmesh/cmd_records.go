package main

import (
	"fmt"
	"github.com/medmesh/medmesh/internal/atomicfile"
	"io"
	"mime"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/spf13/cobra"
)

func newAddCmd() *cobra.Command {
	var replicas int
	var class, mediaType string
	var emergency bool
	cmd := &cobra.Command{
		Use:   "add FILE",
		Short: "Encrypt and store a file as a record; prints its record ID",
		Long: `Stream FILE into the node: cut into chunks, each sealed with AES-256-GCM under a
fresh random data key for this record, stored as content-addressed blocks and
announced on the network. The data key is kept only wrapped to this node's key.

The file's name and media type go into the encrypted manifest. The only
description other members see is --class, from a fixed set:
  ` + strings.Join(ledger.Classes(), ", ") + `
(document is the default; imaging is for DICOM studies, which ` + "`dicom import`" + `
stores; dataset is for research datasets).`,
		Example: `  medmesh add report.pdf --class report
  medmesh add labs.json --class lab --type application/fhir+json --replicas 3
  ID=$(medmesh add discharge.pdf --class discharge --json | jq -r .id)`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkChoice("--class", class, ledger.Classes()); err != nil {
				return err
			}
			if cmd.Flags().Changed("replicas") && (replicas < 1 || replicas > 64) {
				return invalidf("", "--replicas must be 1..64 (nodes that should hold the record, owner included)")
			}
			return upload(cmd, args[0], api.Prefix+"/records", url.Values{
				"replicas":  {strconv.Itoa(replicas)},
				"class":     {class},
				"type":      {mediaType},
				"emergency": {strconv.FormatBool(emergency)},
			})
		},
	}
	cmd.Flags().IntVar(&replicas, "replicas", 0, "nodes that should hold the record, owner included (default from config)")
	cmd.Flags().StringVar(&class, "class", ledger.ClassDocument, "the record's class, announced in clear on the ledger: one of "+strings.Join(ledger.Classes(), ", "))
	cmd.Flags().StringVar(&mediaType, "type", "", "media type (default from the file name)")
	cmd.Flags().BoolVar(&emergency, "emergency", false, "escrow the key to the network's emergency authorities (break-glass access when this node is offline)")
	return cmd
}

func newUpdateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "update RECORD FILE",
		Short: "Store a new version of a record under a fresh key, for the owner and current grantees only",
		Long: `Store FILE as the next version of RECORD (owner only). The new version has a
fresh data key, wrapped to the owner and to the grantees whose grants are
current: a revoked peer never receives it. It keeps the record's class,
replicas and emergency escrow. Prints the new version's record ID.`,
		Example: `  medmesh update bafkrei... report-v2.pdf
  medmesh update bafkrei... report-v2.pdf --json | jq .version`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRecord(args[0]); err != nil {
				return err
			}
			return upload(cmd, args[1], api.Prefix+"/records/"+pathEscape(args[0])+"/versions", url.Values{})
		},
	}
	return cmd
}

func upload(cmd *cobra.Command, path, endpoint string, q url.Values) error {
	f, err := os.Open(path)
	if err != nil {
		return invalidf("", "cannot read %s: %v", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() {
		return invalidf("for DICOM folders use `medmesh dicom import`", "%s is a directory", path)
	}
	c, err := client()
	if err != nil {
		return err
	}
	q.Set("name", filepath.Base(path))
	if q.Get("type") == "" {
		q.Set("type", mime.TypeByExtension(filepath.Ext(path)))
	}
	for k, v := range q {
		if len(v) == 0 || v[0] == "" || v[0] == "0" || v[0] == "false" {
			delete(q, k)
		}
	}
	size := st.Size()
	if !st.Mode().IsRegular() {
		// A pipe or a device (add /dev/stdin, add <(...)): its size is
		// unknown, not 0; the upload goes chunked.
		size = -1
	}
	body, done := progress(f, size, "adding")
	var res api.AddResult
	err = c.Upload(ctxOf(cmd), endpoint+"?"+q.Encode(), body, size, &res)
	done()
	if err != nil {
		return err
	}
	return output(res, func() { say("%s", res.ID) })
}

func newGetCmd() *cobra.Command {
	var out, purpose string
	var version int
	cmd := &cobra.Command{
		Use:   "get RECORD -o FILE|DIR",
		Short: "Fetch, verify and decrypt a record into FILE (or into DIR under the record's name)",
		Long: `Find the record's providers through the DHT, fetch its blocks with bitswap,
verify each against its CID, unwrap the data key, decrypt and check the
plaintext hash. FILE appears only when everything checked out (written to a
temporary file, synced and renamed). If -o names an existing directory, the
file is written into it under the record's name (as cp does), or under the
record ID if the record has no usable name. Reading another node's record is
recorded on the ledger's audit trail with --purpose (` + strings.Join(ledger.Purposes(), ", ") + `).`,
		Example: `  medmesh get bafkrei… -o report.pdf
  medmesh get bafkrei… -o ~/Downloads/      # writes ~/Downloads/<record name>
  medmesh get bafkrei… -o report.pdf --version 1 --purpose operations --json # {"id", "file", "size", "seconds"}`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRecord(args[0]); err != nil {
				return err
			}
			if err := checkChoice("--purpose", purpose, ledger.Purposes()); err != nil {
				return err
			}
			if cmd.Flags().Changed("version") && version < 1 {
				return invalidf("", "--version must be 1 or more")
			}
			if out == "" {
				return invalidf("", "-o FILE is required")
			}
			c, err := client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if version > 0 {
				q.Set("version", strconv.Itoa(version))
			}
			if purpose != "" {
				q.Set("purpose", purpose)
			}
			start := time.Now()
			st, err := c.Open(ctxOf(cmd), api.Prefix+"/records/"+pathEscape(args[0])+"/content?"+q.Encode())
			if err != nil {
				return err
			}
			defer st.Close()
			path, err := outputPath(out, st.Name, args[0])
			if err != nil {
				return err
			}
			n, err := atomicfile.Write(path, 0o600, func(f io.Writer) error {
				w, done := progressWriter(f, st.Size, "fetching")
				_, err := io.Copy(w, st.Body)
				done()
				if err != nil {
					return err
				}
				return st.Finish()
			})
			if err != nil {
				return err
			}
			el := time.Since(start)
			return output(map[string]any{"id": args[0], "file": path, "size": n, "seconds": el.Seconds()}, func() {
				say("wrote %s (%d bytes, %.1f MB/s)", path, n, float64(n)/1e6/max(el.Seconds(), 1e-9))
			})
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write, or an existing directory to write into under the record's name")
	cmd.Flags().IntVar(&version, "version", 0, "fetch this version (default: the newest you may read)")
	cmd.Flags().StringVar(&purpose, "purpose", ledger.PurposeTreatment, "purpose of this access, for the audit trail: "+strings.Join(ledger.Purposes(), ", "))
	return cmd
}

func newLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the records this node owns, holds or may read",
		Long: `List the records this node owns, holds a replica of, or has a current grant
for, newest first: size, version, class, owner, and replication (holders with
a "held" receipt, owner included, against the wanted replicas).`,
		Example: `  medmesh ls
  medmesh ls --json | jq -r '.[] | select(.under_replicated) | .id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			if g.json {
				// The daemon's answer is already the output (indented, lists
				// as []): pass it through rather than decode and re-encode
				// what may be 100,000 records.
				return c.DownloadRaw(ctxOf(cmd), api.Prefix+"/records", os.Stdout)
			}
			var recs []api.Record
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/records", nil, &recs); err != nil {
				return err
			}
			if recs == nil {
				recs = []api.Record{}
			}
			return output(recs, func() {
				tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "RECORD\tSIZE\tVER\tCLASS\tOWNER\tREPLICAS")
				for _, r := range recs {
					owner := shortPeer(r.Owner)
					if r.Mine {
						owner = "me"
					}
					rep := fmt.Sprintf("%d/%d", len(r.Holders), r.Replicas)
					if r.Under {
						rep += " UNDER-REPLICATED"
					}
					fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", r.ID, r.Size, r.Version, r.Class, owner, rep)
				}
				tw.Flush()
			})
		},
	}
}

func shortPeer(p string) string {
	if len(p) > 12 {
		return "…" + p[len(p)-8:]
	}
	return p
}

// outputPath is where get writes: out itself, or, when out is an existing
// directory, a file in it named after the record (its name from the
// manifest, made safe, else its ID).
func outputPath(out, name, id string) (string, error) {
	st, err := os.Stat(out)
	if err != nil || !st.IsDir() {
		return out, nil
	}
	base := api.SafeFileName(name)
	if base == "" {
		base = api.SafeFileName(id)
	}
	if base == "" {
		return "", invalidf("give a file name with -o", "%s is a directory and the record has no usable name", out)
	}
	path := filepath.Join(out, base)
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return "", invalidf("give another file name with -o", "%s is a directory", path)
	}
	return path, nil
}
