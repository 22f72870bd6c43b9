//go:build unix

package gc

import (
	"io/fs"
	"path/filepath"
	"syscall"
)

// DiskUsage is the space the files under dir occupy on disk, in bytes
// (allocated blocks, as du counts them: badger's value-log files are
// sparse and larger than what they hold).
func DiskUsage(dir string) int64 {
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
