package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/medmesh/medmesh/node/api"
)

func newImplantCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "implant",
		Short: "Trace implants from distributor to patient, and recall them",
		Long: `Implant traceability on the ledger. A distributor's (or a hospital's) node
registers a device by its UDI and becomes its custodian; only the custodian
transfers it to another member or, at a hospital, implants it into a patient;
a device is implanted once, never after its expiry and never while recalled.
The registrant of a device, or a manufacturer an admin authorized, recalls
it by DI (GTIN), lot and serial; every node sees the recall.

Patients stay on the implanting node: the ledger gets only a keyed pseudonym
of the local patient ID; the patient and procedure are sealed in this node's
local store, so 'implant recalls' names the patient here and nowhere else.

A DEVICE is the ID 'implant register' prints (also in 'implant ls').`,
		Example: `  medmesh implant register --udi '(01)09506000134352(17)301231(10)LOT42(21)SN0001'
  medmesh implant transfer bafkrei... --to 12D3KooW...
  medmesh implant use bafkrei... --patient P-4711 --procedure 'L4-L5 fusion'
  medmesh implant recall --gtin 09506000134352 --lot LOT42 --reason 'FSCA-2026-017: screw fracture'
  medmesh implant recalls --json`,
	}
	cmd.AddCommand(newImplantRegisterCmd(), newImplantTransferCmd(), newImplantUseCmd(), newImplantExplantCmd(),
		newImplantHistoryCmd(), newImplantLsCmd(), newImplantRecallCmd(), newImplantRecallsCmd(),
		newImplantAuthorizeCmd(), newImplantManufacturersCmd())
	return cmd
}

// deviceArg parses a DEVICE argument.
func deviceArg(s string) (cid.Cid, error) {
	c, err := cid.Decode(s)
	if err != nil {
		return cid.Undef, invalidf("a DEVICE is the ID `medmesh implant register` printed (bafkrei…); `medmesh implant ls` lists them", "%q is not a device ID", s)
	}
	return c, nil
}

// deviceCall posts req to /implants/DEVICE/what and prints the device.
func deviceCall(cmd *cobra.Command, dev, what string, req any, done string) error {
	id, err := deviceArg(dev)
	if err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	var d api.ImplantDevice
	if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/implants/"+id.String()+"/"+what, req, &d); err != nil {
		return err
	}
	return output(d, func() { say("%s %s", done, d.Device); printDevice(d) })
}

func newImplantRegisterCmd() *cobra.Command {
	var udi string
	c := &cobra.Command{
		Use:   "register --udi UDI",
		Short: "Register a device by its UDI; this node becomes its custodian",
		Long: `Register a device by the UDI on its label: GS1 human-readable
((01)GTIN(11)produced(17)expiry(10)lot(21)serial), GS1 as a scanner sends it
(AIs concatenated, GS-separated; type <GS> for the separator), or HIBCC
(+LIC PCN U/$$... with its check character). A malformed UDI or a wrong check
digit is refused (exit 2); a serialized UDI is registered once (exit 6).`,
		Example: `  medmesh implant register --udi '(01)09506000134352(17)301231(10)LOT42(21)SN0001'
  medmesh implant register --udi '01095060001343521730123110LOT42<GS>21SN0001' --json
  medmesh implant register --udi '+A123BJC5D6E71G'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(udi) == "" {
				return invalidf("", "--udi: give the device's UDI")
			}
			c, err := client()
			if err != nil {
				return err
			}
			var d api.ImplantDevice
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/implants", api.ImplantRegisterRequest{UDI: udi}, &d); err != nil {
				return err
			}
			return output(d, func() { say("registered device %s", d.Device); printDevice(d) })
		},
	}
	c.Flags().StringVar(&udi, "udi", "", "the device's UDI, as printed or scanned")
	return c
}

func newImplantTransferCmd() *cobra.Command {
	var to string
	c := &cobra.Command{
		Use:   "transfer DEVICE --to PEER",
		Short: "Hand a device over to another member (custodian only)",
		Long: `Hand a device over to another member, which becomes its custodian. Only the
current custodian can (exit 5 otherwise), and not while it is implanted.`,
		Example: `  medmesh implant transfer bafkrei... --to 12D3KooW...
  medmesh implant transfer bafkrei... --to 12D3KooW... --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := peer.Decode(to); err != nil {
				return invalidf("peer IDs look like 12D3KooW…; `medmesh members` lists them", "--to %q is not a peer ID", to)
			}
			return deviceCall(cmd, args[0], "transfer", api.ImplantTransferRequest{Receiver: to}, "transferred device")
		},
	}
	c.Flags().StringVar(&to, "to", "", "the receiving member's peer ID")
	return c
}

