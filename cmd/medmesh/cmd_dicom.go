package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/sharing/ledger"
	"github.com/medmesh/medmesh/storage/dicom"
	"github.com/spf13/cobra"
)

func newDicomCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dicom",
		Short: "Import, find, export and de-identify DICOM studies",
		Long: `Each DICOM study is one record (kind "dicom-study", class "imaging"): one
encrypted file per instance, the study's index in the encrypted manifest. The
node keeps an encrypted local index of its studies for queries. The same
studies are served over DICOMweb (STOW-RS, QIDO-RS, WADO-RS) under /dicomweb on
the node's API, with the API token, and to PACS, modalities and workstations
over DIMSE when dicom.listen is set (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET;
see ` + "`medmesh help config`" + `). echo and send make the node an SCU.`,
		Example: `  medmesh dicom import /mnt/modality-out
  medmesh dicom query --modality mr --from 2026-01-01
  medmesh dicom export bafkrei... -o ./study
  medmesh dicom deidentify bafkrei... --shift-dates
  medmesh dicom echo PACS@10.0.0.5:104
  medmesh dicom send bafkrei... --to PACS@10.0.0.5:104`,
	}
	cmd.AddCommand(newDicomImportCmd(), newDicomQueryCmd(), newDicomExportCmd(), newDicomDeidCmd(), newDicomEchoCmd(), newDicomSendCmd())
	return cmd
}

// isDate accepts YYYYMMDD or YYYY-MM-DD.
func isDate(s string) bool {
	n := strings.ReplaceAll(s, "-", "")
	return len(n) == 8 && strings.Trim(n, "0123456789") == ""
}

