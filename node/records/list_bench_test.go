package records_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/node/records"
)

// BenchmarkList: `ls --json` of N records a node owns
// (MEDMESH_BENCH_RECORDS, default 20,000; small records added through
// the service, on badger as a daemon keeps them; a tenth of them with
// their root block deleted, so not held), and the answer written.
// "before": held asked of the blockstore one record at a time (the
// service without Config.HasAll) and each row through encoding/json, as
// ls was before the blocks' marks; "after": held from one walk of the
// marks, as the daemon asks it, and the rows through api.JSONList.
func BenchmarkList(b *testing.B) {
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("MEDMESH_BENCH_RECORDS")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	tn := newDiskNet(b, 1)
	a := tn.nodes[0]
	start := time.Now()
	data := randomBytes(2048)
	for i := range n {
		data[0], data[1], data[2] = byte(i), byte(i>>8), byte(i>>16)
		id := a.add(b, "note.txt", data).ID
		if i%10 == 0 {
			if err := a.store.DeleteBlock(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := a.disk.FlushMemtables(ctx); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d records added in %.1f s", n, time.Since(start).Seconds())
	one, err := records.New(ctx, records.Config{
		Self: a.id, KEM: a.kem, Ledger: a.bus(), Blocks: a.store, Durable: syncer{a}, Local: a.local,
		BeginAdd: a.adds.begin, Now: tn.clock.Now,
	})
	if err != nil {
		b.Fatal(err)
	}
	held := n - (n+9)/10
	for _, c := range []struct {
		name   string
		svc    *records.Service
		encode func([]api.Record)
	}{{"before", one, encodingJSON}, {"after", a.svc, func(l []api.Record) { api.JSONList(discard{}, http.StatusOK, l) }}} {
		b.Run(fmt.Sprintf("%s/records=%d", c.name, n), func(b *testing.B) {
			for range b.N {
				list, err := c.svc.List(ctx)
				if err != nil {
					b.Fatal(err)
				}
				count := 0
				for _, r := range list {
					if r.Held {
						count++
					}
				}
				if len(list) != n || count != held {
					b.Fatalf("%d records, %d held; want %d, %d", len(list), count, n, held)
				}
				c.encode(list)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
		})
	}
}

// encodingJSON writes list as api.JSONList did before a Record wrote
// itself: each row through json.MarshalIndent.
func encodingJSON(list []api.Record) {
	w := bufio.NewWriterSize(io.Discard, 64<<10)
	w.WriteString("[\n")
	for i := range list {
		b, err := json.MarshalIndent(&list[i], "  ", "  ")
		if err != nil {
			panic(err)
		}
		w.WriteString("  ")
		w.Write(b)
		w.WriteString(",\n")
	}
	w.WriteString("]\n")
	w.Flush()
}

// discard is a ResponseWriter that keeps nothing.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) WriteHeader(int)             {}
