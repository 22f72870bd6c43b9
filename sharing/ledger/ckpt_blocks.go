package ledger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/medmesh/medmesh/internal/atomicfile"
)

// A node keeps the state blocks of each scope's latest trusted checkpoint,
// to load the state from and to serve them to joiners. They are written
// once and dropped whole when the scope's next checkpoint is stored.
//
// In the node's badger database (blocks are up to a MiB, above its value
// threshold) a dropped block's bytes stay in the value log until badger's
// value-log GC rewrites the file holding them. With automatic checkpoints
// every 10,000 entries of a scope, that was most of what the periodic GC
// rewrote: at 20,000 records each node spent 1.3-1.7 s of CPU at once,
// fifteen minutes after it started, and nothing without checkpoints
// (docs/BENCHMARKS.md, issue #16 session 10). With Options.CheckpointDir
// each block is a file instead, as kubo keeps blocks in flatfs, and
// dropping a checkpoint's blocks is an unlink each: the space comes back
// at once and no later pass reads the rest of the store to find it.
//
// Order makes it crash-safe without a transaction across the two stores:
// blocks are written (and synced) before the chain row that names them is
// committed, and the older checkpoint's are deleted only after. A crash in
// between leaves extra files, which Open deletes (reconcile).

// stateBlocks holds the state blocks of each scope's latest checkpoint.
type stateBlocks interface {
	// get returns scope's block c (false if not held).
	get(ctx context.Context, scope string, c cid.Cid) ([]byte, bool, error)
	// put stores blocks of scope, each under its CID, durably.
	put(ctx context.Context, scope string, bs [][]byte) error
	// retain deletes scope's blocks that are not in keep.
	retain(ctx context.Context, scope string, keep map[cid.Cid]bool) error
}

// storeBlocks keeps state blocks as rows of the ledger's Store (tests on a
// MemStore; a node without a checkpoint directory).
type storeBlocks struct{ s Store }

func (b storeBlocks) get(ctx context.Context, scope string, c cid.Cid) ([]byte, bool, error) {
	return b.s.Get(ctx, blockPrefix(scope)+c.String())
}

func (b storeBlocks) put(ctx context.Context, scope string, bs [][]byte) error {
	if len(bs) == 0 {
		return nil
	}
	batch, err := b.s.Batch(ctx)
	if err != nil {
		return err
	}
	prefix := blockPrefix(scope)
	for _, blk := range bs {
		if err := batch.Put(prefix+blockCID(blk).String(), blk); err != nil {
			return err
		}
	}
	return batch.Commit(ctx)
}

func (b storeBlocks) retain(ctx context.Context, scope string, keep map[cid.Cid]bool) error {
	prefix := blockPrefix(scope)
	var drop []string
	if err := b.s.Scan(ctx, prefix, true, func(k string, _ []byte) bool {
		if c, err := cid.Decode(k[len(prefix):]); err != nil || !keep[c] {
			drop = append(drop, k)
		}
		return true
	}); err != nil {
		return err
	}
	if len(drop) == 0 {
		return nil
	}
	batch, err := b.s.Batch(ctx)
	if err != nil {
		return err
	}
	for _, k := range drop {
		if err := batch.Delete(k); err != nil {
			return err
		}
	}
	return batch.Commit(ctx)
}

// dirBlocks keeps state blocks as files: dir/<scope>/<CID>, where <scope>
// is "global", "owner-<peer>" or "audit-<peer>".
type dirBlocks struct{ dir string }

// scopeDir is the directory of scope's blocks.
func (d dirBlocks) scopeDir(scope string) (string, error) {
	kind, owner, err := ParseScope(scope)
	if err != nil {
		return "", err
	}
	switch kind {
	case KindGlobal:
		return filepath.Join(d.dir, ScopeGlobal), nil
	case KindOwner:
		return filepath.Join(d.dir, "owner-"+owner.String()), nil
	default:
		return filepath.Join(d.dir, "audit-"+owner.String()), nil
	}
}

// scopeOfDir is the scope a directory name under dir holds ("" and false
// for anything else).
func scopeOfDir(name string) (string, bool) {
	s := name
	if kind, rest, ok := strings.Cut(name, "-"); ok && (kind == "owner" || kind == "audit") {
		s = kind + "/" + rest
	} else if name != ScopeGlobal {
		return "", false
	}
	if _, _, err := ParseScope(s); err != nil {
		return "", false
	}
	return s, true
}

func (d dirBlocks) get(_ context.Context, scope string, c cid.Cid) ([]byte, bool, error) {
	sd, err := d.scopeDir(scope)
	if err != nil {
		return nil, false, err
	}
	b, err := os.ReadFile(filepath.Join(sd, c.String()))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("ledger: read state block: %w", err)
	}
	// Every block is checked against its CID where it is read: a file
	// damaged on disk is an error, never state.
	if got := blockCID(b); got != c {
		return nil, false, fmt.Errorf("ledger: state block file %s is damaged (its bytes hash to %s): check the disk under the repo and delete the file; the scope's next checkpoint replaces it, and until then new followers get the block from another member", filepath.Join(sd, c.String()), got)
	}
	return b, true, nil
}

