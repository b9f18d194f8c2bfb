// Package tempfile writes test inputs to files: the readers under test take
// paths, as users give them, and fuzz targets feed them bytes.
package tempfile

import (
	"os"
	"path/filepath"
	"testing"
)

// Write writes data to name in a directory of t's that is removed after
// it, and returns the file's path.
func Write(t testing.TB, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
