// Command ledgersim simulates a network of clinics in one process (issue
// #16, "Measured"): libp2p mocknet hosts, real GossipSub, real ledgers
// (sharing/ledger, real signatures and rules) on in-memory stores, and a
// seeded workload of Zipf-distributed records and reads, grants, revokes,
// and clinics joining and leaving. It reports, per ledger design, the
// entries and bytes each node stores, the bytes each sends and receives,
// propagation latencies of global and scoped entries, and the time from a
// read to the owner's audit.
//
//	go run ./scripts/ledgersim -nodes 200 -duration 60s -design single
//	go run ./scripts/ledgersim -nodes 200 -design single,scoped   # same workload and seed, side by side
//	go run ./scripts/ledgersim -nodes 20 -duration 10s -json
//
// scripts/ledgersim.sh runs the configuration of docs/BENCHMARKS.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
)

func main() { os.Exit(run()) }

func run() int {
	cfg := DefaultConfig()
	designs := flag.String("design", DesignSingle, "ledger designs to run, comma-separated, one after the other on the same workload: "+strings.Join(Designs(), ", "))
	flag.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "clinics at the start")
	flag.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "the workload's random seed")
	flag.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the workload runs")
	flag.IntVar(&cfg.Degree, "degree", cfg.Degree, "peers each clinic dials")
	flag.DurationVar(&cfg.Latency, "latency", cfg.Latency, "one-way latency of every link")
	flag.DurationVar(&cfg.SyncInterval, "sync-interval", cfg.SyncInterval, "the ledgers' periodic sync")
	flag.IntVar(&cfg.ScopeCheckpointEvery, "scope-checkpoint-every", cfg.ScopeCheckpointEvery, "owners' replica groups checkpoint a scope once it has this many entries past its latest checkpoint, and new followers load it (0: never; the node's default is 10000)")
	flag.Float64Var(&cfg.Records, "records", cfg.Records, "records announced per second, network-wide")
	flag.Float64Var(&cfg.Grants, "grants", cfg.Grants, "extra grants per second (besides the referral most new records get)")
	flag.Float64Var(&cfg.Reads, "reads", cfg.Reads, "reads per second, network-wide")
	flag.Float64Var(&cfg.Revokes, "revokes", cfg.Revokes, "revokes per second")
	flag.IntVar(&cfg.Joins, "joins", cfg.Joins, "clinics joining during the workload")
	flag.IntVar(&cfg.Leaves, "leaves", cfg.Leaves, "clinics leaving during the workload")
	flag.Float64Var(&cfg.Zipf, "zipf", cfg.Zipf, "Zipf exponent of clinic activity and record popularity (> 1)")
	flag.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "replicas per record, the owner included")
	flag.IntVar(&cfg.GossipBreaks, "gossip-breaks", cfg.GossipBreaks, "times the workload makes a clinic's GossipSub give up a connected peer (its stream reset until it stops reopening it)")
	flag.DurationVar(&cfg.GossipRepairAfter, "gossip-repair-after", cfg.GossipRepairAfter, "how long the ledger lets a connected member stay lost to GossipSub before it repairs the streams (0: the ledger's default, a minute; negative: never)")
	flag.DurationVar(&cfg.OpTimeout, "op-timeout", cfg.OpTimeout, "how long an operation waits for what it needs before it counts as failed")
	flag.DurationVar(&cfg.Settle, "settle", cfg.Settle, "how long to wait after the workload for the network to converge")
	asJSON := flag.Bool("json", false, "print the reports as JSON instead of a table")
	quiet := flag.Bool("quiet", false, "no progress lines on stderr")
	from := flag.String("from", "", "print the table of reports saved with -json (comma-separated files) instead of running")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: ledgersim [flags]\n\nSimulates clinics on one ledger network in one process and measures it (issue #16).\n\nExamples:\n"+
			"  go run ./scripts/ledgersim -nodes 200 -duration 60s\n"+
			"  go run ./scripts/ledgersim -nodes 200 -design single,scoped\n"+
			"  go run ./scripts/ledgersim -nodes 20 -duration 10s -json\n\nFlags:\n")
		flag.PrintDefaults()
	}
	gcPercent := flag.Int("gogc", 400, "the Go GC's target percentage for this process (200 nodes' heaps in one process: less GC work per allocation; each real node has its own)")
	flag.Parse()
	debug.SetGCPercent(*gcPercent)
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "ledgersim: unexpected argument %q (see -h)\n", flag.Arg(0))
		return 2
	}
	if *from != "" {
		var reps []*Report
		for _, f := range strings.Split(*from, ",") {
			b, err := os.ReadFile(f)
			if err != nil {
				fmt.Fprintln(os.Stderr, "ledgersim:", err)
				return 2
			}
			var rs []*Report
			if err := json.Unmarshal(b, &rs); err != nil {
				fmt.Fprintf(os.Stderr, "ledgersim: %s: not a -json report: %v\n", f, err)
				return 2
			}
			reps = append(reps, rs...)
		}
		if len(reps) == 0 {
			fmt.Fprintln(os.Stderr, "ledgersim: no reports in", *from)
			return 2
		}
		printReports(reps)
		return 0
	}
	if !*quiet {
		cfg.Progress = os.Stderr
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ledgersim:", err)
			return 2
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "ledgersim:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var reps []*Report
	for _, d := range strings.Split(*designs, ",") {
		c := cfg
		c.Design = strings.TrimSpace(d)
		rep, err := Run(ctx, c)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ledgersim:", err)
			if len(reps) == 0 {
				return 2
			}
			break
		}
		reps = append(reps, rep)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reps); err != nil {
			fmt.Fprintln(os.Stderr, "ledgersim:", err)
			return 1
		}
		return 0
	}
	printReports(reps)
	return 0
}

func printReports(reps []*Report) {
	for _, r := range reps {
		c := r.Config
		fmt.Printf("ledgersim %s: %d clinics, seed %d, workload %s (records %g/s, extra grants %g/s, reads %g/s, revokes %g/s, %d joins, %d leaves, Zipf %g), degree %d, latency %s, sync every %s\n",
			c.Design, c.Nodes, c.Seed, c.Duration, c.Records, c.Grants, c.Reads, c.Revokes, c.Joins, c.Leaves, c.Zipf, c.Degree, c.Latency, c.SyncInterval)
		if c.ScopeCheckpointEvery > 0 {
			fmt.Printf("  scope checkpoints every %d entries of a scope\n", c.ScopeCheckpointEvery)
		}
	}
	fmt.Println()
	PrintTable(os.Stdout, reps)
}
