//go:build !unix

package repo

import "os"

// Without flock the datastore's own directory lock is the only guard.
func tryLock(*os.File) (bool, error) { return true, nil }

func unlock(*os.File) error { return nil }
