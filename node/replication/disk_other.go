//go:build !unix

package replication

func diskFree(string) (uint64, bool) { return 0, false }
