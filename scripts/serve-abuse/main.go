// Command serve-abuse runs `elis-sim serve` through the abuse a server
// meets in production and prints a table of what it cost: CPU while idle,
// memory before and after each case, descriptors and goroutines, a real
// request's latency while slow clients hold connections, and requests
// lost (which must be 0). Every case is bounded in count and time, sends
// traffic to loopback addresses only (127.0.0.0/8), and the program stops
// by itself, server included, in about two minutes.
//
//	go run ./scripts/serve-abuse              # builds elis-sim first
//	go run ./scripts/serve-abuse -bin ./elis-sim
//
// It reports; it asserts nothing (wall-clock numbers belong in reports,
// not in go test). Its exit status is 1 when a request was lost or the
// server did not stop cleanly.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	bin       = flag.String("bin", "", "elis-sim binary (default: go build ./cmd/elis-sim into a temporary folder)")
	headerTO  = flag.Duration("header-timeout", 5*time.Second, "the server's --header-timeout")
	writeTO   = flag.Duration("write-timeout", 5*time.Second, "the server's --write-timeout")
	attempted = flag.Int("slow", 20000, "slow-header connections attempted in each slowloris case")
)

// server is the elis-sim serve process under test.
type server struct {
	cmd  *exec.Cmd
	url  string
	host string
	pid  int
	log  *bytes.Buffer
	mu   sync.Mutex
}

