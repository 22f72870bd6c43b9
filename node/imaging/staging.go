package imaging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/medmesh/medmesh/internal/fault"
	"github.com/medmesh/medmesh/node/api"
	"github.com/medmesh/medmesh/storage/dicom"
)

// Staging collects instances that arrive as streams (STOW-RS parts, DIMSE
// C-STORE) in a private 0700 folder in the repo, one file each, so that
// Import groups them into studies exactly as `medmesh dicom import` groups
// files: several studies in one staging, a study that is already stored
// merged into a new version of it. Close removes the folder (and the
// service removes any a killed daemon left).
//
// Put and Drop may be called from several goroutines; Import and Close
// once the puts are done.
type Staging struct {
	s   *Service
	dir string
	n   atomic.Int64 // files named so far
}

// Staged is one instance written to a staging.
type Staged struct {
	Path string
	Size int64
}

// ErrTooLarge is the cause of Put's error for an instance larger than
// dicom.MaxFileSize (a fault.TooLarge).
var ErrTooLarge = fmt.Errorf("instance larger than %d bytes", int64(dicom.MaxFileSize))

// Stage opens a new, empty staging.
func (s *Service) Stage() (*Staging, error) {
	dir, err := os.MkdirTemp(s.dir, stagePrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("create staging folder: %w", err)
	}
	return &Staging{s: s, dir: dir}, nil
}

// Put writes one instance, read from r to its end, to the staging. Files
// are named in arrival order, which is the order Import meets them in (of
// two instances with one SOP Instance UID, the first is kept). It fails
// with a fault.TooLarge (ErrTooLarge) for an instance larger than
// dicom.MaxFileSize, with a fault.Invalid if reading r fails, and with an
// internal error if writing fails; nothing of the instance is left then.
// Put does not parse the instance: Import does (dicom.ParseFile reads its
// header if the caller needs it first).
func (st *Staging) Put(r io.Reader) (Staged, error) {
	path := filepath.Join(st.dir, fmt.Sprintf("part-%06d.dcm", st.n.Add(1)))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return Staged{}, err
	}
	src := &errReader{r: io.LimitReader(r, dicom.MaxFileSize+1)}
	n, err := io.Copy(f, src)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil && src.err != nil:
		err = fault.Wrap(fault.Invalid, "", src.err)
	case err == nil && n > dicom.MaxFileSize:
		err = fault.New(fault.TooLarge, "", "%w", ErrTooLarge)
	}
	if err != nil {
		os.Remove(path)
		return Staged{}, err
	}
	return Staged{Path: path, Size: n}, nil
}

// Drop removes a staged instance (one the caller refuses after reading its
// header), so Import does not store it.
func (st *Staging) Drop(sd Staged) error {
	if filepath.Dir(sd.Path) != st.dir {
		return fmt.Errorf("%s is not in this staging", sd.Path)
	}
	return os.Remove(sd.Path)
}

// Import stores what is staged (Service.Import of the staging folder).
// Files of the result are keyed by the Staged paths.
func (st *Staging) Import(ctx context.Context) (*api.DicomImportResult, error) {
	return st.s.Import(ctx, []string{st.dir})
}

// Close removes the staging folder and what is left in it.
func (st *Staging) Close() error { return os.RemoveAll(st.dir) }

// errReader remembers the error of the reader it wraps, so a failed copy
// tells a read failure from a write failure.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	if err != nil && !errors.Is(err, io.EOF) {
		e.err = err
	}
	return n, err
}
