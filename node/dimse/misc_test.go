package dimse

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

func TestEvenReader(t *testing.T) {
	for n := 0; n < 8; n++ {
		in := bytes.Repeat([]byte{7}, n)
		want := append([]byte(nil), in...)
		if n%2 == 1 {
			want = append(want, 0)
		}
		for _, r := range []io.Reader{bytes.NewReader(in), iotest.OneByteReader(bytes.NewReader(in)), iotest.DataErrReader(bytes.NewReader(in))} {
			got, err := io.ReadAll(&evenReader{r: r})
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("n=%d: %v %x, want %x", n, err, got, want)
			}
		}
		// exact-size buffers
		e := &evenReader{r: bytes.NewReader(in)}
		var got []byte
		buf := make([]byte, max(n, 1))
		for {
			k, err := e.Read(buf)
			got = append(got, buf[:k]...)
			if err == io.EOF {
				break
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("n=%d exact buffer: %x, want %x", n, got, want)
		}
	}
}
