package p2p

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ipfs/go-cid"
)

// Provide announces on the DHT that this node holds cids. The CIDs are
// spread over a pool of at most Config.ProvideConcurrency workers, each
// doing one DHT provide (a closest-peers lookup and the provider record
// puts) at a time. It returns ErrNoPeers when the routing table is empty,
// and otherwise an error counting the CIDs that failed.
func (n *Node) Provide(ctx context.Context, cids []cid.Cid) error {
	if len(cids) == 0 {
		return nil
	}
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	if n.DHT.RoutingTable().Size() == 0 {
		return ErrNoPeers
	}
	work := make(chan cid.Cid)
	var (
		mu     sync.Mutex
		failed int
		errs   []error
		wg     sync.WaitGroup
	)
	for range min(n.cfg.ProvideConcurrency, len(cids)) {
		wg.Go(func() {
			for c := range work {
				if err := n.DHT.Provide(ctx, c, true); err != nil {
					n.metrics.provideErrors.Inc()
					mu.Lock()
					failed++
					if len(errs) < 3 {
						errs = append(errs, fmt.Errorf("%s: %w", c, err))
					}
					mu.Unlock()
					continue
				}
				n.metrics.provided.Inc()
			}
		})
	}
feed:
	for _, c := range cids {
		select {
		case work <- c:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("p2p: provide: %w", err)
	}
	if failed > 0 {
		return fmt.Errorf("p2p: provide: %d of %d CIDs failed: %w", failed, len(cids), errors.Join(errs...))
	}
	return nil
}
