// Package atomicfile writes files so that a reader (or a crash) sees either
// the old file or the complete new one, never a part: the bytes go to a
// temporary file beside the target, which is synced, renamed into place, and
// the directory synced.
package atomicfile

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
)

// Write fills a new file at path through fill. On any error nothing is left
// at path (an existing file there is untouched) and the temporary file is
// removed. It returns the number of bytes written.
func Write(path string, mode os.FileMode, fill func(io.Writer) error) (int64, error) {
	n, err := place(path, mode, fill)
	if err != nil {
		return 0, err
	}
	return n, syncDir(filepath.Dir(path))
}

// place is Write but for the directory's sync: the file is complete at
// path, and the rename durable once the directory is synced.
func place(path string, mode os.FileMode, fill func(io.Writer) error) (int64, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".part-*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	cw := &countWriter{w: f, f: f}
	err = f.Chmod(mode)
	if err == nil {
		err = fill(cw)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, err
	}
	return cw.n, nil
}

// WriteBytes writes data to path atomically.
func WriteBytes(path string, data []byte, mode os.FileMode) error {
	_, err := Write(path, mode, func(w io.Writer) error {
		_, err := io.Copy(w, bytes.NewReader(data))
		return err
	})
	return err
}

// File is one file for WriteAll: its name in the directory and its bytes.
type File struct {
	Name string
	Data []byte
}

// WriteAll writes each file into dir as WriteBytes does, and syncs the
// directory once, after the last rename: for many files at once (a
// checkpoint's state blocks). On an error, the files placed before it
// stay, complete.
func WriteAll(dir string, mode os.FileMode, files []File) error {
	if len(files) == 0 {
		return nil
	}
	for _, f := range files {
		if _, err := place(filepath.Join(dir, f.Name), mode, func(w io.Writer) error {
			_, err := w.Write(f.Data)
			return err
		}); err != nil {
			return err
		}
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writebackStep is how much is written between asking the kernel to start
// writing the file back (see startWriteback). The Sync before the rename
// then finds little left: writing a 1 GiB download otherwise ended in a
// sync of all of it while nothing else ran.
const writebackStep = 8 << 20

// startWriteback is writebackOS; tests watch the calls.
var startWriteback = writebackOS

type countWriter struct {
	w      io.Writer
	f      *os.File
	n      int64
	kicked int64 // bytes whose writeback was started
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	if c.n-c.kicked >= writebackStep {
		startWriteback(c.f, c.kicked, c.n-c.kicked)
		c.kicked = c.n
	}
	return n, err
}
