//go:build linux

package atomicfile

import (
	"os"

	"golang.org/x/sys/unix"
)

// writebackOS asks the kernel to start writing [off, off+n) of f to disk
// without waiting (sync_file_range with SYNC_FILE_RANGE_WRITE). It only
// moves work earlier; durability still comes from the Sync before rename.
func writebackOS(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
