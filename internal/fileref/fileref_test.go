package fileref

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRemove: a Ref removes its file through the directory's descriptor
// even after the directory is out of reach by path (renamed here, as the
// sandbox's pivot hides it), and by path when it holds no descriptor.
func TestRemove(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "a")
	os.Mkdir(dir, 0o755)
	f := filepath.Join(dir, "x.pid")
	os.WriteFile(f, []byte("1\n"), 0o644)
	r, err := Open(f)
	if err != nil || r.Dir < 0 || r.Name != "x.pid" {
		t.Fatalf("Open: %+v, %v", r, err)
	}
	moved := filepath.Join(base, "b")
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	r.Remove()
	if _, err := os.Lstat(filepath.Join(moved, "x.pid")); !os.IsNotExist(err) {
		t.Fatalf("file left: %v", err)
	}
	r.Remove() // twice is harmless

	g := filepath.Join(base, "y")
	os.WriteFile(g, nil, 0o644)
	p := ByPath(g)
	p.Remove()
	if _, err := os.Lstat(g); !os.IsNotExist(err) {
		t.Fatalf("file left: %v", err)
	}
	if _, err := Open(filepath.Join(base, "none", "z")); err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
}
