//go:build linux

package dimse

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"unsafe"
)

// The interop tests start third-party servers (dcmtk's storescp, Orthanc)
// that cannot be told to listen on loopback only. So the test binary runs
// itself in a private network namespace that has nothing but loopback
// when it can (root, or unprivileged user namespaces); otherwise on the
// host network, with random high ports and (for Orthanc) a configuration
// that refuses remote callers.

const netnsEnv = "MEDMESH_DIMSE_NETNS"

func TestMain(m *testing.M) {
	switch os.Getenv(netnsEnv) {
	case "":
		if code, ok := runInNetns(); ok {
			os.Exit(code)
		}
		os.Setenv(netnsEnv, "host")
	case "private":
		if err := loopbackUp(); err != nil {
			fmt.Fprintf(os.Stderr, "dimse tests: bringing loopback up in the private network namespace: %v\n", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// runInNetns re-executes the test binary under unshare(1) in a new network
// namespace. ok is false when that is not possible.
func runInNetns() (int, bool) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return 0, false
	}
	flags := []string{"--net"}
	if os.Geteuid() != 0 {
		flags = []string{"--net", "--map-root-user"}
	}
	if exec.Command(unshare, append(flags, "true")...).Run() != nil {
		return 0, false
	}
	exe, err := os.Executable()
	if err != nil {
		return 0, false
	}
	cmd := exec.Command(unshare, append(append(flags, "--"), append([]string{exe}, os.Args[1:]...)...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), netnsEnv+"=private")
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), true
		}
		fmt.Fprintf(os.Stderr, "dimse tests: running in a private network namespace: %v\n", err)
		return 1, true
	}
	return 0, true
}

// loopbackUp sets the loopback interface up (a new namespace starts with
// it down).
func loopbackUp() error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	var ifr struct {
		name  [syscall.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	copy(ifr.name[:], "lo")
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCGIFFLAGS, uintptr(unsafe.Pointer(&ifr))); e != 0 {
		return e
	}
	ifr.flags |= syscall.IFF_UP | syscall.IFF_RUNNING
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCSIFFLAGS, uintptr(unsafe.Pointer(&ifr))); e != 0 {
		return e
	}
	return nil
}

// privateNetwork reports whether the tests run in a loopback-only namespace.
func privateNetwork() bool { return os.Getenv(netnsEnv) == "private" }
