//go:build !linux

package blockstore

func (s *Store) startTrimmer(dir string) {}
