package dimse

import (
	"errors"
	"fmt"
	"io"
)

// assembler turns received PDVs into messages (in the reader goroutine).
type assembler struct {
	c     *ul
	cmd   []byte
	cmdPC byte
	cur   *message // message whose data set is being received
	data  []byte
	pw    *io.PipeWriter
	done  chan struct{} // the streamed message's dataDone
}

// streams reports whether a command's data set is streamed to its
// receiver rather than read whole.
func streams(field uint16) bool {
	switch field {
	case CFindRQ, CFindRSP, CMoveRQ, CMoveRSP, CGetRQ, CGetRSP, CEchoRQ, CEchoRSP, CStoreRSP, CCancelRQ:
		return false
	}
	return true // C-STORE-RQ, and commands we do not know (to be discarded)
}

func (as *assembler) setMid(v bool) {
	as.c.mu.Lock()
	as.c.midMsg = v
	as.c.mu.Unlock()
}

// fail ends a data set being streamed with err.
func (as *assembler) fail(err error) {
	if as.pw != nil {
		as.pw.CloseWithError(err)
		as.pw = nil
	}
	as.endStream()
}

func (as *assembler) endStream() {
	if as.done != nil {
		close(as.done)
		as.done = nil
	}
}

func (as *assembler) pdata(p *PDataTF) error {
	for _, v := range p.Items {
		pc := as.c.context(v.Context)
		if pc == nil {
			return fmt.Errorf("PDV on presentation context %d, which was not accepted", v.Context)
		}
		if v.Command {
			if as.cur != nil {
				return errors.New("command fragment while a data set was expected")
			}
			if len(as.cmd) > 0 && v.Context != as.cmdPC {
				return errors.New("command fragments on two presentation contexts")
			}
			if len(as.cmd)+len(v.Data) > maxCommandLen {
				return fmt.Errorf("command set longer than %d bytes", maxCommandLen)
			}
			as.cmdPC = v.Context
			as.cmd = append(as.cmd, v.Data...)
			as.setMid(true)
			if !v.Last {
				continue
			}
			cmd, err := DecodeCommand(as.cmd)
			as.cmd = as.cmd[:0]
			if err != nil {
				return err
			}
			if err := cmd.validate(); err != nil {
				return err
			}
			m := &message{ctx: pc, cmd: cmd}
			if !cmd.HasDataSet() {
				as.setMid(false)
				as.c.deliver(ulEvent{kind: evMessage, msg: m})
				continue
			}
			as.cur = m
			if streams(cmd.CommandField) {
				pr, pw := io.Pipe()
				m.data, as.pw = pr, pw
				m.dataDone = make(chan struct{})
				as.done = m.dataDone
				if !as.c.deliver(ulEvent{kind: evMessage, msg: m}) {
					// nobody will read it: discard what follows
					pw.CloseWithError(ErrClosed)
					as.pw = nil
				}
			}
			continue
		}
		// data set fragment
		if as.cur == nil {
			return errors.New("data set fragment without a command")
		}
		if v.Context != as.cur.ctx.id {
			return errors.New("data set on another presentation context than its command")
		}
		if as.pw != nil {
			if _, err := as.pw.Write(v.Data); err != nil && !errors.Is(err, errDataAbandoned) {
				// the receiver gave up for another reason: keep discarding
				as.pw = nil
			}
		} else if as.cur.data == nil {
			if len(as.data)+len(v.Data) > maxIdentifierLen {
				return fmt.Errorf("%s data set longer than %d bytes", commandName(as.cur.cmd.CommandField), maxIdentifierLen)
			}
			as.data = append(as.data, v.Data...)
		}
		if v.Last {
			m := as.cur
			as.cur = nil
			as.setMid(false)
			if m.data != nil {
				if as.pw != nil {
					as.pw.Close()
					as.pw = nil
				}
				as.endStream()
			} else {
				m.dataBytes = append([]byte(nil), as.data...)
				as.data = as.data[:0]
				as.c.deliver(ulEvent{kind: evMessage, msg: m})
			}
		}
	}
	return nil
}
