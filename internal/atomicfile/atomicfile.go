// Package atomicfile writes output files so that a reader never sees a
// partial one: the content goes to a temporary file in the same directory,
// which is renamed over the destination only when writing succeeded.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Write creates path with the bytes fill writes, making its directory
// when the path names one that does not exist yet. If fill fails, or the
// file cannot be completed, no file named path is created or changed. The
// path "-" writes to standard output instead.
func Write(path string, fill func(w io.Writer) error) error {
	if path == "-" {
		return fill(os.Stdout)
	}
	if Special(path) {
		// A device or a pipe (/dev/null, /dev/stdout, a FIFO): written in
		// place. A temporary file renamed over it would replace the device
		// with a regular file.
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		if err := fill(f); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	name := tmp.Name()
	defer os.Remove(name) // no-op after a successful rename
	if err := fill(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(name, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Check reports whether Write could create path, without writing it: the
// path must not be a directory, and its directory must take a new file
// or, when it does not exist yet, be one Write can make (results/run.json
// on a fresh clone): its nearest existing ancestor must be a directory
// that takes new files. Nothing is created. Commands check every output
// this way before their work, so that a bad path costs no run and leaves
// no partial output.
func Check(path string) error {
	if path == "-" {
		return nil
	}
	if Special(path) {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("cannot write %s: %w", path, err)
		}
		return f.Close()
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a directory, want a file name", path)
	}
	return CheckDir(filepath.Dir(path))
}

// Special reports whether path exists and is neither a regular file nor
// a directory: a device or a pipe, written in place.
func Special(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.Mode().IsRegular() && !st.IsDir()
}

// CheckDir reports whether files can be created in dir, or, when dir does
// not exist yet, whether it can be made: its nearest existing ancestor must
// be a directory that takes new files. Nothing is created.
func CheckDir(dir string) error {
	for {
		_, err := os.Stat(dir)
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	tmp, err := os.CreateTemp(dir, ".elis-sim-check*")
	if err != nil {
		return fmt.Errorf("cannot write in %s: %w", dir, err)
	}
	tmp.Close()
	return os.Remove(tmp.Name())
}
