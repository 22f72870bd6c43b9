package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/dataset"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newConsentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "consent",
		Short: "Record patients' consents (research, treatment, ...) on the ledger",
		Long: `A consent names the patient by a pseudonym keyed with this clinic's secret key:
the raw patient ID never leaves this node. A revoke cancels this clinic's
consents of (patient, purpose) it saw and any written concurrently with it.
Purposes: ` + strings.Join(ledger.Purposes(), ", ") + `. A consent's scope (--modality, a
DICOM modality such as MR; --bodypart, a DICOM body part such as LSPINE) is
on the ledger in clear.`,
		Example: `  medmesh consent add --patient PAT-0042 --purpose research --modality MR --expires 8760h
  medmesh consent ls --purpose research
  medmesh consent revoke --patient PAT-0042 --purpose research`,
	}
	var req api.ConsentRequest
	var expires time.Duration
	flags := func(c *cobra.Command, scope bool) {
		c.Flags().StringVar(&req.Patient, "patient", "", "patient ID (as in the clinic's DICOM files)")
		c.Flags().StringVar(&req.Purpose, "purpose", ledger.PurposeResearch, strings.Join(ledger.Purposes(), ", "))
		if scope {
			c.Flags().StringVar(&req.Modality, "modality", "", "limit to a modality, e.g. MR")
			c.Flags().StringVar(&req.BodyPart, "bodypart", "", "limit to a body part, e.g. LSPINE")
			c.Flags().DurationVar(&expires, "expires", 0, "consent lifetime, e.g. 8760h (default: none)")
		}
	}
	// check validates the flags before any daemon is asked.
	check := func(cmd *cobra.Command) error {
		if err := checkChoice("--purpose", req.Purpose, ledger.Purposes()); err != nil {
			return err
		}
		if req.Patient == "" || len(req.Patient) > 64 {
			return invalidf("", "--patient: a patient ID is 1 to 64 characters")
		}
		if req.Modality != "" {
			m, err := dicom.NormalizeModality(req.Modality)
			if err != nil {
				return invalidf("", "--modality: %v", err)
			}
			req.Modality = m
		}
		if f := cmd.Flags().Lookup("expires"); f != nil && f.Changed && expires <= 0 {
			return invalidf("leave --expires out for a consent without expiry", "--expires %s: a consent's lifetime must be positive", expires)
		}
		return nil
	}
	add := &cobra.Command{
		Use:   "add --patient ID --purpose research [--modality MR] [--bodypart LSPINE] [--expires DURATION]",
		Short: "Record a patient's consent",
		Example: `  medmesh consent add --patient PAT-0042 --purpose research
  medmesh consent add --patient PAT-0042 --purpose research --modality MR --bodypart LSPINE --expires 8760h --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := check(cmd); err != nil {
				return err
			}
			c, err := client()
			if err != nil {
				return err
			}
			if expires > 0 {
				req.Expires = expires.String()
			}
			var ci api.ConsentInfo
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/consents", req, &ci); err != nil {
				return err
			}
			return output(ci, func() { say("consent recorded for %s (entry %s)", ci.Purpose, ci.Entry) })
		},
	}
	flags(add, true)
	add.MarkFlagRequired("patient")
	revoke := &cobra.Command{
		Use:     "revoke --patient ID --purpose research",
		Short:   "Revoke a patient's consents for a purpose",
		Example: `  medmesh consent revoke --patient PAT-0042 --purpose research --json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := check(cmd); err != nil {
				return err
			}
			c, err := client()
			if err != nil {
				return err
			}
			var out api.ConsentRevokeResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/consents/revoke", req, &out); err != nil {
				return err
			}
			return output(out, func() { say("consent for %s revoked (entry %s)", out.Purpose, out.Entry) })
		},
	}
	flags(revoke, false)
	revoke.MarkFlagRequired("patient")
	var lsReq api.ConsentListRequest
	ls := &cobra.Command{
		Use:   "ls [--patient ID] [--purpose P]",
		Short: "List this clinic's consents",
		Long: `List the consents this clinic recorded, current, expired and revoked. The
patient column is the pseudonym on the ledger ("patient" in --json).`,
		Example: `  medmesh consent ls
  medmesh consent ls --patient PAT-0042 --purpose research --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if lsReq.Purpose != "" {
				if err := checkChoice("--purpose", lsReq.Purpose, ledger.Purposes()); err != nil {
					return err
				}
			}
			c, err := client()
			if err != nil {
				return err
			}
			cs := []api.ConsentInfo{}
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/consents/list", lsReq, &cs); err != nil {
				return err
			}
			return output(cs, func() {
				tw := tabwriter.NewWriter(os.Stdout, 0, 2, 2, ' ', 0)
				fmt.Fprintln(tw, "PATIENT\tPURPOSE\tSCOPE\tEXPIRES\tSTATE")
				for _, c := range cs {
					scope := strings.Trim(c.Modality+" "+c.BodyPart, " ")
					if scope == "" {
						scope = "any"
					}
					exp := "-"
					if !c.Expires.IsZero() {
						exp = c.Expires.Format(time.RFC3339)
					}
					state := "current"
					if c.Revoked {
						state = "revoked"
					} else if c.Expired {
						state = "expired"
					}
					fmt.Fprintf(tw, "%s…\t%s\t%s\t%s\t%s\n", c.Patient[:12], c.Purpose, scope, exp, state)
				}
				tw.Flush()
			})
		},
	}
	ls.Flags().StringVar(&lsReq.Patient, "patient", "", "only this patient ID")
	ls.Flags().StringVar(&lsReq.Purpose, "purpose", "", "only this purpose: "+strings.Join(ledger.Purposes(), ", "))
	cmd.AddCommand(add, revoke, ls)
	return cmd
}

func newDatasetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dataset",
		Short: "Publish consent-checked, de-identified research datasets; fetch them",
		Long: `A clinic publishes the studies it owns whose patients have a current research
consent covering them, de-identified with one project key (PS3.15 basic
profile), as a dataset; a researcher granted it fetches every study in
parallel. A dataset across clinics is federated: each clinic publishes its
part under the same name and grants it; 'dataset fetch NAME' fetches every
part into one folder. A dataset's name is inside its encrypted manifest, not
on the ledger in clear.`,
		Example: `  medmesh dataset create lspine-2026 --query 'modality=MR bodypart=LSPINE'
  medmesh dataset grant lspine-2026 --to 12D3KooW... --expires 2160h
  medmesh dataset ls
  medmesh dataset fetch lspine-2026 -o ./lspine`,
	}
	var creq api.DatasetCreateRequest
	var records string
	create := &cobra.Command{
		Use:   "create NAME (--records ID,ID,... | --query 'modality=MR bodypart=LSPINE')",
		Short: "Publish a dataset (a new version if NAME exists)",
		Long: `Publish the studies this clinic owns that are selected (by --records or
--query) and covered by a current research consent, de-identified with the
project key, as a dataset named NAME. If NAME exists, this is its next
version: its grantees are granted the new version and the grants of studies
it drops are revoked. The answer lists the studies included and those left
out, with the reason.`,
		Example: `  medmesh dataset create lspine-2026 --query 'modality=MR bodypart=LSPINE' --shift-dates
  medmesh dataset create pilot --records bafkrei...,bafkrei... --json | jq '.studies | length'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (records == "") == (creq.Query == "") {
				return invalidf("e.g. --query 'modality=MR bodypart=LSPINE'", "give --records or --query (one of them)")
			}
			creq.Name = args[0]
			if creq.Name == "" || len(creq.Name) > 128 {
				return invalidf("", "a dataset name is 1 to 128 bytes")
			}
			creq.Records = nil
			if records != "" {
				creq.Records = strings.Split(records, ",")
				for _, r := range creq.Records {
					if err := checkRecord(r); err != nil {
						return err
					}
				}
			}
			if creq.Query != "" {
				if _, err := dataset.ParseQuery(creq.Query); err != nil {
					return invalidf("", "--query: %v", err)
				}
			}
			c, err := client()
			if err != nil {
				return err
			}
			if creq.ProjectKeyFile != "" {
				if creq.ProjectKeyFile, err = filepath.Abs(creq.ProjectKeyFile); err != nil {
					return err
				}
			}
			var res api.DatasetCreateResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/datasets", creq, &res); err != nil {
				return err
			}
			return output(res, func() {
				say("dataset %s version %d: %s", res.Name, res.Version, res.ID)
				say("  %d studies included, %d left out", len(res.Studies), len(res.Excluded))
				for reason, n := range res.Counts {
					say("    %-45s %d", reason, n)
				}
				if len(res.Regranted) > 0 {
					say("  granted to the %d grantees of the previous version; %d grants of dropped studies revoked", len(res.Regranted), res.Revoked)
				}
			})
		},
	}
	create.Flags().StringVar(&records, "records", "", "study record IDs, comma separated")
	create.Flags().StringVar(&creq.Query, "query", "", "select owned studies, e.g. 'modality=MR bodypart=LSPINE'")
	create.Flags().BoolVar(&creq.RetainPatientCharacteristics, "retain-patient-characteristics", false, "keep sex, age, size, weight")
	create.Flags().BoolVar(&creq.ShiftDates, "shift-dates", false, "shift dates by a per-patient offset instead of removing them")
	create.Flags().StringVar(&creq.ProjectKeyFile, "project-key", "", "project key file (default: the repo's dicom-project.key)")

	var to string
	var gexp time.Duration
	grant := &cobra.Command{
		Use:   "grant DATASET --to PEERID",
		Short: "Grant a dataset and every study in it (purpose research)",
		Long: `Grant the newest version of the dataset this clinic publishes under DATASET
(a name or record ID), its manifest and every study in it, to a member for
research. For a federated dataset each clinic grants its own part.`,
		Example: `  medmesh dataset grant lspine-2026 --to 12D3KooW... --expires 2160h
  medmesh dataset grant lspine-2026 --to 12D3KooW... --json | jq '.[].record_count'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkPeer("--to", to); err != nil {
				return err
			}
			if cmd.Flags().Changed("expires") && gexp <= 0 {
				return invalidf("leave --expires out for a grant without expiry", "--expires %s: a grant's lifetime must be positive", gexp)
			}
			c, err := client()
			if err != nil {
				return err
			}
			req := api.DatasetGrantRequest{To: to}
			if gexp > 0 {
				req.Expires = gexp.String()
			}
			out := []api.DatasetGrantResult{}
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/datasets/"+pathEscape(args[0])+"/grants", req, &out); err != nil {
				return err
			}
			return output(out, func() {
				for _, g := range out {
					say("granted dataset %s (version %d, %d records) to %s for research", g.Dataset, g.Version, g.Records, g.Grantee)
				}
			})
		},
	}
	grant.Flags().StringVar(&to, "to", "", "grantee peer ID")
	grant.Flags().DurationVar(&gexp, "expires", 0, "grant lifetime (default: none)")
	grant.MarkFlagRequired("to")

	ls := &cobra.Command{
		Use:   "ls",
		Short: "List datasets this node published or may read",
		Example: `  medmesh dataset ls
  medmesh dataset ls --json | jq -r '.[] | [.name, .version, .study_count] | @tsv'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			ds := []api.DatasetInfo{}
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/datasets", nil, &ds); err != nil {
				return err
			}
			return output(ds, func() {
				tw := tabwriter.NewWriter(os.Stdout, 0, 2, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tVERSION\tSTUDIES\tINSTANCES\tSIZE\tMINE\tID")
				for _, d := range ds {
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%v\t%s\n", d.Name, d.Version, d.Studies, d.Instances, d.Size, d.Mine, d.ID)
				}
				tw.Flush()
			})
		},
	}

	var dir string
	var par int
	fetch := &cobra.Command{
		Use:   "fetch DATASET... -o DIR",
		Short: "Fetch every study of a dataset (resumable) with manifest.csv",
		Long: `Fetch, verify and decrypt every study of the datasets (names or record IDs;
a name fetches every clinic's part) into DIR, several instances at once from
every holder, with DIR/manifest.csv listing each file and its SHA-256. An
interrupted fetch resumes where it stopped: run the same command again.`,
		Example: `  medmesh dataset fetch lspine-2026 -o ./lspine
  medmesh dataset fetch lspine-2026 -o ./lspine --parallel 16 --json | jq .fetched_size`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("parallel") && (par < 1 || par > 256) {
				return invalidf("", "--parallel must be 1..256")
			}
			c, err := client()
			if err != nil {
				return err
			}
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			jb := make([]byte, 8)
			rand.Read(jb)
			req := api.DatasetFetchRequest{Datasets: args, Dir: abs, Parallel: par, Job: hex.EncodeToString(jb)}
			ctx := ctxOf(cmd)
			stop := fetchProgress(ctx, c, req.Job)
			var res api.DatasetFetchResult
			err = c.Do(ctx, "POST", api.Prefix+"/datasets/fetch", req, &res)
			stop()
			if err != nil {
				// A refusal (unknown dataset, no grant) is not helped by
				// trying again; an interrupted fetch is.
				var re *api.RemoteError
				if errors.As(err, &re) && re.Status >= 400 && re.Status < 500 {
					return err
				}
				return fmt.Errorf("%w (run the same command again to resume)", err)
			}
			return output(res, func() {
				rate := ""
				if res.Fetched > 0 {
					rate = fmt.Sprintf("; %.1f MB/s", res.MBps)
				}
				say("%d studies, %d instances in %s: %d fetched, %d already verified%s", res.Studies, res.Instances, res.Dir, res.Fetched, res.Skipped, rate)
				say("manifest: %s", res.CSV)
			})
		},
	}
	fetch.Flags().StringVarP(&dir, "output", "o", "", "output folder")
	fetch.Flags().IntVar(&par, "parallel", 0, "instances fetched at once (default 8)")
	fetch.MarkFlagRequired("output")
	cmd.AddCommand(create, grant, ls, fetch)
	return cmd
}

// fetchProgress polls a fetch job and draws a bar (bytes, rate, studies)
// on a terminal; it returns a function that stops it.
func fetchProgress(ctx context.Context, c *api.Client, job string) func() {
	if g.json || g.noProg || !term.IsTerminal(int(os.Stderr.Fd())) {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var bar *progressbar.ProgressBar
		t := time.NewTicker(300 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				if bar != nil {
					bar.Finish()
				}
				return
			case <-t.C:
			}
			var p api.DatasetProgress
			if err := c.Do(ctx, "GET", api.Prefix+"/datasets/fetch/"+job, nil, &p); err != nil || p.Bytes == 0 {
				continue
			}
			if bar == nil {
				bar = progressbar.DefaultBytes(p.Bytes, "fetching")
			}
			bar.Describe(fmt.Sprintf("studies %d/%d", p.StudiesDone, p.Studies))
			bar.Set64(p.BytesDone)
		}
	}()
	return func() { close(done); <-finished }
}