func newImplantUseCmd() *cobra.Command {
	var req api.ImplantUseRequest
	c := &cobra.Command{
		Use:   "use DEVICE --patient LOCALID --procedure TEXT",
		Short: "Record that this node's hospital implanted a device into a patient",
		Long: `Record an implantation. Only the custodian can (exit 5), once per device, not
after the device's expiry and not while a recall covers it (exit 6).

--patient is this hospital's own patient ID and --procedure free text: both
stay on this node, sealed in its local store. The ledger gets a pseudonym of
the patient keyed with this node's implant.key, which no other node can
compute or reverse.`,
		Example: `  medmesh implant use bafkrei... --patient P-4711 --procedure 'L4-L5 posterior fusion, pedicle screw L4 left'
  medmesh implant use bafkrei... --patient P-4711 --procedure 'hip arthroplasty' --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.Patient == "" || req.Procedure == "" {
				return invalidf("", "--patient and --procedure are required")
			}
			return deviceCall(cmd, args[0], "use", req, "implanted device")
		},
	}
	c.Flags().StringVar(&req.Patient, "patient", "", "the local patient ID (stays on this node)")
	c.Flags().StringVar(&req.Procedure, "procedure", "", "the procedure (stays on this node)")
	return c
}

func newImplantExplantCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "explant DEVICE",
		Short: "Record that an implanted device was removed (custodian only)",
		Long: `Record the removal of an implanted device. Only its custodian (the hospital
that implanted it) can; an explanted device is never implanted again.`,
		Example: `  medmesh implant explant bafkrei...
  medmesh implant explant bafkrei... --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return deviceCall(cmd, args[0], "explant", struct{}{}, "explanted device")
		},
	}
}

func newImplantHistoryCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "history DEVICE",
		Short: "Show a device, its custody chain and its recalls",
		Long: `Show a device: its UDI, custodian and status, every custody entry from its
registration on (an entry marked superseded lost a fork of the chain that only
a modified node makes, and has no effect), and the recalls that cover it. The
patient appears only on the node that implanted it.`,
		Example: `  medmesh implant history bafkrei...
  medmesh implant history bafkrei... --json | jq '.history[] | .type'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := deviceArg(args[0])
			if err != nil {
				return err
			}
			c, err := client()
			if err != nil {
				return err
			}
			var d api.ImplantDevice
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/implants/"+id.String(), nil, &d); err != nil {
				return err
			}
			return output(d, func() {
				say("device %s", d.Device)
				printDevice(d)
				tw := tabwriter.NewWriter(os.Stdout, 0, 2, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tEVENT\tAUTHOR\tRECEIVER\tENTRY")
				for _, ev := range d.History {
					kind := ev.Type
					if ev.Superseded {
						kind += " (superseded)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ev.Time.Format(time.RFC3339), kind, ev.Author, orDash(ev.Receiver), ev.Entry)
				}
				tw.Flush()
			})
		},
	}
}

func newImplantLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the devices on the ledger",
		Example: `  medmesh implant ls
  medmesh implant ls --json | jq '.[] | select(.status == "implanted")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			ds := []api.ImplantDevice{}
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/implants", nil, &ds); err != nil {
				return err
			}
			return output(ds, func() { printDevices(ds) })
		},
	}
}

