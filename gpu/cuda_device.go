//go:build cuda

package gpu

import (
	"cmp"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"unsafe"

	"gorgonia.org/cu"
	"gorgonia.org/cu/nvrtc"
)

type devPtr = cu.DevicePtr

// deviceThread runs every CUDA call of one model on one OS thread that has
// the device's primary context current: the driver API binds contexts to
// threads, and Go moves goroutines between threads. Models on one GPU
// share its primary context (as the CUDA runtime does), each with its own
// thread and stream.
type deviceThread struct {
	calls   chan func()
	dev     cu.Device
	ordinal int
}

func newDeviceThread(ordinal int) (*deviceThread, error) {
	d := &deviceThread{calls: make(chan func()), ordinal: ordinal}
	ready := make(chan error)
	go func() {
		runtime.LockOSThread()
		var ctx cu.CUContext
		dev, err := cu.GetDevice(ordinal)
		if err == nil {
			d.dev = dev
			ctx, err = dev.RetainPrimaryCtx()
			if err == nil {
				if err = cu.SetCurrentContext(ctx); err != nil {
					dev.ReleasePrimaryCtx()
				}
			}
		}
		ready <- err
		if err != nil {
			return
		}
		for f := range d.calls {
			f()
		}
		// The channel is closed: give the context use back.
		dev.ReleasePrimaryCtx()
	}()
	if err := <-ready; err != nil {
		return nil, fmt.Errorf("CUDA device %d: %w", ordinal, err)
	}
	return d, nil
}

// do runs f on the device thread and waits for it.
func (d *deviceThread) do(f func() error) error {
	done := make(chan error)
	d.calls <- func() { done <- f() }
	return <-done
}

// stop ends the thread, which releases its use of the primary context.
func (d *deviceThread) stop() { close(d.calls) }

// cudaBase is what every model on a GPU owns: its device thread, stream,
// cuBLAS handle, compiled kernels, launcher and allocations. Close gives
// all of it back.
type cudaBase struct {
	dev     *deviceThread
	blas    *cublas
	stream  cu.Stream
	mod     module
	fn      map[string]kernel
	launch  *launcher
	allocs  map[devPtr]struct{} // every buffer held, for Close
	meta    devPtr              // a step's int32 metadata, grown on demand
	metaCap int
	times   *kernelTimes
	graphs  map[graphKey]graphExec
	// graphErr, once set, says why capturing failed; the model then runs
	// its launches directly.
	graphErr error
}

// graphKey names a step shape whose launches were captured as a graph:
// every kernel argument and grid size depends on it (and on the buffers,
// whose replacement drops every graph).
type graphKey [5]int64

// maxGraphs bounds the captured graphs a model keeps; past it they are
// all dropped and captured anew as shapes recur.
const maxGraphs = 64

// maxGraphTokens is the largest step captured: beyond it launch overhead
// is a small share of the step.
const maxGraphTokens = 512

// graph runs f's launches on the stream: the first time a key is seen it
// captures them into a graph and instantiates it, later it launches the
// graph alone, saving the per-kernel launch cost. While kernels are
// profiled (ProfileKernels) f runs directly.
func (e *cudaBase) graph(key graphKey, f func() error) error {
	if e.times != nil || e.graphErr != nil {
		return f()
	}
	if g, ok := e.graphs[key]; ok {
		return g.launch(e.streamHandle())
	}
	if len(e.graphs) >= maxGraphs {
		e.dropGraphs()
	}
	if err := beginCapture(e.streamHandle()); err != nil {
		e.graphErr = err
		return f()
	}
	ferr := f()
	g, err := endCapture(e.streamHandle())
	if ferr != nil || err != nil {
		// Something in the launches cannot be captured: run them directly
		// from now on.
		g.destroy()
		e.graphErr = errors.Join(ferr, err)
		return f()
	}
	if e.graphs == nil {
		e.graphs = map[graphKey]graphExec{}
	}
	e.graphs[key] = g
	return g.launch(e.streamHandle())
}

// dropGraphs waits for the stream and destroys every captured graph.
func (e *cudaBase) dropGraphs() {
	if len(e.graphs) == 0 {
		return
	}
	e.stream.Synchronize()
	for k, g := range e.graphs {
		g.destroy()
		delete(e.graphs, k)
	}
}

// kernelTimes sums device time by kernel or product name while a model
// profiles its kernels: a breakdown of a step without nsys.
type kernelTimes struct {
	start, end cu.Event
	ms         map[string]float64
	calls      map[string]int
}

// cublasWorkspace is the cuBLAS workspace each model gives its handle:
// what cuBLAS asks for on Hopper.
const cublasWorkspace = 32 << 20

