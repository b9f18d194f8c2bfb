// Command docs-check runs the command blocks of the README and docs/ as a
// new user would: on a fresh clone in a temporary folder, in the order the
// README links the pages, with elis-sim built and on PATH and
// ../shared beside the clone when it is beside this checkout. Each
// ```sh block runs as one bash script (set -e: it stops at the first
// failing line); a line whose comment says "needs:" (a GPU, vLLM,
// Slurm...) is skipped and said, and with -quick so is a block any of
// whose lines is marked "slow" (the lines after it may need what it
// made). Whatever a block starts in the background is killed when it
// ends. The checkout's uncommitted changes are applied to the clone, so
// the docs are checked as they would be committed. It prints a line per block, passed, failed (with the line and its
// output's tail) or skipped, and exits 1 when one failed.
//
//	go run ./scripts/docs-check [-quick] [-keep] [-timeout 10m] [FILE.md ...]
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// order is the README's, then its table of docs pages.
var order = []string{"README.md", "docs/run.md", "docs/traces.md", "docs/sweep.md", "docs/real-servers.md",
	"docs/replay.md", "docs/predictor.md", "docs/cost-model.md", "docs/development.md"}

type block struct {
	file  string
	line  int      // of the opening fence
	lines []string // the commands, continuation lines joined
	start []int    // each command's line in file
}

func main() {
	quick := flag.Bool("quick", false, "skip the lines marked slow (what CI runs)")
	keep := flag.Bool("keep", false, "keep the temporary folder and say where it is")
	timeout := flag.Duration("timeout", 10*time.Minute, "bound on one block")
	flag.Parse()
	files := order
	if flag.NArg() > 0 {
		files = flag.Args()
	}
	root, err := repoRoot()
	if err != nil {
		fail(err)
	}
	tmp, err := os.MkdirTemp("", "docs-check-")
	if err != nil {
		fail(err)
	}
	if *keep {
		fmt.Printf("docs-check: working in %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	clone := filepath.Join(tmp, "elis-sim")
	if out, err := exec.Command("git", "clone", "--quiet", root, clone).CombinedOutput(); err != nil {
		fail(fmt.Errorf("git clone: %v\n%s", err, out))
	}
	if err := overlay(root, clone); err != nil {
		fail(err)
	}
	hasShared := isDir(filepath.Join(root, "..", "shared"))
	if hasShared {
		if err := os.Symlink(filepath.Join(root, "..", "shared"), filepath.Join(tmp, "shared")); err != nil {
			fail(err)
		}
	}
	bin := filepath.Join(tmp, "bin")
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "elis-sim"), "./cmd/elis-sim")
	build.Dir = clone
	if out, err := build.CombinedOutput(); err != nil {
		fail(fmt.Errorf("building elis-sim in the clone: %v\n%s", err, out))
	}
	env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	passed, failed, skipped := 0, 0, 0
	for _, f := range files {
		blocks, err := readBlocks(filepath.Join(clone, f), f)
		if err != nil {
			fail(err)
		}
		for _, b := range blocks {
			script, skips := b.script(*quick)
			if !hasShared && strings.Contains(strings.Join(b.lines, "\n"), "../shared/") {
				script, skips = "", []string{fmt.Sprintf("%s:%d (needs ../shared beside the checkout)", b.file, b.line)}
			}
			for _, s := range skips {
				fmt.Printf("skip  %s\n", s)
			}
			if strings.TrimSpace(script) == "" {
				skipped++
				continue
			}
			start := time.Now()
			out, err := run(clone, env, script, *timeout)
			took := time.Since(start).Round(100 * time.Millisecond)
			if err != nil {
				failed++
				fmt.Printf("FAIL  %s:%d (%v): %v\n%s\n", b.file, b.line, took, err, indent(tail(out, 25)))
				continue
			}
			passed++
			fmt.Printf("pass  %s:%d (%v)\n", b.file, b.line, took)
		}
	}
	fmt.Printf("docs-check: %d blocks passed, %d failed, %d skipped whole\n", passed, failed, skipped)
	if failed > 0 {
		os.Exit(1)
	}
}

// readBlocks reads the ```sh blocks of path (named name in reports).
func readBlocks(path, name string) ([]block, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []block
	var cur *block
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	pending := ""
	pendingAt := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(line) == "```sh":
			cur = &block{file: name, line: n}
		case cur != nil && strings.TrimSpace(line) == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			if pending == "" {
				pendingAt = n
			}
			if s, ok := strings.CutSuffix(line, "\\"); ok {
				pending += s + " "
				continue
			}
			cur.lines = append(cur.lines, pending+line)
			cur.start = append(cur.start, pendingAt)
			pending = ""
		}
	}
	return out, sc.Err()
}

var (
	needs = regexp.MustCompile(`#.*\bneeds:\s*([^#)]*)`)
	slow  = regexp.MustCompile(`#.*\bslow\b`)
)

// script is the block as bash runs it, and what it leaves out.
func (b *block) script(quick bool) (string, []string) {
	var sb strings.Builder
	var skips []string
	sb.WriteString("set -e\n")
	for i, l := range b.lines {
		at := fmt.Sprintf("%s:%d", b.file, b.start[i])
		if m := needs.FindStringSubmatch(l); m != nil {
			skips = append(skips, fmt.Sprintf("%s (needs %s)", at, strings.TrimSpace(m[1])))
			continue
		}
		if quick && slow.MatchString(l) {
			return "", []string{fmt.Sprintf("%s:%d (a slow block)", b.file, b.line)}
		}
		// Say which line runs, so a failure names it.
		fmt.Fprintf(&sb, "echo %q >&2\n%s\n", "+ "+at+": "+strings.TrimSpace(l), l)
	}
	if len(skips) == len(b.lines) {
		return "", skips
	}
	return sb.String(), skips
}

// run runs script with bash in dir, in a process group of its own that is
// killed when it ends (servers a block starts in the background with it).
func run(dir string, env []string, script string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir, cmd.Env = dir, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A file, not a pipe: what the block leaves running in the background
	// holds its output open, and Wait would wait for it.
	f, err := os.CreateTemp("", "docs-check-out-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what it left running
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("over %v: %w", timeout, errors.Join(err, ctx.Err()))
	}
	out, rerr := os.ReadFile(f.Name())
	return out, errors.Join(err, rerr)
}

// overlay brings the checkout's uncommitted work into the clone: the
// diff of tracked files, and untracked files git does not ignore, so the
// docs are checked as they would be committed.
func overlay(root, clone string) error {
	diff, err := exec.Command("git", "-C", root, "diff", "HEAD", "--binary").Output()
	if err != nil {
		return fmt.Errorf("git diff: %w", err)
	}
	if len(diff) > 0 {
		apply := exec.Command("git", "-C", clone, "apply", "--whitespace=nowarn")
		apply.Stdin = bytes.NewReader(diff)
		if out, err := apply.CombinedOutput(); err != nil {
			return fmt.Errorf("git apply: %v\n%s", err, out)
		}
	}
	others, err := exec.Command("git", "-C", root, "ls-files", "--others", "--exclude-standard", "-z").Output()
	if err != nil {
		return fmt.Errorf("git ls-files: %w", err)
	}
	for _, f := range strings.Split(string(others), "\x00") {
		if f == "" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return err
		}
		dst := filepath.Join(clone, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func repoRoot() (string, error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	return strings.TrimSpace(string(out)), err
}

func isDir(p string) bool { st, err := os.Stat(p); return err == nil && st.IsDir() }

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string { return "      " + strings.ReplaceAll(s, "\n", "\n      ") }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "docs-check:", err)
	os.Exit(2)
}