func newImplantRecallCmd() *cobra.Command {
	var req api.ImplantRecallRequest
	c := &cobra.Command{
		Use:   "recall --gtin GTIN [--lot L] [--serial S] --reason TEXT [--as registrant|manufacturer]",
		Short: "Recall devices by DI (GTIN), lot and serial",
		Long: `Recall the devices of a device identifier (a GS1 GTIN-14, or a HIBCC
labeler+product+unit code), narrowed by --lot and --serial. As registrant (the
default) it covers the devices this node registered; as manufacturer, every
matching device, once an admin ran 'implant authorize' for this node. Anyone
else is refused (exit 5).

The reason is the recall notice every member reads: it is on the ledger in
clear, so it must name no patient.`,
		Example: `  medmesh implant recall --gtin 09506000134352 --lot LOT42 --reason 'FSCA-2026-017: screw fracture'
  medmesh implant recall --gtin 09506000134352 --reason 'field safety notice FSN-12' --as manufacturer --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.DI == "" || strings.TrimSpace(req.Reason) == "" {
				return invalidf("", "--gtin and --reason are required")
			}
			if err := checkChoice("--as", req.As, []string{"registrant", "manufacturer"}); err != nil {
				return err
			}
			c, err := client()
			if err != nil {
				return err
			}
			var r api.ImplantRecall
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/implants/recalls", req, &r); err != nil {
				return err
			}
			return output(r, func() { printRecall(r) })
		},
	}
	c.Flags().StringVar(&req.DI, "gtin", "", "the device identifier: GTIN-14 (GS1) or HIBCC code")
	c.Flags().StringVar(&req.Lot, "lot", "", "only this lot")
	c.Flags().StringVar(&req.Serial, "serial", "", "only this serial number")
	c.Flags().StringVar(&req.Reason, "reason", "", "the recall notice (on the ledger in clear)")
	c.Flags().StringVar(&req.As, "as", "registrant", "registrant or manufacturer")
	return c
}

func newImplantRecallsCmd() *cobra.Command {
	var mine bool
	c := &cobra.Command{
		Use:   "recalls [--mine]",
		Short: "List recalls and the devices they cover (patients resolved only here)",
		Long: `List every recall, newest first, with the devices it covers: custodian,
status, and, for the devices this node implanted, the local patient and the
procedure. Other nodes see the recall and the devices, never the patient.
--mine keeps only this node's devices (registered, held or implanted here).`,
		Example: `  medmesh implant recalls
  medmesh implant recalls --mine --json | jq -r '.[].devices[] | select(.patient) | .patient'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			rs := []api.ImplantRecall{}
			path := api.Prefix + "/implants/recalls"
			if mine {
				path += "?mine=true"
			}
			if err := c.Do(ctxOf(cmd), "GET", path, nil, &rs); err != nil {
				return err
			}
			return output(rs, func() {
				if len(rs) == 0 {
					say("no recalls")
				}
				for _, r := range rs {
					printRecall(r)
				}
			})
		},
	}
	c.Flags().BoolVar(&mine, "mine", false, "only this node's devices")
	return c
}

func newImplantAuthorizeCmd() *cobra.Command {
	var req api.ImplantAuthorizeRequest
	c := &cobra.Command{
		Use:   "authorize PEER --prefix PREFIX [--revoke]",
		Short: "Let a member recall as the manufacturer of a GS1 company prefix or HIBCC labeler code (admin)",
		Long: `Authorize a member to recall every device whose DI has PREFIX, as their
manufacturer: a GS1 company prefix (6 to 12 digits, as in the GTIN-13, i.e.
the GTIN-14 without its first digit) or a HIBCC labeler code. Only an admin
can (exit 5). --revoke withdraws it.`,
		Example: `  medmesh implant authorize 12D3KooW... --prefix 9506000
  medmesh implant authorize 12D3KooW... --prefix 9506000 --revoke --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := peer.Decode(args[0]); err != nil {
				return invalidf("peer IDs look like 12D3KooW…; `medmesh members` lists them", "%q is not a peer ID", args[0])
			}
			if req.Prefix == "" {
				return invalidf("", "--prefix is required")
			}
			req.Peer = args[0]
			c, err := client()
			if err != nil {
				return err
			}
			var a api.ImplantAuthorization
			if err := c.Do(ctxOf(cmd), "POST", api.Prefix+"/implants/manufacturers", req, &a); err != nil {
				return err
			}
			verb := "authorized"
			if req.Revoke {
				verb = "withdrew the authorization of"
			}
			return output(a, func() { say("%s %s as manufacturer of %s (entry %s)", verb, a.Peer, a.Prefix, a.Entry) })
		},
	}
	c.Flags().StringVar(&req.Prefix, "prefix", "", "GS1 company prefix or HIBCC labeler code")
	c.Flags().BoolVar(&req.Revoke, "revoke", false, "withdraw the authorization")
	return c
}

func newImplantManufacturersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "manufacturers",
		Short: "List the members authorized to recall as manufacturers",
		Example: `  medmesh implant manufacturers
  medmesh implant manufacturers --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			as := []api.ImplantAuthorization{}
			if err := c.Do(ctxOf(cmd), "GET", api.Prefix+"/implants/manufacturers", nil, &as); err != nil {
				return err
			}
			return output(as, func() {
				tw := tabwriter.NewWriter(os.Stdout, 0, 2, 2, ' ', 0)
				fmt.Fprintln(tw, "PEER\tISSUER\tPREFIX")
				for _, a := range as {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Peer, a.Issuer, a.Prefix)
				}
				tw.Flush()
			})
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printDevice(d api.ImplantDevice) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintf(tw, "  udi\t%s\n  status\t%s\n  custodian\t%s\n  registrant\t%s\n", d.UDI, d.Status, d.Custodian, d.Registrant)
	if d.Expiry != nil {
		fmt.Fprintf(tw, "  expiry\t%s\n", *d.Expiry)
	}
	if !d.Implanted.IsZero() {
		fmt.Fprintf(tw, "  implanted\t%s by %s\n", d.Implanted.Format(time.RFC3339), d.Implanter)
	}
	if d.Patient != "" {
		fmt.Fprintf(tw, "  patient\t%s (local)\n  procedure\t%s\n", d.Patient, d.Procedure)
	}
	if d.Recalled {
		fmt.Fprintf(tw, "  RECALLED\t%s\n", strings.Join(d.Recalls, ", "))
	}
	tw.Flush()
}

func printDevices(ds []api.ImplantDevice) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tDI\tLOT\tSERIAL\tSTATUS\tCUSTODIAN\tPATIENT")
	for _, d := range ds {
		status := d.Status
		if d.Recalled {
			status += ",RECALLED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Device, d.DI, orDash(d.Lot), orDash(d.Serial), status, d.Custodian, orDash(d.Patient))
	}
	tw.Flush()
}

func printRecall(r api.ImplantRecall) {
	scope := r.DI
	if r.Lot != "" {
		scope += " lot " + r.Lot
	}
	if r.Serial != "" {
		scope += " serial " + r.Serial
	}
	say("recall %s of %s by %s (as %s), %s: %s", r.Recall, scope, r.Author, r.As, r.Time.Format(time.RFC3339), r.Reason)
	say("  %d device(s):", r.Count)
	printDevices(r.Devices)
}