// kernelSource is one NVRTC program: the shared helpers, then a model's
// kernels, compiled with defines.
type kernelSource struct {
	code    string
	names   []string
	defines []string
}

// start opens GPU ordinal, compiles src for its architecture and creates
// the stream and the cuBLAS handle (with 16-bit inputs in format in).
func (e *cudaBase) start(ordinal int, src kernelSource, in Precision) error {
	dev, err := newDeviceThread(ordinal)
	if err != nil {
		return err
	}
	e.dev, e.fn, e.allocs = dev, map[string]kernel{}, map[devPtr]struct{}{}
	return dev.do(func() error {
		if err := e.compile(src); err != nil {
			return err
		}
		var err error
		if e.launch, err = newLauncher(); err != nil {
			return err
		}
		if e.stream, err = cu.MakeStream(cu.NonBlocking); err != nil {
			return err
		}
		if e.blas, err = newCublas(in); err != nil {
			return err
		}
		if err := e.blas.setStream(e.streamHandle()); err != nil {
			return err
		}
		// A workspace of our own, so that products captured into graphs
		// need no allocation of cuBLAS's.
		ws, err := e.alloc(cublasWorkspace)
		if err != nil {
			return err
		}
		return e.blas.setWorkspace(uintptr(ws), cublasWorkspace)
	})
}

func (e *cudaBase) streamHandle() uintptr { return uintptr(unsafe.Pointer(e.stream.C())) }

// compile builds src with NVRTC for the device's own compute capability
// (compute_90 on an H100 or H200), so the driver need not guess.
func (e *cudaBase) compile(src kernelSource) error {
	major, minor, err := e.dev.dev.ComputeCapability()
	if err != nil {
		return fmt.Errorf("reading the compute capability: %w", err)
	}
	prog, err := nvrtc.CreateProgram(commonSource+"\n"+src.code, "elis-sim.cu")
	if err != nil {
		return fmt.Errorf("nvrtc: %w", err)
	}
	defer prog.Destroy()
	// No --use_fast_math: rotary angles reach 1e5 radians, where the fast
	// sine and cosine are far off.
	opts := []string{fmt.Sprintf("--gpu-architecture=compute_%d%d", major, minor), "-default-device", "--std=c++14"}
	for _, d := range src.defines {
		opts = append(opts, "-D"+d)
	}
	if err := prog.Compile(opts...); err != nil {
		log, _ := prog.GetLog()
		return fmt.Errorf("nvrtc compile for compute_%d%d: %w\n%s", major, minor, err, log)
	}
	ptx, err := prog.GetPTX()
	if err != nil {
		return err
	}
	if e.mod, err = loadModule([]byte(ptx)); err != nil {
		return fmt.Errorf("loading kernels: %w", err)
	}
	for _, name := range src.names {
		if e.fn[name], err = e.mod.function(name); err != nil {
			return err
		}
	}
	return nil
}

// call launches kernel name on the model's stream, on a grid of gx x gy
// blocks.
func (e *cudaBase) call(name string, gx, gy, block int, args ...any) error {
	return e.call3(name, gx, gy, 1, block, args...)
}

// call3 is call on a grid of gx x gy x gz blocks.
func (e *cudaBase) call3(name string, gx, gy, gz, block int, args ...any) error {
	k, ok := e.fn[name]
	if !ok {
		return fmt.Errorf("kernel %s not compiled", name)
	}
	return e.timed(name, func() error { return e.launch.launch(k, gx, gy, gz, block, e.streamHandle(), args...) })
}

// gemm is cublas.linear, named for the kernel breakdown.
func (e *cudaBase) gemm(name string, y, x, w devPtr, rows, n, k int) error {
	return e.timed(name, func() error { return e.blas.linear(uintptr(y), uintptr(x), uintptr(w), rows, n, k) })
}

