package pacs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"iter"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/medmesh/medmesh/node/dimse"
	"github.com/medmesh/medmesh/node/imaging"
	"github.com/medmesh/medmesh/storage/dicom"
)

// C-MOVE and C-GET: the identifier selects instances through the same
// query engine as C-FIND (at the image level, so the count is exact); each
// study is opened once (a granted study is fetched from the clinics that
// hold it, and the read is claimed on the ledger as `dicom export` claims
// it) and its instances are streamed from their records, as stored, byte
// for byte. While one instance is sent, the next ones are read (fetched
// and decrypted) ahead, within a window of instances and bytes: a study
// held by another clinic then costs one fetch latency, not one per
// instance.

// Read-ahead bounds: instances in flight, and their bytes held in memory.
// An instance larger than prefetchMaxInstance is not read ahead: it is
// streamed when its turn comes.
const (
	prefetchWindow      = 8
	prefetchMaxBytes    = 64 << 20
	prefetchMaxInstance = 16 << 20
)

// Move implements dimse.MoveHandler.
func (s *Service) Move(ctx context.Context, req *dimse.QueryRequest) (*dimse.Retrieval, error) {
	return s.retrieve(ctx, req)
}

// Get implements dimse.GetHandler.
func (s *Service) Get(ctx context.Context, req *dimse.QueryRequest) (*dimse.Retrieval, error) {
	return s.retrieve(ctx, req)
}

func (s *Service) retrieve(ctx context.Context, req *dimse.QueryRequest) (*dimse.Retrieval, error) {
	level, err := imaging.ParseLevel(req.Level)
	if err != nil {
		return nil, dimse.NewStatus(dimse.StatusIdentifierMismatch, err.Error())
	}
	keys := identifierKeys(req.Identifier)
	// Only the keys of the requested level and above select (PS3.4
	// C.4.2.2.1); the engine then lists the instances under them.
	for t := range keys {
		if a, ok := imaging.Attribute(t); ok && a.Level > level {
			delete(keys, t)
		}
	}
	rows, _, err := s.img.Search(ctx, imaging.Query{Level: imaging.LevelImage, Keys: keys})
	if err != nil {
		return nil, dimse.NewStatus(dimse.StatusUnableToProcess, "query failed: "+err.Error())
	}
	return &dimse.Retrieval{Count: len(rows), Instances: s.instances(ctx, rows)}, nil
}

// fetched is one instance read ahead.
type fetched struct {
	data  []byte
	err   error
	ready chan struct{}
}

// instances yields the rows' instances, opening each study once and
// reading ahead.
func (s *Service) instances(ctx context.Context, rows []*imaging.Row) iter.Seq2[dimse.Instance, error] {
	return func(yield func(dimse.Instance, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		defer func() {
			cancel()
			wg.Wait()
		}()
		// Resolve every row to its opened study and instance first (one
		// open per study; the rows come grouped by study).
		type item struct {
			o  *imaging.Opened
			in *dicom.InstanceRef
			f  *fetched
		}
		var items []item
		opened := map[string]*imaging.Opened{}
		bySOP := map[string]map[string]*dicom.InstanceRef{}
		var order []*imaging.Opened
		for _, r := range rows {
			o, ok := opened[r.RecordID]
			if !ok {
				id, err := cid.Decode(r.RecordID)
				if err == nil {
					o, err = s.img.Open(ctx, id, 0, "")
				}
				if err != nil {
					s.log.Warn("dicom: retrieve: open study", "record", r.RecordID, "err", err)
					yield(dimse.Instance{}, dimse.NewStatus(dimse.StatusOutOfResourcesSubOps, "study cannot be read: "+err.Error()))
					return
				}
				opened[r.RecordID] = o
				order = append(order, o)
				m := map[string]*dicom.InstanceRef{}
				for _, in := range o.Study.Instances() {
					m[in.SOPInstanceUID] = in
				}
				bySOP[r.RecordID] = m
			}
			in := bySOP[r.RecordID][r.Instance.SOPInstanceUID]
			if in == nil {
				// The record read is another version than the index's.
				yield(dimse.Instance{}, dimse.NewStatus(dimse.StatusOutOfResourcesSubOps, fmt.Sprintf("instance %s is not in record %s", r.Instance.SOPInstanceUID, o.Info.ID)))
				return
			}
			items = append(items, item{o: o, in: in})
		}
		defer func() {
			for _, o := range order {
				s.img.ReadDone(ctx, o, "")
			}
		}()
		// Read ahead: start fetches up to the window and the byte budget.
		next, inFlight := 0, int64(0)
		var mu sync.Mutex
		release := func(n int64) {
			mu.Lock()
			inFlight -= n
			mu.Unlock()
		}
		startAhead := func(from int) {
			for next < len(items) && next < from+prefetchWindow {
				it := &items[next]
				size := it.o.Size(it.in)
				mu.Lock()
				room := inFlight+size <= prefetchMaxBytes
				if room && size <= prefetchMaxInstance {
					inFlight += size
				}
				mu.Unlock()
				if size > prefetchMaxInstance {
					next++ // streamed in its turn
					continue
				}
				if !room {
					return
				}
				f := &fetched{ready: make(chan struct{})}
				it.f = f
				wg.Add(1)
				go func(o *imaging.Opened, in *dicom.InstanceRef) {
					defer wg.Done()
					defer close(f.ready)
					var buf bytes.Buffer
					buf.Grow(int(size))
					f.err = s.img.WriteInstance(ctx, o, in, &buf)
					f.data = buf.Bytes()
				}(it.o, it.in)
				next++
			}
		}
		for i := range items {
			startAhead(i)
			it := items[i]
			inst := dimse.Instance{SOPClassUID: it.in.SOPClassUID, SOPInstanceUID: it.in.SOPInstanceUID,
				TransferSyntaxUID: it.in.TransferSyntax, Part10: true}
			if f := it.f; f != nil {
				size := it.o.Size(it.in)
				inst.Open = func(ctx context.Context) (io.ReadCloser, error) {
					select {
					case <-f.ready:
					case <-ctx.Done():
						return nil, ctx.Err()
					}
					if f.err != nil {
						return nil, f.err
					}
					return &releaser{Reader: bytes.NewReader(f.data), done: func() { f.data = nil; release(size) }}, nil
				}
			} else {
				o, in := it.o, it.in
				inst.Open = func(ctx context.Context) (io.ReadCloser, error) { return s.img.OpenInstance(ctx, o, in), nil }
			}
			if !yield(inst, nil) {
				return
			}
		}
	}
}

// releaser gives a read-ahead instance's bytes back to the budget when
// the server closes it.
type releaser struct {
	*bytes.Reader
	once sync.Once
	done func()
}

func (r *releaser) Close() error {
	r.once.Do(r.done)
	return nil
}
