package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/devnet"
	"github.com/medmesh/medmesh/storage/dicom/dicomtest"
	"github.com/spf13/cobra"
)

func newDemoCmd() *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a three-node network on this machine with sample data, and show what happens",
		Long: `Start a clinic, a radiology department and a hospital as three real nodes on
127.0.0.1 in a temporary directory, share a sample record between them through
the DHT and the ledger, and print what happened. Nothing outside the temporary
directory is touched; it is removed at the end unless --keep. With --json it
prints {"steps": [...], "seconds": ..., "dir": ...} at the end ("dir" is null
unless --keep).`,
		Example: `  medmesh demo
  medmesh demo --keep --json | jq -r .dir`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := os.MkdirTemp("", "medmesh-demo-")
			if err != nil {
				return err
			}
			if !keep {
				defer os.RemoveAll(dir)
			}
			if !g.json {
				return runDemo(cmd.Context(), dir, os.Stdout)
			}
			var buf bytes.Buffer
			start := time.Now()
			if err := runDemo(cmd.Context(), dir, &buf); err != nil {
				return err
			}
			res := demoResult{Steps: []string{}, Seconds: time.Since(start).Seconds()}
			for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				res.Steps = append(res.Steps, strings.TrimPrefix(l, "• "))
			}
			if keep {
				res.Dir = &dir
			}
			return printJSON(res)
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the demo's repos (printed) instead of removing them")
	return cmd
}

// demoResult is what `demo --json` prints.
type demoResult struct {
	Steps   []string `json:"steps"`
	Seconds float64  `json:"seconds"`
	Dir     *string  `json:"dir"` // the kept repos (--keep), else null
}

// runDemo is the demo's story; tests run it too.
func runDemo(ctx context.Context, dir string, out io.Writer) error {
	logger := slog.New(slog.DiscardHandler)
	if g.verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	step := func(format string, args ...any) { fmt.Fprintf(out, "• "+format+"\n", args...) }
	start := time.Now()
	net, err := devnet.Start(ctx, dir, []string{"clinic", "radiology", "hospital"}, devnet.Options{Logger: logger})
	if err != nil {
		return err
	}
	defer net.Close()
	clinic, radiology, hospital := net.Nodes[0], net.Nodes[1], net.Nodes[2]
	step("started 3 nodes on 127.0.0.1 in %s (%.1fs): clinic (network admin), radiology, hospital", dir, time.Since(start).Seconds())
	step("private network: pre-shared key, members admitted on the signed ledger; hospital knows only the clinic's address")

	// A sample report: a FHIR DiagnosticReport followed by filler so that it
	// spans several encrypted chunks.
	report := sampleReport(6 << 20)
	var added api.AddResult
	q := url.Values{"name": {"ct-report.json"}, "type": {"application/fhir+json"}, "class": {"report"}}
	if err := radiology.API.Upload(ctx, api.Prefix+"/records?"+q.Encode(), bytes.NewReader(report), int64(len(report)), &added); err != nil {
		return fmt.Errorf("radiology add: %w", err)
	}
	step("radiology added a %.1f MB report: record %s, %d encrypted chunks; providers see only ciphertext", float64(added.Size)/1e6, added.ID, added.Chunks)

	var gr api.Grant
	if err := radiology.API.Do(ctx, "POST", api.Prefix+"/records/"+added.ID+"/grants", api.GrantRequest{To: hospital.ID.String(), Purpose: "treatment", Expires: "72h"}, &gr); err != nil {
		return fmt.Errorf("grant: %w", err)
	}
	step("radiology granted it to the hospital for treatment (key wrapped with ML-KEM-768+X25519 HPKE, expires in 72h)")
	if err := net.WaitLedgerSync(ctx, 15*time.Second); err != nil {
		return err
	}

	var got bytes.Buffer
	t0 := time.Now()
	if _, err := hospital.API.Download(ctx, api.Prefix+"/records/"+added.ID+"/content?purpose=treatment", &got); err != nil {
		return fmt.Errorf("hospital get: %w", err)
	}
	same := sha256.Sum256(got.Bytes()) == sha256.Sum256(report)
	step("hospital found radiology through the DHT, fetched and verified every block, decrypted: %d bytes in %.2fs, identical: %v", got.Len(), time.Since(t0).Seconds(), same)
	if !same {
		return fmt.Errorf("the hospital's copy differs from the original")
	}

	err = clinic.API.DownloadRaw(ctx, api.Prefix+"/records/"+added.ID+"/content", io.Discard)
	if err == nil {
		return fmt.Errorf("the clinic read a record it was not granted")
	}
	step("clinic, without a grant, was refused: %s", strings.SplitN(err.Error(), ":", 2)[0])

	if err := net.WaitLedgerSync(ctx, 15*time.Second); err != nil {
		return err
	}
	// The node that served the read attests it within about a second.
	var evs []api.AccessEvent
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := radiology.API.Do(ctx, "GET", api.Prefix+"/records/"+added.ID+"/audit", nil, &evs); err != nil {
			return err
		}
		if len(evs) > 0 && len(evs[0].AttestedBy) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, e := range evs {
		var by []string
		for _, p := range e.AttestedBy {
			by = append(by, name(net, p))
		}
		step("audit trail on the ledger: %s read version %d for %s at %s, attested by %s (not only the reader's word)",
			name(net, e.Reader), e.Version, e.Purpose, e.Time.Format(time.TimeOnly), strings.Join(by, ", "))
	}
	if err := demoImaging(ctx, net, dir, step); err != nil {
		return err
	}

	var h1, h2 api.Heads
	radiology.API.Do(ctx, "GET", api.Prefix+"/ledger/heads", nil, &h1)
	clinic.API.Do(ctx, "GET", api.Prefix+"/ledger/heads", nil, &h2)
	step("ledger state digest radiology %s… = clinic %s…: %v", h1.State[:12], h2.State[:12], h1.State == h2.State)
	step("done in %.1fs; stopping the nodes", time.Since(start).Seconds())
	return nil
}

