//go:build !linux

package dimse

// privateNetwork reports whether the tests run in a loopback-only network
// namespace (Linux only).
func privateNetwork() bool { return false }
