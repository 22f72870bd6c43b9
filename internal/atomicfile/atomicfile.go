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
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".part-*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	cw := &countWriter{w: f}
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
	return cw.n, syncDir(dir)
}

// WriteBytes writes data to path atomically.
func WriteBytes(path string, data []byte, mode os.FileMode) error {
	_, err := Write(path, mode, func(w io.Writer) error {
		_, err := io.Copy(w, bytes.NewReader(data))
		return err
	})
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}