// timed runs f; while kernels are profiled it brackets f with events on
// the stream, waits, and adds the elapsed time to name.
func (e *cudaBase) timed(name string, f func() error) error {
	t := e.times
	if t == nil {
		return f()
	}
	if err := t.start.Record(e.stream); err != nil {
		return err
	}
	if err := f(); err != nil {
		return err
	}
	if err := t.end.Record(e.stream); err != nil {
		return err
	}
	if err := t.end.Synchronize(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	ms, err := t.start.Elapsed(t.end)
	if err != nil {
		return err
	}
	t.ms[name] += ms
	t.calls[name]++
	return nil
}

// KernelTime is one kernel's or product's share of profiled steps.
type KernelTime struct {
	Name  string
	Calls int
	Ms    float64 // device time, summed over the calls
}

// ProfileKernels runs f with every kernel and matrix product timed on the
// device (each waited for, so the sum excludes launch gaps) and returns
// the times by name, largest first.
func (e *cudaBase) ProfileKernels(f func() error) ([]KernelTime, error) {
	t := &kernelTimes{ms: map[string]float64{}, calls: map[string]int{}}
	err := e.dev.do(func() error {
		var err error
		if t.start, err = cu.MakeEvent(cu.DefaultEvent); err != nil {
			return err
		}
		t.end, err = cu.MakeEvent(cu.DefaultEvent)
		return err
	})
	if err != nil {
		return nil, err
	}
	e.times = t
	err = f()
	e.times = nil
	e.dev.do(func() error { cu.DestroyEvent(&t.start); cu.DestroyEvent(&t.end); return nil })
	var out []KernelTime
	for n, ms := range t.ms {
		out = append(out, KernelTime{Name: n, Calls: t.calls[n], Ms: ms})
	}
	slices.SortFunc(out, func(a, b KernelTime) int { return cmp.Compare(b.Ms, a.Ms) })
	return out, err
}

func (e *cudaBase) alloc(bytes int64) (devPtr, error) {
	p, err := cu.MemAlloc(max(bytes, 4))
	if err != nil {
		return 0, err
	}
	e.allocs[p] = struct{}{}
	return p, nil
}

// free gives p back; nil pointers are ignored.
func (e *cudaBase) free(p devPtr) {
	if p == 0 {
		return
	}
	cu.MemFree(p)
	delete(e.allocs, p)
}

// freeAll frees the buffers ps point to and zeroes them, so a later
// failed growth cannot free them twice.
func (e *cudaBase) freeAll(ps ...*devPtr) {
	for _, p := range ps {
		e.free(*p)
		*p = 0
	}
}

// putMeta copies a step's int32 metadata to the device on the stream,
// growing the buffer to twice what is needed when it is too small.
func (e *cudaBase) putMeta(meta []int32) error {
	if len(meta) > e.metaCap {
		e.dropGraphs()
		e.freeAll(&e.meta)
		e.metaCap = 0
		p, err := e.alloc(int64(8 * len(meta)))
		if err != nil {
			return e.oom(err, "step metadata", int64(8*len(meta)))
		}
		e.meta, e.metaCap = p, 2*len(meta)
	}
	return cu.MemcpyHtoDAsync(e.meta, unsafe.Pointer(&meta[0]), int64(4*len(meta)), e.stream)
}

func (e *cudaBase) oom(err error, what string, bytes int64) error {
	return fmt.Errorf("device out of memory allocating the %s (%.2f GiB): %w; lower --kv-blocks or --max-num-batched-tokens, or pick a smaller --model", what, float64(bytes)/(1<<30), err)
}

// put uploads the concatenation of parts in 16-bit format p (BF16 or
// FP16) and waits for the copy.
func (e *cudaBase) put(p Precision, parts ...[]float32) (devPtr, error) {
	var n int
	for _, x := range parts {
		n += len(x)
	}
	b := make([]uint16, 0, n)
	for _, x := range parts {
		b = append(b, to16(p, x)...)
	}
	d, err := e.alloc(int64(2 * len(b)))
	if err != nil {
		return 0, e.oom(err, "weights", int64(2*len(b)))
	}
	if len(b) == 0 {
		return d, nil
	}
	return d, cu.MemcpyHtoD(d, unsafe.Pointer(&b[0]), int64(2*len(b)))
}

// to16 converts x to the bits of 16-bit format p.
func to16(p Precision, x []float32) []uint16 {
	out := make([]uint16, len(x))
	for i, f := range x {
		if p == FP16 {
			out[i] = fp16Bits(f)
		} else {
			out[i] = bf16Bits(f)
		}
	}
	return out
}

// Close waits for the stream, frees every buffer, and destroys the cuBLAS
// handle, the stream and the module before the device thread gives the
// primary context back. A second Close does nothing.
func (e *cudaBase) Close() error {
	if e.dev == nil {
		return nil
	}
	var err error
	e.dev.do(func() error {
		if e.stream != (cu.Stream{}) {
			err = e.stream.Synchronize()
		}
		e.dropGraphs()
		for p := range e.allocs {
			cu.MemFree(p)
		}
		clear(e.allocs)
		if e.blas != nil {
			e.blas.destroy()
			e.blas = nil
		}
		if e.stream != (cu.Stream{}) {
			e.stream.Destroy()
			e.stream = cu.Stream{}
		}
		e.mod.unload()
		e.mod = module{}
		e.launch.free()
		return nil
	})
	e.dev.stop()
	e.dev = nil
	return err
}
