package record

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Run with: go test -run XXX -bench . -benchtime 6x -count 3 ./storage/record/
// Figures measured on the development machine are next to DefaultChunkSize
// (ingest and read) and in crypto.go (AEAD choice).

const benchSize = 64 << 20

// repeatReader yields n bytes cycling over a random buffer, so the
// benchmark measures sealing and storing rather than generating input.
type repeatReader struct {
	src []byte
	off int
	n   int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	n := copy(p, r.src[r.off:])
	r.off = (r.off + n) % len(r.src)
	r.n -= int64(n)
	return n, nil
}

var benchSrc = randBytes(42, 4<<20+17)

func benchStores(b *testing.B) map[string]func() BlockPutter {
	return map[string]func() BlockPutter{
		"badger":  func() BlockPutter { return openStore(b).Blocks },
		"mem":     func() BlockPutter { return newMemStore() },
		"discard": func() BlockPutter { return &discard{} },
	}
}

// BenchmarkIngest: chunk + encrypt + hash + store a 64 MiB stream.
func BenchmarkIngest(b *testing.B) {
	for _, store := range []string{"badger", "mem", "discard"} {
		for _, cs := range []int{256 << 10, 512 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("%s/chunk=%dKiB", store, cs>>10), func(b *testing.B) {
				bs := benchStores(b)[store]()
				loop(b, benchSize, func() {
					if m, ok := bs.(*memStore); ok {
						clear(m.m) // keep the heap flat
					}
					key, _ := NewKey()
					bl := NewBuilder(bs, key, Options{ChunkSize: cs})
					if _, err := bl.AddFile(context.Background(), "f", &repeatReader{src: benchSrc, n: benchSize}); err != nil {
						b.Fatal(err)
					}
					if _, err := bl.Finish(context.Background(), Header{Kind: "file"}); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
	}
}

// BenchmarkRead: fetch + verify + decrypt + hash a 64 MiB file.
func BenchmarkRead(b *testing.B) {
	for _, store := range []string{"badger", "mem"} {
		for _, cs := range []int{256 << 10, 512 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("%s/chunk=%dKiB", store, cs>>10), func(b *testing.B) {
				var bs interface {
					BlockPutter
					BlockGetter
				}
				if store == "badger" {
					bs = openStore(b).Blocks
				} else {
					bs = newMemStore()
				}
				key, _ := NewKey()
				bl := NewBuilder(bs, key, Options{ChunkSize: cs})
				f, err := bl.AddFile(context.Background(), "f", &repeatReader{src: benchSrc, n: benchSize})
				if err != nil {
					b.Fatal(err)
				}
				loop(b, benchSize, func() {
					if err := ReadFile(context.Background(), bs, key, f, 0, io.Discard, ReadOptions{}); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
	}
}

// BenchmarkAEAD: sealing one 1 MiB chunk with the candidate AEADs.
func BenchmarkAEAD(b *testing.B) {
	key := make([]byte, 32)
	blk, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(blk)
	xc, _ := chacha20poly1305.NewX(key)
	cc, _ := chacha20poly1305.New(key)
	pt := benchSrc[:1<<20]
	for _, a := range []struct {
		name string
		aead cipher.AEAD
	}{{"AES-256-GCM", gcm}, {"XChaCha20-Poly1305", xc}, {"ChaCha20-Poly1305", cc}} {
		b.Run(a.name, func(b *testing.B) {
			out := make([]byte, 0, len(pt)+a.aead.Overhead())
			nonce := make([]byte, a.aead.NonceSize())
			ad := make([]byte, 13)
			loop(b, int64(len(pt)), func() {
				out = a.aead.Seal(out[:0], nonce, pt, ad)
			})
		})
	}
}

// cpuTime is the process's user+system CPU time: on a shared machine
// MiB per CPU-second measures the work done regardless of contention.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs body like b.Loop and reports MiB per CPU-second (all
// goroutines, badger's included) beside the wall-clock MB/s.
func loop(b *testing.B, bytes int64, body func()) {
	b.SetBytes(bytes)
	b.ReportAllocs()
	n := 0
	start := cpuTime()
	for b.Loop() {
		body()
		n++
	}
	if cpu := cpuTime() - start; cpu > 0 {
		b.ReportMetric(float64(n)*float64(bytes)/(1<<20)/cpu.Seconds(), "MiB/cpu-s")
	}
}
