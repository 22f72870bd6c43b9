//go:build !unix

package gc

import (
	"io/fs"
	"path/filepath"
)

// DiskUsage is the size of the files under dir, in bytes.
func DiskUsage(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
