package dimse

import (
	"errors"
	"fmt"
	"io"
)

// sendMessage sends a command and, if data is not nil, its data set read
// from data, fragmented to the peer's maximum PDU length. A data set that
// fails mid-way cannot be taken back: the association is aborted.
func (c *ul) sendMessage(pc *pctx, cmd *Command, data io.Reader) error {
	c.msgMu.Lock()
	defer c.msgMu.Unlock()
	// Sending is activity: an association busy answering (a long C-MOVE)
	// is not idle even if the peer has nothing to say meanwhile.
	defer c.touch()
	cmd.setDataSet(data != nil)
	cb, err := cmd.Encode()
	if err != nil {
		return err
	}
	c.mu.Lock()
	frag := int(c.maxSend) - pdvHeaderLen
	c.mu.Unlock()
	if frag <= 0 {
		return errors.New("dimse: association not established")
	}
	if cap(c.sendBuf) < pduHeaderLen+pdvHeaderLen+frag {
		c.sendBuf = make([]byte, pduHeaderLen+pdvHeaderLen+frag)
	}
	buf := c.sendBuf[:pduHeaderLen+pdvHeaderLen+frag]
	// Read the first data fragment before sending anything: an empty or
	// unreadable data set is refused while nothing is on the wire.
	var ds *fragmenter
	var first []byte
	var firstLast bool
	if data != nil {
		ds = &fragmenter{r: data}
		first, firstLast, err = ds.next(buf[pduHeaderLen+pdvHeaderLen:])
		if err != nil {
			return fmt.Errorf("dimse: reading the data set to send: %w", err)
		}
		if len(first) == 0 {
			return errors.New("dimse: empty data set")
		}
	}
	// The command goes out in PDUs of its own (it is small), so the first
	// data fragment can wait in buf.
	for off := 0; off < len(cb); off += frag {
		end := min(off+frag, len(cb))
		pb, err := (&PDataTF{Items: []PDV{{Context: pc.id, Command: true, Last: end == len(cb), Data: cb[off:end]}}}).Encode()
		if err != nil {
			return err
		}
		if err := c.sendPDataPDU(pb); err != nil {
			return err
		}
	}
	if ds == nil {
		return nil
	}
	for last := firstLast; ; {
		n := len(first)
		h := pduHeaderLen + pdvHeaderLen
		pduHeader(buf[:0], TypePDataTF, pdvHeaderLen+n)
		b := buf[pduHeaderLen:]
		b[0], b[1], b[2], b[3] = byte((n+2)>>24), byte((n+2)>>16), byte((n+2)>>8), byte(n+2)
		b[4], b[5] = pc.id, mch(false, last)
		if err := c.sendPDataPDU(buf[:h+n]); err != nil {
			return err
		}
		if last {
			return nil
		}
		first, last, err = ds.next(buf[h:])
		if err != nil {
			err = fmt.Errorf("dimse: reading the data set to send: %w", err)
			c.abortLocal(AbortSourceUser, AbortReasonNotSpecified, err)
			return err
		}
	}
}

// sendPDataPDU sends one encoded P-DATA-TF PDU (DT-1 / AR-7).
func (c *ul) sendPDataPDU(b []byte) error {
	c.mu.Lock()
	_, err := c.stepLocked(evt9)
	c.mu.Unlock()
	if err != nil {
		if e := c.Err(); e != nil {
			return e
		}
		return err
	}
	if err := c.writePDU(b); err != nil {
		err = fmt.Errorf("dimse: sending P-DATA-TF: %w", err)
		c.finish(err)
		c.nc.Close()
		return err
	}
	return nil
}

// fragmenter cuts a data set stream into fragments, knowing which is last
// by reading one byte ahead.
type fragmenter struct {
	r       io.Reader
	held    [1]byte
	hasHeld bool
	eof     bool
}

func (f *fragmenter) next(buf []byte) ([]byte, bool, error) {
	n := 0
	if f.hasHeld {
		buf[0] = f.held[0]
		f.hasHeld = false
		n = 1
	}
	if !f.eof {
		m, err := io.ReadFull(f.r, buf[n:])
		n += m
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			f.eof = true
		case err != nil:
			return nil, false, err
		}
	}
	if f.eof {
		return buf[:n], true, nil
	}
	// full buffer: is there more?
	m, err := io.ReadFull(f.r, f.held[:])
	switch {
	case m == 1:
		f.hasHeld = true
		return buf[:n], false, nil
	case err == io.EOF:
		f.eof = true
		return buf[:n], true, nil
	default:
		return nil, false, err
	}
}
