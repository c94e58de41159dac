// Package pcap records frames in the classic pcap format that tcpdump -r
// and wireshark read (--pcap), as pasta and gvproxy can.
//
// Frames are buffered and written in large blocks (Flush at the end of
// each round of the event loop), so recording costs a copy per frame, not
// a system call. The file stops growing at a size cap: a busy namespace
// cannot fill the disk. Super-frames (TSO, USO) are recorded as they
// cross the tap, up to 64 KiB each, like tcpdump on a tap shows them.
package pcap

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"time"
)

// Format constants: the classic header, microsecond timestamps, Ethernet.
const (
	magic        = 0xa1b2c3d4
	versionHi    = 2
	versionLo    = 4
	snapLen      = 262144 // tcpdump's default
	linkEther    = 1
	fileHdrLen   = 24
	recordHdrLen = 16
)

// DefaultMax is the size cap when none is given: 1 GiB.
const DefaultMax = 1 << 30

// Writer appends frames to a pcap file. Only one goroutine (the event
// loop) uses it.
type Writer struct {
	f    *os.File
	w    *bufio.Writer
	max  int64
	size int64
	err  error
	hdr  [recordHdrLen]byte
	// Dropped counts the frames not recorded: past the cap, or after a
	// write error.
	Dropped uint64
}

// Open truncates or creates path for New, mode 0600: frames carry the
// namespace's data. It is separate from New so that the file can be opened
// before the sandbox takes the filesystem away.
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--pcap: %w", err)
	}
	return f, nil
}

// New writes the file header to f, which it owns from now on. Frames stop
// being recorded once the file would pass max bytes (0: DefaultMax).
func New(f *os.File, max int64) (*Writer, error) {
	if max <= 0 {
		max = DefaultMax
	}
	w := &Writer{f: f, w: bufio.NewWriterSize(f, 1<<20), max: max}
	var h [fileHdrLen]byte
	binary.LittleEndian.PutUint32(h[0:], magic)
	binary.LittleEndian.PutUint16(h[4:], versionHi)
	binary.LittleEndian.PutUint16(h[6:], versionLo)
	binary.LittleEndian.PutUint32(h[16:], snapLen)
	binary.LittleEndian.PutUint32(h[20:], linkEther)
	w.write(h[:])
	if w.Flush(); w.err != nil {
		f.Close()
		return nil, fmt.Errorf("--pcap %s: %w", f.Name(), w.err)
	}
	return w, nil
}

// Frame records one frame, stamped now.
func (w *Writer) Frame(frame []byte) {
	n := min(len(frame), snapLen)
	if w.err != nil || w.size+int64(recordHdrLen+n) > w.max {
		w.Dropped++
		return
	}
	now := time.Now()
	binary.LittleEndian.PutUint32(w.hdr[0:], uint32(now.Unix()))
	binary.LittleEndian.PutUint32(w.hdr[4:], uint32(now.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(w.hdr[8:], uint32(n))
	binary.LittleEndian.PutUint32(w.hdr[12:], uint32(len(frame)))
	w.write(w.hdr[:])
	w.write(frame[:n])
}

func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	m, err := w.w.Write(b)
	w.size += int64(m)
	w.err = err
}

// Max returns the size cap.
func (w *Writer) Max() int64 { return w.max }

// Size returns the bytes recorded, the header included.
func (w *Writer) Size() int64 { return w.size }

// Err returns the first write error, if any.
func (w *Writer) Err() error { return w.err }

// Flush writes what is buffered.
func (w *Writer) Flush() {
	if w.err == nil {
		w.err = w.w.Flush()
	}
}

// Close flushes and closes the file.
func (w *Writer) Close() error {
	w.Flush()
	if err := w.f.Close(); w.err == nil {
		w.err = err
	}
	return w.err
}
