//go:build unix

// Package diskspace measures what a directory occupies on disk and what is
// free on its filesystem.
package diskspace

import (
	"io/fs"
	"path/filepath"
	"syscall"
)

// Used is the space the files under dir occupy on disk, in bytes
// (allocated blocks, as du counts them: badger's value-log files are
// sparse and larger than what they hold).
func Used(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		if fi, err := e.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += int64(st.Blocks) * 512
			} else {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// Free is the space available to this user on the filesystem of dir.
func Free(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return st.Bavail * uint64(st.Bsize), true
}