func (d dirBlocks) put(_ context.Context, scope string, bs [][]byte) error {
	if len(bs) == 0 {
		return nil
	}
	sd, err := d.scopeDir(scope)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(sd, 0o700); err != nil {
		return fmt.Errorf("ledger: checkpoint directory: %w", err)
	}
	// Blocks are content-addressed: one already there is the same.
	files := make([]atomicfile.File, 0, len(bs))
	for _, blk := range bs {
		name := blockCID(blk).String()
		if fi, err := os.Lstat(filepath.Join(sd, name)); err == nil && fi.Mode().IsRegular() {
			continue
		}
		files = append(files, atomicfile.File{Name: name, Data: blk})
	}
	if err := atomicfile.WriteAll(sd, 0o600, files); err != nil {
		return fmt.Errorf("ledger: store a state block: %w", err)
	}
	return nil
}

func (d dirBlocks) retain(_ context.Context, scope string, keep map[cid.Cid]bool) error {
	sd, err := d.scopeDir(scope)
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(sd)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ledger: checkpoint directory: %w", err)
	}
	kept := 0
	for _, e := range ents {
		if c, err := cid.Decode(e.Name()); err == nil && keep[c] {
			kept++
			continue
		}
		if err := os.RemoveAll(filepath.Join(sd, e.Name())); err != nil {
			return fmt.Errorf("ledger: drop an older checkpoint's state block: %w", err)
		}
	}
	if kept == 0 {
		// Nothing of the scope is kept: the directory goes too.
		os.Remove(sd)
	}
	return nil
}

// openStateBlocks returns where this ledger keeps state blocks. With a
// checkpoint directory it first moves there the blocks an older version
// kept in the store, then deletes the files no stored chain names (a
// crash between writing a checkpoint's blocks and committing it, or
// between committing it and dropping the older one's).
func openStateBlocks(ctx context.Context, s Store, dir string) (stateBlocks, error) {
	if dir == "" {
		return storeBlocks{s}, nil
	}
	d := dirBlocks{dir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ledger: checkpoint directory: %w", err)
	}
	if err := migrateStateBlocks(ctx, s, d); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ledger: checkpoint directory: %w", err)
	}
	for _, e := range ents {
		scope, ok := scopeOfDir(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		keep, err := latestBlocks(ctx, s, scope)
		if err != nil {
			return nil, err
		}
		if err := d.retain(ctx, scope, keep); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// latestBlocks returns the blocks of scope's latest stored checkpoint (none
// without one): what a scope's blocks are cut back to when no store is
// under way (Open, a failed store).
func latestBlocks(ctx context.Context, s Store, scope string) (map[cid.Cid]bool, error) {
	chain, err := loadChain(ctx, s, scope)
	if err != nil {
		return nil, err
	}
	keep := map[cid.Cid]bool{}
	if n := len(chain); n > 0 {
		for _, c := range chain[n-1].Blocks {
			keep[c] = true
		}
	}
	return keep, nil
}

// migrateStateBlocks moves the state blocks kept as rows of s (under
// pCkptBlock and pCkptScopeBlock) to d, a batch of rows at a time.
func migrateStateBlocks(ctx context.Context, s Store, d dirBlocks) error {
	for {
		type row struct {
			key, scope string
			val        []byte
		}
		var rows []row
		var size int
		scan := func(prefix string, scopeOf func(rest string) string) error {
			return s.Scan(ctx, prefix, false, func(k string, v []byte) bool {
				rest := k[len(prefix):]
				rows = append(rows, row{k, scopeOf(rest), v})
				size += len(v)
				return size < 64<<20
			})
		}
		if err := scan(pCkptBlock, func(string) string { return ScopeGlobal }); err != nil {
			return err
		}
		if size < 64<<20 {
			if err := scan(pCkptScopeBlock, func(rest string) string {
				if i := strings.LastIndexByte(rest, '/'); i >= 0 {
					return rest[:i]
				}
				return ""
			}); err != nil {
				return err
			}
		}
		if len(rows) == 0 {
			return nil
		}
		batch, err := s.Batch(ctx)
		if err != nil {
			return err
		}
		byScope := map[string][][]byte{}
		for _, r := range rows {
			// A row that is not a block of a scope is dropped with the
			// rest: nothing reads these prefixes any more.
			if _, _, err := ParseScope(r.scope); err == nil && r.scope != "" {
				byScope[r.scope] = append(byScope[r.scope], r.val)
			}
			if err := batch.Delete(r.key); err != nil {
				return err
			}
		}
		for scope, bs := range byScope {
			if err := d.put(ctx, scope, bs); err != nil {
				return err
			}
		}
		if err := batch.Commit(ctx); err != nil {
			return fmt.Errorf("ledger: move state blocks to the checkpoint directory: %w", err)
		}
	}
}
