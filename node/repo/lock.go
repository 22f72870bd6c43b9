package repo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// LockFile is the file a daemon holds an exclusive lock on while it runs
// on the repo. It contains the daemon's process ID (for the error message
// of the next one); the lock itself, not the file, is what counts, and the
// kernel releases it when the process ends, however it ends.
const LockFile = "repo.lock"

// ErrLocked means another daemon holds the repo.
var ErrLocked = errors.New("another medmesh daemon is running on this repo")

// LockedError is ErrLocked with the holder's process ID, if it is known.
type LockedError struct {
	Dir string
	PID int // 0 if unknown
}

func (e *LockedError) Error() string {
	who := "another medmesh daemon"
	if e.PID > 0 {
		who += fmt.Sprintf(" (pid %d)", e.PID)
	}
	return fmt.Sprintf("%s is running on this repo, %s (%s)", who, e.Dir, e.Hint())
}

// Hint says what to do about it (the CLI prints it).
func (e *LockedError) Hint() string {
	return "stop it first (SIGTERM), or give this daemon another --repo"
}

func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Lock is a held repo lock.
type Lock struct {
	f    *os.File
	once sync.Once
	err  error
}

// Lock takes the repo's exclusive lock without waiting: a daemon takes it
// before it touches anything in the repo, so a second daemon fails with a
// LockedError and leaves the running one (its api file, its datastore)
// alone. The lock is released by Unlock or when the process exits.
func (r *Repo) Lock() (*Lock, error) {
	path := r.Path(LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open repo lock: %w", err)
	}
	held, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if !held {
		b, _ := os.ReadFile(path)
		f.Close()
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return nil, &LockedError{Dir: r.Dir, PID: pid}
	}
	// Ours: say who holds it. A failure here only loses the pid in a
	// later error message.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Unlock releases the lock. Calling it again, or on nil, does nothing.
func (l *Lock) Unlock() error {
	if l == nil {
		return nil
	}
	l.once.Do(func() {
		// Clearing the pid first: the file is left behind (removing it
		// could race with a daemon that just opened it), empty.
		l.f.Truncate(0)
		l.err = errors.Join(unlock(l.f), l.f.Close())
	})
	return l.err
}

// Running reports whether a daemon holds the repo's lock now, and its
// process ID (0 if unknown). It writes nothing: a command that only reads
// or edits the configuration must not disturb a starting daemon.
func (r *Repo) Running() (pid int, running bool) { return DaemonRunning(r.Dir) }

// DaemonRunning is Running for the repo in dir, without opening it.
func DaemonRunning(dir string) (pid int, running bool) {
	f, err := os.Open(filepath.Join(dir, LockFile))
	if err != nil {
		return 0, false // no daemon ever ran here
	}
	defer f.Close()
	held, err := tryLock(f)
	if err != nil {
		return 0, false
	}
	if held {
		unlock(f)
		return 0, false
	}
	b, _ := os.ReadFile(filepath.Join(dir, LockFile))
	pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, true
}
