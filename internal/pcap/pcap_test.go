package pcap

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// TestFormat: the file header and records are pcap's, frames are recorded
// whole, nothing is written past the cap, and Frame allocates nothing.
func TestFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tap.pcap")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const max = fileHdrLen + 2*(recordHdrLen+100) + 50
	w, err := New(f, max)
	if err != nil {
		t.Fatal(err)
	}
	frame := bytes.Repeat([]byte{0xab}, 100)
	// Two records: AllocsPerRun runs it once to warm up, once to count.
	if n := testing.AllocsPerRun(1, func() { w.Frame(frame) }); n != 0 {
		t.Errorf("Frame: %v allocations", n)
	}
	w.Frame(frame) // past the cap: dropped
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != fileHdrLen+2*(recordHdrLen+100) || w.Dropped != 1 {
		t.Fatalf("%d bytes, %d dropped; want 2 records and 1 dropped", len(b), w.Dropped)
	}
	le := binary.LittleEndian
	if le.Uint32(b) != magic || le.Uint16(b[4:]) != 2 || le.Uint16(b[6:]) != 4 || le.Uint32(b[16:]) != snapLen || le.Uint32(b[20:]) != linkEther {
		t.Fatalf("file header % x", b[:fileHdrLen])
	}
	rec := b[fileHdrLen:]
	if le.Uint32(rec[8:]) != 100 || le.Uint32(rec[12:]) != 100 || !bytes.Equal(rec[recordHdrLen:recordHdrLen+100], frame) {
		t.Fatalf("record % x", rec[:recordHdrLen])
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
}
