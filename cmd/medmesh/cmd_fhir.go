package main

import (
	"encoding/json"
	"io"
	"net/url"
	"os"

	"github.com/spf13/cobra"

	"github.com/medmesh/medmesh/internal/atomicfile"
	"github.com/medmesh/medmesh/node/api"
)

// fhirExportResult is what `fhir export --json` prints.
type fhirExportResult struct {
	Patient    string `json:"patient"`
	Path       string `json:"path"`
	EntryCount int    `json:"entry_count"`
	Size       int64  `json:"size"`
}

func newFHIRCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fhir",
		Short: "FHIR R4 for EHRs: the node's /fhir facade, and patient exports",
		Long: `The daemon serves a read-only FHIR R4 facade under /fhir on its API (same
address and token as the API, JSON as application/fhir+json): GET /fhir/metadata
is the CapabilityStatement listing exactly the resources and search parameters
it supports (Patient, Device, Procedure, ImagingStudy, DocumentReference,
Binary, Consent, AuditEvent, Endpoint); searches answer searchset Bundles paged
with _count and _offset. A Patient, and any local patient ID, appear only on
the node that knows the patient.

  curl -H "Authorization: Bearer $(cat ~/.medmesh/api.token)" \
       "http://$(cat ~/.medmesh/api)/fhir/Device?udi-di=09506000134352"`,
		Example: `  medmesh fhir export --patient P-4711 -o bundle.json`,
	}
	var patient, out string
	export := &cobra.Command{
		Use:   "export --patient ID -o bundle.json",
		Short: "Write what this node may show about a patient as one FHIR collection Bundle",
		Long: `Write the patient (as this node knows them), the devices implanted into them
and the procedures, their imaging studies and consents as one FHIR R4
collection Bundle an EHR can import. A patient this node does not know is not
found (exit 4). -o - writes the Bundle on stdout.`,
		Example: `  medmesh fhir export --patient P-4711 -o bundle.json
  medmesh fhir export --patient P-4711 -o - | jq '.entry[].resource.resourceType'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if patient == "" {
				return invalidf("", "--patient is required")
			}
			if out == "" {
				return invalidf("-o - writes it on stdout", "-o is required")
			}
			c, err := client()
			if err != nil {
				return err
			}
			var raw json.RawMessage
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/fhir/export?patient="+url.QueryEscape(patient), nil, &raw); err != nil {
				return err
			}
			var b struct {
				Entry []json.RawMessage `json:"entry"`
			}
			if err := json.Unmarshal(raw, &b); err != nil {
				return err
			}
			raw = append(raw, '\n')
			if out == "-" {
				_, err := os.Stdout.Write(raw)
				return err
			}
			if _, err := atomicfile.Write(out, 0o600, func(w io.Writer) error {
				_, err := w.Write(raw)
				return err
			}); err != nil {
				return err
			}
			r := fhirExportResult{Patient: patient, Path: out, EntryCount: len(b.Entry), Size: int64(len(raw))}
			return output(r, func() { say("wrote %s: a collection Bundle of %d resources about %s", out, r.EntryCount, patient) })
		},
	}
	export.Flags().StringVar(&patient, "patient", "", "the local patient ID")
	export.Flags().StringVarP(&out, "output", "o", "", "the file to write (- for stdout)")
	cmd.AddCommand(export)
	return cmd
}
