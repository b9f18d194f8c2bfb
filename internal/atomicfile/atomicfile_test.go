package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteLeavesNothingOnFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.json")
	err := Write(path, func(w io.Writer) error {
		io.WriteString(w, "partial")
		return errors.New("boom")
	})
	if err == nil {
		t.Fatal("want error")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("left files behind: %v", entries)
	}
}

func TestWriteCreates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.json")
	if err := Write(path, func(w io.Writer) error { _, err := io.WriteString(w, "ok"); return err }); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "ok" {
		t.Fatalf("got %q, %v", b, err)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	if err := Check(filepath.Join(dir, "a.json")); err != nil {
		t.Fatal(err)
	}
	if err := Check("-"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{dir, "/proc/x.log"} {
		if err := Check(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("Check left files: %v", entries)
	}
	// A file where a directory should be is refused.
	f := filepath.Join(dir, "f")
	os.WriteFile(f, nil, 0o644)
	if err := Check(filepath.Join(f, "b.json")); err == nil {
		t.Error("a file as a directory: no error")
	}
	// A directory the path names that does not exist yet passes the check,
	// which makes nothing; Write makes it.
	p := filepath.Join(dir, "new", "sub", "a.json")
	if err := Check(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); err == nil {
		t.Fatal("Check made a directory")
	}
	if err := Write(p, func(w io.Writer) error { _, err := io.WriteString(w, "x"); return err }); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "x" {
		t.Fatalf("wrote %q", b)
	}
}

// A device is written in place: `-o /dev/null` once renamed a temporary
// file over /dev/null, which then was a regular file for every process on
// the machine.
func TestWriteToADevice(t *testing.T) {
	if err := Check(os.DevNull); err != nil {
		t.Fatal(err)
	}
	if err := Write(os.DevNull, func(w io.Writer) error { _, err := io.WriteString(w, "x"); return err }); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(os.DevNull)
	if err != nil || st.Mode()&os.ModeDevice == 0 {
		t.Fatalf("%s after Write: %v %v", os.DevNull, st.Mode(), err)
	}
}
