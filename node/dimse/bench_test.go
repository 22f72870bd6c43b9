package dimse

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkCStore measures the protocol layer alone: our SCU streams
// 530 KB data sets (the size of the benchmark series' CT instances) over
// one loopback association into our SCP, whose handler reads and discards
// them. scripts/bench-dimse.sh measures the same beside Orthanc, with real
// files and dcmtk's storescu.
func BenchmarkCStore(b *testing.B) {
	for _, pdu := range []uint32{16384, DefaultMaxPDULength} {
		b.Run(fmt.Sprintf("pdu=%d", pdu), func(b *testing.B) {
			s := &countStore{}
			_, addr := startServer(b, ServerOptions{Allowed: mustCallers(b, "SCU@*"), Store: s, MaxPDULength: pdu})
			ctx := context.Background()
			a, err := Dial(ctx, addr, ClientOptions{CallingAE: "SCU", CalledAE: "MEDMESH", MaxPDULength: pdu,
				Proposals: []Proposal{{AbstractSyntax: CTImageStorage, TransferSyntaxes: []string{ExplicitVRLittleEndian}}}})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Release(ctx)
			const size = 530 << 10
			b.SetBytes(size)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if _, err := a.Store(ctx, ctParams, &genReader{n: size}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "instances/s")
		})
	}
}

func BenchmarkDecodeAssociateRQ(b *testing.B) {
	var rq []byte
	for _, s := range loadSeeds(b, ".pdu") {
		if s[0] == TypeAssociateRQ && len(s) > len(rq) {
			rq = s // the largest recorded: getscu's, with 120-odd contexts
		}
	}
	b.SetBytes(int64(len(rq)))
	for i := 0; i < b.N; i++ {
		if _, err := DecodePDU(rq); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeCommand(b *testing.B) {
	c, _ := sampleCommands()["C-STORE-RQ"].Encode()
	for i := 0; i < b.N; i++ {
		if _, err := DecodeCommand(c); err != nil {
			b.Fatal(err)
		}
	}
}
