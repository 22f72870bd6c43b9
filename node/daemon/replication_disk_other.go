//go:build !unix

package daemon

func diskFree(string) (uint64, bool) { return 0, false }
