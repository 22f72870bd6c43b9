// Command recordgen adds N small random records to a running node through
// its API, several at a time: how scripts/idle-cost.sh fills a network
// with thousands of records quickly (one `medmesh add` per record would
// spend most of its time starting processes).
//
//	go run ./scripts/recordgen -repo DIR -n 5000 -size 2048 -parallel 8
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/medmesh/medmesh/node/api"
)

func main() {
	repo := flag.String("repo", "", "the node's repo (its daemon must be running)")
	n := flag.Int("n", 1000, "records to add")
	size := flag.Int("size", 2048, "bytes per record")
	parallel := flag.Int("parallel", 8, "adds at once")
	replicas := flag.Int("replicas", 0, "replicas per record (0: the node's default)")
	flag.Parse()
	c, err := api.ClientForRepo(*repo)
	if err != nil {
		fmt.Fprintln(os.Stderr, "recordgen:", err)
		os.Exit(1)
	}
	q := url.Values{"name": {"note.txt"}, "class": {"report"}}
	if *replicas > 0 {
		q.Set("replicas", strconv.Itoa(*replicas))
	}
	var next, failed atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < *parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, *size)
			for next.Add(1) <= int64(*n) {
				rand.Read(buf)
				var res api.AddResult
				if err := c.Upload(context.Background(), api.Prefix+"/records?"+q.Encode(), bytes.NewReader(buf), int64(len(buf)), &res); err != nil {
					failed.Add(1)
					fmt.Fprintln(os.Stderr, "recordgen: add:", err)
				}
			}
		}()
	}
	wg.Wait()
	fmt.Fprintf(os.Stderr, "recordgen: %d records in %.1f s (%d failed)\n", *n, time.Since(start).Seconds(), failed.Load())
	if failed.Load() > 0 {
		os.Exit(1)
	}
}