func main() {
	flag.Parse()
	raiseFileLimit()
	path := *bin
	if path == "" {
		dir, err := os.MkdirTemp("", "serve-abuse")
		check(err)
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, "elis-sim")
		if out, err := exec.Command("go", "build", "-o", path, "./cmd/elis-sim").CombinedOutput(); err != nil {
			fail("go build: %v\n%s", err, out)
		}
	}
	dir, err := os.MkdirTemp("", "serve-abuse-files")
	check(err)
	defer os.RemoveAll(dir)
	// A fast linear engine: 2 ms steps, so the cases measure the server,
	// not the model.
	costFile := filepath.Join(dir, "cost.json")
	check(os.WriteFile(costFile, []byte(`{"kind": "linear", "model_name": "m", "device": "loopback",
 "linear": {"base_s": 0.002, "per_prefill_token_s": 0.000001, "per_decode_seq_s": 0.00001},
 "engine": {"MaxBatchedTokens": 8192, "MaxSeqs": 256, "BlockSize": 16, "NumBlocks": 200000, "MaxModelLen": 4096, "PredictionInterval": 50}}`), 0o644))
	s := start(path, "--policy", "fcfs", "--cost-model", costFile, "--served-model-name", "m",
		"--header-timeout", headerTO.String(), "--write-timeout", writeTO.String())
	fmt.Printf("elis-sim serve pid %d on %s (header timeout %v, write timeout %v; other limits at their defaults)\n\n", s.pid, s.url, *headerTO, *writeTO)

	rows := [][]string{{"case", "result", "RSS MB before -> after", "peak RSS MB", "fds (idle / peak / after)", "goroutines (idle / after)", "real request", "lost"}}
	lostAll := 0
	row := func(name, result string, before, after stat, peakRSS float64, peakFDs int, real string, lost int) {
		lostAll += lost
		rows = append(rows, []string{name, result, fmt.Sprintf("%.0f -> %.0f", before.rss, after.rss), fmt.Sprintf("%.0f", peakRSS),
			fmt.Sprintf("%d / %d / %d", before.fds, peakFDs, after.fds), fmt.Sprintf("%d / %d", before.goroutines, after.goroutines), real, strconv.Itoa(lost)})
	}

	// 1. Idle: CPU over 10 s of a server that has had no request.
	before := s.stat()
	t0 := s.cpuTicks()
	time.Sleep(10 * time.Second)
	idle := float64(s.cpuTicks()-t0) / 100 / 10 * 100 // ticks of 10 ms over 10 s, in % of a core
	row("idle 10 s", fmt.Sprintf("%.2f%% of a core", idle), before, s.stat(), s.peakRSS(), before.fds, "-", 0)

	// 2. 2,000 streamed chats without max_tokens (so each may take the
	// whole context), 100 at a time, each client leaving after its first
	// token: memory must follow tokens generated, not max_tokens.
	before = s.stat()
	var lost atomic.Int64
	parallel(2000, 100, func(i int) {
		body := fmt.Sprintf(`{"model":"m","stream":true,"messages":[{"role":"user","content":"question %d about something"}]}`, i)
		resp, err := http.Post(s.url+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			lost.Add(1)
			return
		}
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(line, "data: {") {
			lost.Add(1)
		}
	})
	time.Sleep(time.Second) // the aborts reach the engine
	row("2,000 chats without max_tokens, left after 1 token", fmt.Sprintf("%d aborted (server count)", s.metric(`finished_reason="abort"`)), before, s.stat(), s.peakRSS(), s.stat().fds, "-", int(lost.Load()))

	// 3. Ten 60 MB prompts at once: refused whole (413) without being held.
	before = s.stat()
	big := `{"model":"m","prompt":"` + strings.Repeat("word ", 12<<20) + `","max_tokens":1}`
	codes := make([]int, 10)
	parallel(10, 10, func(i int) {
		resp, err := http.Post(s.url+"/v1/completions", "application/json", strings.NewReader(big))
		if err == nil {
			codes[i] = resp.StatusCode
			resp.Body.Close()
		}
	})
	big = ""
	bad := 0
	for _, c := range codes {
		if c != http.StatusRequestEntityTooLarge {
			bad++
		}
	}
	row("10 x 60 MB prompts at once", fmt.Sprintf("statuses %v", compact(codes)), before, s.stat(), s.peakRSS(), s.stat().fds, "-", bad)

	// 4-6. Slow-header connections (slowloris) while a real client
	// sends a request every 100 ms from its own address.
	slowloris := func(name string, n, addrs int) {
		before := s.stat()
		lat, peakFDs, a := s.slowloris(n, addrs)
		after := s.settle(before)
		row(name, a.String(), before, after, s.peakRSS(), peakFDs, lat.String(), lat.failed)
	}
	slowloris(fmt.Sprintf("%d slow-header conns from 1 address", *attempted), *attempted, 1)
	slowloris(fmt.Sprintf("%d slow-header conns from 40 addresses", *attempted), *attempted, 40)
	slowloris("1,000 slow-header conns from 10 addresses", 1000, 10)

	// 7. Streams whose clients never read, on a second server whose steps
	// take 20 us (a stream must outgrow the sockets' buffers, megabytes on
	// loopback, before a write blocks): each is cut off after the write
	// timeout, its request aborted, nothing pinned.
	fastCost := filepath.Join(dir, "fast.json")
	check(os.WriteFile(fastCost, []byte(`{"kind": "linear", "model_name": "m", "device": "loopback",
 "linear": {"base_s": 0.00002, "per_prefill_token_s": 0, "per_decode_seq_s": 0},
 "engine": {"MaxBatchedTokens": 8192, "MaxSeqs": 256, "BlockSize": 16, "NumBlocks": 400000, "MaxModelLen": 131072, "PredictionInterval": 50}}`), 0o644))
	fast := start(path, "--policy", "fcfs", "--cost-model", fastCost, "--served-model-name", "m", "--write-timeout", writeTO.String())
	before = fast.stat()
	var stalled []net.Conn
	for i := range 50 {
		c, err := net.Dial("tcp", fast.host)
		if err != nil {
			break
		}
		body := fmt.Sprintf(`{"model":"m","prompt":"stalled %d","max_tokens":120000,"stream":true}`, i)
		fmt.Fprintf(c, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		stalled = append(stalled, c)
	}
	deadline := time.Now().Add(*writeTO + 60*time.Second)
	peak := 0
	for fast.metric(`finished_reason="abort"`) < len(stalled) && time.Now().Before(deadline) {
		peak = max(peak, fast.stat().fds)
		time.Sleep(200 * time.Millisecond)
	}
	cut := fast.metric(`finished_reason="abort"`)
	finished := fast.metric(`finished_reason="length"`)
	peakRSS := fast.peakRSS()
	for _, c := range stalled {
		c.Close()
	}
	after := fast.settle(before)
	row(fmt.Sprintf("%d streams never read (second server)", len(stalled)), fmt.Sprintf("%d cut off and aborted, %d ran to the end", cut, finished), before, after, peakRSS, peak, "-", len(stalled)-cut-finished)
	fast.cmd.Process.Signal(syscall.SIGTERM)
	fast.cmd.Wait()

	// 8. SIGTERM with 300 streams in flight and 20 bodies still arriving:
	// every stream ends with [DONE], every late body gets a status.
	before = s.stat()
	var done, late503 atomic.Int64
	var wg sync.WaitGroup
	started := make(chan struct{}, 300)
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"model":"m","prompt":"drain %d","max_tokens":300,"stream":true}`, i)
			resp, err := http.Post(s.url+"/v1/completions", "application/json", strings.NewReader(body))
			if err != nil {
				started <- struct{}{}
				return
			}
			defer resp.Body.Close()
			rd := bufio.NewReader(resp.Body)
			rd.ReadString('\n')
			started <- struct{}{}
			rest, _ := io.ReadAll(rd)
			if bytes.HasSuffix(rest, []byte("data: [DONE]\n\n")) {
				done.Add(1)
			}
		}()
	}
	for range 300 {
		<-started
	}
	var pipes []*io.PipeWriter
	for range 20 {
		pr, pw := io.Pipe()
		pipes = append(pipes, pw)
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(s.url+"/v1/completions", "application/json", pr)
			if err != nil {
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 503 && bytes.Contains(b, []byte(`"error":{`)) {
				late503.Add(1)
			}
		}()
		pw.Write([]byte(`{"model":"m","prompt":"late",`))
	}
	time.Sleep(500 * time.Millisecond) // the late requests' headers are read
	s.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	for _, pw := range pipes {
		pw.Write([]byte(`"max_tokens":2}`))
		pw.Close()
	}
	wg.Wait()
	err = s.cmd.Wait()
	exit := "exit 0"
	if err != nil {
		exit = err.Error()
	}
	panicked := strings.Contains(s.logText(), "panic")
	lostDrain := 300 - int(done.Load()) + 20 - int(late503.Load())
	if panicked || err != nil {
		lostDrain++
	}
	rows = append(rows, []string{"SIGTERM: 300 streams + 20 late bodies", fmt.Sprintf("%d/300 streams whole, %d/20 late got 503; %s, panic: %v", done.Load(), late503.Load(), exit, panicked),
		fmt.Sprintf("%.0f -> -", before.rss), "-", "-", "-", "-", strconv.Itoa(lostDrain)})
	lostAll += lostDrain

	printTable(rows)
	fmt.Printf("\nmachine: %s, %d cores, load average %s\n", cpuModel(), numCPU(), loadAvg())
	if lostAll > 0 {
		os.Exit(1)
	}
}

// start runs elis-sim serve on a free loopback port.
func start(path string, args ...string) *server {
	s := &server{log: &bytes.Buffer{}}
	s.cmd = exec.Command(path, append([]string{"serve", "--port", "0"}, args...)...)
	stderr, err := s.cmd.StderrPipe()
	check(err)
	check(s.cmd.Start())
	s.pid = s.cmd.Process.Pid
	rd := bufio.NewReader(stderr)
	re := regexp.MustCompile(`on http://(127\.0\.0\.1:\d+)`)
	for {
		line, err := rd.ReadString('\n')
		s.log.WriteString(line)
		if m := re.FindStringSubmatch(line); m != nil {
			s.host, s.url = m[1], "http://"+m[1]
			go func() {
				for {
					line, err := rd.ReadString('\n')
					s.mu.Lock()
					s.log.WriteString(line)
					s.mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
			return s
		}
		if err != nil {
			fail("serve did not start: %v\n%s", err, s.log)
		}
	}
}

func (s *server) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// stat is the server process's footprint.
type stat struct {
	rss        float64 // MB
	fds        int
	goroutines int
}

func (s *server) stat() stat {
	st := stat{rss: statusKB(s.pid, "VmRSS") / 1024, fds: countFDs(s.pid)}
	st.goroutines = s.metric("go_goroutines")
	return st
}

func (s *server) peakRSS() float64 { return statusKB(s.pid, "VmHWM") / 1024 }

// settle waits (up to the header timeout and a few seconds) for the
// descriptors and goroutines to come back to what they were.
func (s *server) settle(idle stat) stat {
	deadline := time.Now().Add(*headerTO + 10*time.Second)
	for {
		st := s.stat()
		if (st.fds <= idle.fds && st.goroutines <= idle.goroutines) || time.Now().After(deadline) {
			return st
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (s *server) cpuTicks() int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	check(err)
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, _ := strconv.Atoi(f[11]) // utime, field 14
	k, _ := strconv.Atoi(f[12]) // stime, field 15
	return u + k
}

// metric sums the samples of /metrics lines holding sub (one name, or a
// label); -1 when /metrics cannot be read.
func (s *server) metric(sub string) int {
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || !strings.Contains(line, sub) {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			v, _ := strconv.ParseFloat(line[i+1:], 64)
			sum += v
		}
	}
	return int(sum)
}

// latencies are a real client's requests during an attack.
type latencies struct {
	ms     []float64
	failed int
}

func (l latencies) String() string {
	if len(l.ms) == 0 {
		return fmt.Sprintf("none answered (%d failed)", l.failed)
	}
	slices.Sort(l.ms)
	return fmt.Sprintf("n=%d p50 %.1f ms, max %.1f ms, %d failed", len(l.ms), l.ms[len(l.ms)/2], l.ms[len(l.ms)-1], l.failed)
}

// attack is what became of a slowloris's connections.
type attack struct {
	refused, cut, held, unconnected int
}

func (a attack) String() string {
	return fmt.Sprintf("%d answered 429, %d closed by the server (evicted or timed out), %d still open at the end, %d could not connect",
		a.refused, a.cut, a.held, a.unconnected)
}

// slowloris opens n connections spread over addrs loopback addresses
// (127.0.1.x), each sending half a request header and then nothing, as
// fast as 200 dialers can, while a real client (127.0.0.1) sends a request
// every 100 ms; it holds them through the header timeout and two seconds
// more, then closes what is left. A connection the server closes is
// closed here too, as an attacker whose descriptors are bounded would.
func (s *server) slowloris(n, addrs int) (lat latencies, peakFDs int, a attack) {
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	var held atomic.Int64
	room := int64(fileLimit() - 400) // this process's own descriptors
	stop := make(chan struct{})
	var real sync.WaitGroup
	real.Add(1)
	go func() { // the real client
		defer real.Done()
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}).DialContext}}
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			t := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), *headerTO+5*time.Second)
			req, _ := http.NewRequestWithContext(ctx, "POST", s.url+"/v1/completions", strings.NewReader(`{"model":"m","prompt":"real","max_tokens":2}`))
			resp, err := client.Do(req)
			ok := err == nil && resp.StatusCode == 200
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			cancel()
			mu.Lock()
			if ok {
				lat.ms = append(lat.ms, float64(time.Since(t).Microseconds())/1e3)
			} else {
				lat.failed++
			}
			mu.Unlock()
		}
	}()
	var dialers, readers sync.WaitGroup
	jobs := make(chan int)
	for range 200 {
		dialers.Add(1)
		go func() {
			defer dialers.Done()
			for i := range jobs {
				for held.Load() >= room {
					time.Sleep(10 * time.Millisecond)
				}
				ip := net.IPv4(127, 0, 1, byte(1+i%addrs))
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 2 * time.Second}
				c, err := d.Dial("tcp", s.host)
				if err != nil {
					mu.Lock()
					a.unconnected++
					mu.Unlock()
					continue
				}
				held.Add(1)
				c.Write([]byte("POST /v1/completions HTTP/1.1\r\nHost: x\r\n"))
				mu.Lock()
				open[c] = true
				mu.Unlock()
				readers.Add(1)
				go func() { // what the server does with it
					defer readers.Done()
					buf := make([]byte, 64)
					k, _ := io.ReadAtLeast(c, buf, 12)
					mu.Lock()
					if open[c] {
						delete(open, c)
						if k >= 12 && string(buf[:12]) == "HTTP/1.1 429" {
							a.refused++
						} else {
							a.cut++
						}
					}
					mu.Unlock()
					c.Close()
					held.Add(-1)
				}()
			}
		}()
	}
	go func() {
		for i := range n {
			jobs <- i
		}
		close(jobs)
	}()
	// Sample the server's descriptors while the dialing goes on and for a
	// header timeout after it.
	dialed := make(chan struct{})
	go func() { dialers.Wait(); close(dialed) }()
	end := time.Time{}
	for end.IsZero() || time.Now().Before(end) {
		peakFDs = max(peakFDs, countFDs(s.pid))
		select {
		case <-dialed:
			if end.IsZero() {
				end = time.Now().Add(*headerTO + 2*time.Second)
			}
		default:
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	real.Wait()
	mu.Lock()
	a.held = len(open)
	for c := range open {
		delete(open, c)
		c.Close()
	}
	mu.Unlock()
	readers.Wait()
	return lat, peakFDs, a
}

func fileLimit() int {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		return 1024
	}
	return int(rl.Cur)
}

// parallel runs f(0..n-1) at most width at a time.
func parallel(n, width int, f func(i int)) {
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range width {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				f(i)
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
}

func statusKB(pid int, field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return 0
}

func countFDs(pid int) int {
	d, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(d)
}

func compact(codes []int) string {
	m := map[int]int{}
	for _, c := range codes {
		m[c]++
	}
	var parts []string
	for c, k := range m {
		parts = append(parts, fmt.Sprintf("%d x %d", k, c))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func printTable(rows [][]string) {
	w := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			w[i] = max(w[i], len(c))
		}
	}
	for k, r := range rows {
		for i, c := range r {
			fmt.Printf("| %-*s ", w[i], c)
		}
		fmt.Println("|")
		if k == 0 {
			for i := range r {
				fmt.Printf("|%s", strings.Repeat("-", w[i]+2))
			}
			fmt.Println("|")
		}
	}
}

// raiseFileLimit lets this process hold the slow connections it opens.
func raiseFileLimit() {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			return strings.TrimSpace(line[strings.IndexByte(line, ':')+1:])
		}
	}
	return "unknown CPU"
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "serve-abuse: "+format+"\n", args...)
	os.Exit(1)
}