func absPaths(args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	for _, a := range args {
		p, err := filepath.Abs(a)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(p); err != nil {
			return nil, invalidf("", "cannot read %s: %v", a, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func newDicomImportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "import PATH...",
		Short: "Import DICOM files and folders (recursive) as one record per study",
		Long: `Parse every file under the given files and folders, group the instances by
study and series and store each study as a record. A DICOMDIR is skipped (it
is an index). A study this node already has gets a new version holding the old
and the new instances; instances already stored are skipped. Every file is
reported: in a study, skipped, or rejected with its reason. Instances whose
UIDs are not conformant (letters such as 64 hex digits, more than 64
characters, leading zeros) are stored as they are, as dcmtk and Orthanc keep
them, with a warning each ("warnings" in --json); a UID that could not be a
file or URL path name (slashes, spaces, several values, over 128 characters)
is rejected. If any file was rejected the command exits 2 (invalid input)
after storing the others; with --json the report is still printed on stdout
and the error on stderr.`,
		Example: `  medmesh dicom import /mnt/modality-out
  medmesh dicom import study1/ extra.dcm --json | jq -r '.studies[].id'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			paths, err := absPaths(args)
			if err != nil {
				return err
			}
			c, err := client()
			if err != nil {
				return err
			}
			var res api.DicomImportResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/dicom/import", api.DicomImportRequest{Paths: paths}, &res); err != nil {
				return err
			}
			err = output(res, func() {
				tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "RECORD\tVER\tSERIES\tINSTANCES\tADDED\tSTUDY")
				for _, s := range res.Studies {
					added := fmt.Sprint(s.Added)
					if s.Unchanged {
						added = "0 (unchanged)"
					}
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", s.ID, s.Version, s.Series, s.Instances, added, s.StudyUID)
				}
				tw.Flush()
				if len(res.Skipped) > 0 {
					say("skipped %d file(s) (DICOMDIR or instance already stored); --json lists them", len(res.Skipped))
				}
				for _, w := range res.Warnings {
					fmt.Fprintf(os.Stderr, "warning: %s\n", w.Warning)
				}
				for _, r := range res.Rejected {
					fmt.Fprintf(os.Stderr, "rejected: %s\n", r.Error)
				}
			})
			if err == nil && len(res.Rejected) > 0 {
				err = invalidf("the report lists each rejected file and why", "%d file(s) rejected, %d stud(ies) stored", len(res.Rejected), len(res.Studies))
			}
			return err
		},
	}
}

func newDicomQueryCmd() *cobra.Command {
	var patient, modality, study, from, to string
	cmd := &cobra.Command{
		Use:   "query",
		Short: "Search this node's encrypted study index",
		Long: `Search the studies this node stored or was granted, by patient ID, modality,
Study Instance UID and study date range. Every filter given must match.
Prints [] when nothing matches. --modality matches a series' modality
whatever its case (mr finds MR); modalities are open-ended (archives hold
values such as "PET" that are not DICOM defined terms), so a value no study
has is an empty answer, not an error; the plain output then lists the
defined terms, in case of a typo.`,
		Example: `  medmesh dicom query --patient PAT-0042
  medmesh dicom query --modality mr --from 2026-01-01 --to 2026-03-31 --json | jq -r '.[].id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for flag, v := range map[string]string{"--from": from, "--to": to} {
				if v != "" && !isDate(v) {
					return invalidf("write dates as YYYYMMDD or YYYY-MM-DD", "%s %q is not a date", flag, v)
				}
			}
			c, err := client()
			if err != nil {
				return err
			}
			q := url.Values{}
			for k, v := range map[string]string{"patient": patient, "modality": modality, "study": study, "from": from, "to": to} {
				if v != "" {
					q.Set(k, v)
				}
			}
			hits := []api.DicomStudyHit{}
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/dicom/studies?"+q.Encode(), nil, &hits); err != nil {
				return err
			}
			if hits == nil {
				hits = []api.DicomStudyHit{}
			}
			return output(hits, func() {
				tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "RECORD\tPATIENT\tDATE\tMODALITY\tINSTANCES\tOWNER\tSTUDY")
				for _, h := range hits {
					owner := "me"
					if !h.Mine {
						owner = "granted"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", h.ID, h.PatientID, h.StudyDate, h.Modality, h.Instances, owner, h.StudyUID)
				}
				tw.Flush()
				if len(hits) == 0 && modality != "" {
					if _, err := dicom.NormalizeModality(modality); err != nil { // a typo?
						fmt.Fprintf(os.Stderr, "no study has modality %q, which is not a DICOM defined term (%s)\n", modality, strings.Join(dicom.Modalities(), ", "))
					}
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&patient, "patient", "", "Patient ID (exact)")
	f.StringVar(&modality, "modality", "", "modality of a series in the study (CT, MR, ...; any value, any case)")
	f.StringVar(&study, "study", "", "Study Instance UID")
	f.StringVar(&from, "from", "", "first study date, YYYYMMDD or YYYY-MM-DD")
	f.StringVar(&to, "to", "", "last study date, YYYYMMDD or YYYY-MM-DD")
	return cmd
}

func newDicomExportCmd() *cobra.Command {
	var out, series, purpose string
	var version int
	cmd := &cobra.Command{
		Use:   "export RECORD -o DIR",
		Short: "Write a study's original files back, byte for byte, as DIR/Study/Series/Instance.dcm",
		Long: `Fetch, verify and decrypt a study (one the node owns or was granted) and write
each instance as DIR/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm, through a
temporary file renamed into place once complete. With --series only that
series' files are fetched. Reading another node's study is audited with
--purpose.`,
		Example: `  medmesh dicom export bafkrei... -o ./study
  medmesh dicom export bafkrei... -o ./study --series 1.2.840... --json | jq .instance_count`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRecord(args[0]); err != nil {
				return err
			}
			if out == "" {
				return invalidf("", "-o DIR is required")
			}
			if err := checkChoice("--purpose", purpose, ledger.Purposes()); err != nil {
				return err
			}
			if cmd.Flags().Changed("version") && version < 1 {
				return invalidf("", "--version must be 1 or more")
			}
			dir, err := filepath.Abs(out)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("cannot create %s: %w", out, err)
			}
			c, err := client()
			if err != nil {
				return err
			}
			var res api.DicomExportResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/dicom/export", api.DicomExportRequest{Record: args[0], Version: version, Dir: dir, Series: series, Purpose: purpose}, &res); err != nil {
				return err
			}
			return output(res, func() {
				say("wrote %d instance(s), %d bytes, under %s", res.Instances, res.Bytes, filepath.Join(dir, res.StudyUID))
			})
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "folder to write into")
	cmd.Flags().StringVar(&series, "series", "", "export only this Series Instance UID")
	cmd.Flags().IntVar(&version, "version", 0, "export this version (default: the newest you may read)")
	cmd.Flags().StringVar(&purpose, "purpose", ledger.PurposeTreatment, "purpose of this access, for the audit trail: "+strings.Join(ledger.Purposes(), ", "))
	return cmd
}

func newDicomDeidCmd() *cobra.Command {
	var req api.DicomDeidRequest
	var keyFile string
	cmd := &cobra.Command{
		Use:   "deidentify RECORD",
		Short: "Make a new study record of the de-identified instances (PS3.15 basic profile)",
		Long: `Stream every instance of the study through the PS3.15 Annex E basic
de-identification profile into a new "dicom-study" record. UIDs and the
patient pseudonym are keyed by the project key (--project-key-file, or the
repo's dicom-project.key, created 0600 on first use): the same key keeps a
project's studies linked. Instances that may carry burned-in text (US,
secondary capture, BurnedInAnnotation YES) are excluded and listed. Prints the
new record's ID.`,
		Example: `  medmesh dicom deidentify bafkrei... --shift-dates
  medmesh dicom deidentify bafkrei... --project-key-file ./project.key --json | jq -r .id`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRecord(args[0]); err != nil {
				return err
			}
			if err := checkChoice("--purpose", req.Purpose, ledger.Purposes()); err != nil {
				return err
			}
			req.Record = args[0]
			if keyFile != "" {
				p, err := filepath.Abs(keyFile)
				if err != nil {
					return err
				}
				req.ProjectKeyFile = p
			}
			c, err := client()
			if err != nil {
				return err
			}
			var res api.DicomDeidResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/dicom/deidentify", req, &res); err != nil {
				return err
			}
			return output(res, func() {
				say("%s", res.ID)
				say("%d instance(s) de-identified, %d excluded", res.Instances, len(res.Excluded))
				for _, e := range res.Excluded {
					say("excluded file %d: %s", e.File, e.Reason)
				}
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&req.RetainPatientCharacteristics, "retain-patient-characteristics", false, "keep sex, age, size, weight (PS3.15 E.3.7)")
	f.BoolVar(&req.ShiftDates, "shift-dates", false, "shift dates by a per-patient offset instead of removing them (E.3.6)")
	f.StringVar(&keyFile, "project-key-file", "", "project key file (16+ bytes, mode 0600)")
	f.StringVar(&req.Purpose, "purpose", ledger.PurposeResearch, "purpose recorded when the source is another node's study: "+strings.Join(ledger.Purposes(), ", "))
	return cmd
}

func newDicomEchoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "echo AE@HOST:PORT",
		Short: "Verify a DICOM peer (C-ECHO) from this node's AE title",
		Long: `Associate with a DICOM peer (a PACS, a workstation, a modality) as this node's
AE title (dicom.ae_title) and send a C-ECHO: it checks the address, that the
peer runs, and that it accepts this node (its list of known AE titles and
hosts). The peer is AE@HOST:PORT, or the AE title of a dicom.destinations
entry. A refused association exits 5 (forbidden), an unreachable peer 7.`,
		Example: `  medmesh dicom echo PACS@10.0.0.5:104
  medmesh dicom echo WS1                     # a dicom.destinations entry
  medmesh dicom echo ORTHANC@127.0.0.1:4242 --json | jq .seconds`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var res api.DicomEchoResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/dicom/echo", api.DicomEchoRequest{To: args[0]}, &res); err != nil {
				return err
			}
			return output(res, func() {
				say("C-ECHO %s from %s: success (%.0f ms)", res.To, res.CallingAE, res.Seconds*1000)
			})
		},
	}
}

