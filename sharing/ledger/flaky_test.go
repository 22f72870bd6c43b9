package ledger

import (
	"context"
	"fmt"
	"sync"

	"github.com/ipfs/go-cid"
)

// flakyStore is a Store whose disk fails on demand: every operation, or
// only commits (a failure in the middle of a batch, after its reads).
type flakyStore struct {
	Store
	mu         sync.Mutex
	all        error
	commitOnly error
}

func (f *flakyStore) set(all, commitOnly error) {
	f.mu.Lock()
	f.all, f.commitOnly = all, commitOnly
	f.mu.Unlock()
}

func (f *flakyStore) failed(op string, commit bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.all != nil {
		return fmt.Errorf("ledger: %s: %w", op, f.all)
	}
	if commit && f.commitOnly != nil {
		return fmt.Errorf("ledger: %s: %w", op, f.commitOnly)
	}
	return nil
}

func (f *flakyStore) Get(ctx context.Context, k string) ([]byte, bool, error) {
	if err := f.failed("read "+k, false); err != nil {
		return nil, false, err
	}
	return f.Store.Get(ctx, k)
}

func (f *flakyStore) Scan(ctx context.Context, prefix string, keysOnly bool, fn func(string, []byte) bool) error {
	if err := f.failed("list "+prefix, false); err != nil {
		return err
	}
	return f.Store.Scan(ctx, prefix, keysOnly, fn)
}

func (f *flakyStore) Batch(ctx context.Context) (Batch, error) {
	if err := f.failed("start batch", false); err != nil {
		return nil, err
	}
	b, err := f.Store.Batch(ctx)
	return flakyBatch{b, f}, err
}

type flakyBatch struct {
	Batch
	f *flakyStore
}

func (b flakyBatch) Commit(ctx context.Context) error {
	if err := b.f.failed("commit", true); err != nil {
		return err
	}
	return b.Batch.Commit(ctx)
}

func (f *flakyStore) PutEntries(ctx context.Context, es []*Entry) error {
	if err := f.failed("store entries", false); err != nil {
		return err
	}
	return f.Store.PutEntries(ctx, es)
}

func (f *flakyStore) GetEntry(ctx context.Context, c cid.Cid) ([]byte, error) {
	if err := f.failed("read entry "+c.String(), false); err != nil {
		return nil, err
	}
	return f.Store.GetEntry(ctx, c)
}
