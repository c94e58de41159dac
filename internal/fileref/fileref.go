// Package fileref keeps a way to remove a file nsgate created (the API
// socket, the VM socket, the PID file) that works after --enable-sandbox has
// taken its path out of reach: a descriptor of the file's directory, and the
// file's name in it, which unlinkat takes.
package fileref

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Ref locates a file for Remove. Its fields are plain values, so that it
// crosses the sandbox's re-exec as JSON; Dir must then be kept open.
type Ref struct {
	Dir  int    // the directory, O_PATH; -1: remove by Path
	Name string // the file's name in Dir
	Path string // the path it was created at, for messages and Dir < 0
}

// ByPath is a Ref that removes path by name: enough outside the sandbox.
func ByPath(path string) Ref { return Ref{Dir: -1, Path: path} }

// Open returns a Ref holding a descriptor of path's directory
// (close-on-exec; clear that to pass it on).
func Open(path string) (Ref, error) {
	dirPath, name := filepath.Split(path)
	if dirPath == "" {
		dirPath = "."
	}
	dir, err := unix.Open(dirPath, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Ref{Dir: -1}, fmt.Errorf("%q: open its directory: %w", path, err)
	}
	return Ref{Dir: dir, Name: name, Path: path}, nil
}

// Remove removes the file and closes the directory's descriptor. A file
// already gone is not an error worth reporting: Remove reports nothing.
func (r *Ref) Remove() {
	if r.Dir >= 0 {
		_ = unix.Unlinkat(r.Dir, r.Name, 0)
		unix.Close(r.Dir)
		r.Dir = -1
	} else if r.Path != "" {
		_ = os.Remove(r.Path)
	}
	r.Path = ""
}