func newDicomSendCmd() *cobra.Command {
	var req api.DicomSendRequest
	cmd := &cobra.Command{
		Use:   "send RECORD --to AE@HOST:PORT",
		Short: "Push a stored study (or one series) to a DICOM peer with C-STORE",
		Long: `Send every instance of a study this node owns or was granted (e.g. one just
received from another clinic) to a PACS or workstation with C-STORE, as this
node's AE title, each instance as stored: its transfer syntax is proposed and
nothing is transcoded. Reading another clinic's study is audited with
--purpose. Every instance is reported: sent, or failed with the peer's reason;
if any failed the command exits 7 (the report is still printed).`,
		Example: `  medmesh dicom send bafkrei... --to PACS@10.0.0.5:104
  medmesh dicom send bafkrei... --to WS1 --series 1.2.840...
  medmesh dicom send bafkrei... --to PACS@pacs.local:104 --json | jq .sent_count`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRecord(args[0]); err != nil {
				return err
			}
			if req.To == "" {
				return invalidf("name the peer: --to AE@HOST:PORT", "--to is required")
			}
			if err := checkChoice("--purpose", req.Purpose, ledger.Purposes()); err != nil {
				return err
			}
			if cmd.Flags().Changed("version") && req.Version < 1 {
				return invalidf("", "--version must be 1 or more")
			}
			req.Record = args[0]
			c, err := client()
			if err != nil {
				return err
			}
			var res api.DicomSendResult
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/dicom/send", req, &res); err != nil {
				return err
			}
			err = output(res, func() {
				say("sent %d of %d instance(s), %d bytes, of study %s to %s in %.1f s", res.Sent, res.Instances, res.Size, res.StudyUID, res.To, res.Seconds)
				for _, f := range res.Failed {
					fmt.Fprintf(os.Stderr, "failed: %s: %s\n", f.SOPInstanceUID, f.Error)
				}
			})
			if err == nil && len(res.Failed) > 0 {
				err = withCode(exitUnavailable, fmt.Errorf("%s did not store %d of %d instance(s)", res.To, len(res.Failed), res.Instances), "the report lists each instance and the peer's reason")
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.To, "to", "", "the peer: AE@HOST:PORT, or the AE title of a dicom.destinations entry")
	f.StringVar(&req.Series, "series", "", "send only this Series Instance UID")
	f.IntVar(&req.Version, "version", 0, "send this version (default: the newest you may read)")
	f.StringVar(&req.Purpose, "purpose", ledger.PurposeTreatment, "purpose of this access when the study is another node's, for the audit trail: "+strings.Join(ledger.Purposes(), ", "))
	return cmd
}
