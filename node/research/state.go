package research

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// DatasetStateFile, in the output folder, lists the instances a fetch has
// written and verified (one JSON object a line: path, sha256, size), so an
// interrupted fetch resumes without fetching them again.
const DatasetStateFile = ".medmesh-dataset-state.jsonl"

type stateEntry struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// fetchState is the resumable list of verified files.
type fetchState struct {
	mu   sync.Mutex
	f    *os.File
	have map[string]stateEntry
}

func openFetchState(dir string) (*fetchState, error) {
	path := filepath.Join(dir, DatasetStateFile)
	st := &fetchState{have: map[string]stateEntry{}}
	if b, err := os.ReadFile(path); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 4096), 1<<20)
		for sc.Scan() {
			var e stateEntry
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Path != "" && len(e.SHA256) == 64 {
				st.have[e.Path] = e
			} // a torn last line (crash mid-write) is ignored
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	st.f = f
	return st, nil
}

func (s *fetchState) add(e stateEntry) error {
	b, _ := json.Marshal(e)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.f.Write(append(b, '\n')); err != nil {
		return err
	}
	s.have[e.Path] = e
	return s.f.Sync()
}

func (s *fetchState) verified(dir string, rel string, sum [32]byte, size int64) bool {
	s.mu.Lock()
	e, ok := s.have[rel]
	s.mu.Unlock()
	if !ok || e.SHA256 != hex.EncodeToString(sum[:]) || e.Size != size {
		return false
	}
	// Re-hash the local file: cheap next to a fetch, and it catches a file
	// changed or truncated since.
	f, err := os.Open(filepath.Join(dir, rel))
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return err == nil && n == size && bytes.Equal(h.Sum(nil), sum[:])
}