func name(n *devnet.Net, id string) string {
	for _, nd := range n.Nodes {
		if nd.ID.String() == id {
			return nd.Name
		}
	}
	return id
}

// sampleReport is synthetic: no real patient.
func sampleReport(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"DiagnosticReport","status":"final","code":{"text":"CT chest"},` +
		`"subject":{"display":"DEMO^PATIENT1 (synthetic)"},"conclusion":"No acute findings.","presentedForm":[{"data":"`)
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for b.Len() < size-3 {
		b.WriteByte(alphabet[r.IntN(len(alphabet))])
	}
	b.WriteString(`"}]}`)
	return b.Bytes()
}

// demoImaging: radiology imports a synthetic CT study, shares it, the
// hospital exports it byte for byte, radiology makes a de-identified copy.
func demoImaging(ctx context.Context, net *devnet.Net, dir string, step func(string, ...any)) error {
	radiology, hospital := net.Nodes[1], net.Nodes[2]
	src := filepath.Join(dir, "modality-out")
	files, err := dicomtest.WriteStudy(src, dicomtest.Options{SeriesPerStudy: 2, InstancesPerSeries: 24, Rows: 256, Cols: 256, Modality: "CT", Seed: 7})
	if err != nil {
		return err
	}
	var imp api.DicomImportResult
	if err := radiology.API.Do(ctx, "POST", api.Prefix+"/dicom/import", api.DicomImportRequest{Paths: []string{src}}, &imp); err != nil {
		return fmt.Errorf("dicom import: %w", err)
	}
	if len(imp.Studies) != 1 {
		return fmt.Errorf("dicom import: %d studies, want 1", len(imp.Studies))
	}
	study := imp.Studies[0]
	step("radiology imported a synthetic CT study: %d series, %d instances, one encrypted record %s", study.Series, study.Instances, study.ID)
	if err := radiology.API.Do(ctx, "POST", api.Prefix+"/records/"+study.ID+"/grants", api.GrantRequest{To: hospital.ID.String(), Purpose: "treatment", Expires: "24h"}, nil); err != nil {
		return fmt.Errorf("grant study: %w", err)
	}
	if err := net.WaitLedgerSync(ctx, 15*time.Second); err != nil {
		return err
	}
	out := filepath.Join(dir, "hospital-export")
	var exp api.DicomExportResult
	if err := hospital.API.Do(ctx, "POST", api.Prefix+"/dicom/export", api.DicomExportRequest{Record: study.ID, Dir: out, Purpose: "treatment"}, &exp); err != nil {
		return fmt.Errorf("dicom export: %w", err)
	}
	same := len(exp.Files) == len(files)
	orig := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		orig[string(sha256Sum(b))] = b
	}
	for _, f := range exp.Files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if _, ok := orig[string(sha256Sum(b))]; !ok {
			same = false
		}
	}
	step("hospital exported it after the grant: %d files in Study/Series/Instance layout, byte for byte identical: %v", len(exp.Files), same)
	if !same {
		return fmt.Errorf("the hospital's export differs from the modality's files")
	}
	var deid api.DicomDeidResult
	if err := radiology.API.Do(ctx, "POST", api.Prefix+"/dicom/deidentify", api.DicomDeidRequest{Record: study.ID, ShiftDates: true}, &deid); err != nil {
		return fmt.Errorf("de-identify: %w", err)
	}
	step("radiology made a de-identified copy for research (PS3.15 basic profile, UIDs remapped, dates shifted): record %s, %d instances", deid.ID, deid.Instances)
	return nil
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
