//go:build cuda

package gpu

/*
#cgo LDFLAGS: -lcuda
#include <cuda.h>
#include <stdint.h>
#include <stdlib.h>

// maxKernelArgs bounds a kernel's arguments: the launch block holds that
// many 8-byte slots and pointers to them.
#define maxKernelArgs 24

typedef struct {
	uint64_t slot[maxKernelArgs];
	void*    ptr[maxKernelArgs];
} launchArgs;

static launchArgs* newLaunchArgs(void) {
	launchArgs* a = (launchArgs*)malloc(sizeof(launchArgs));
	if (a) for (int i = 0; i < maxKernelArgs; i++) a->ptr[i] = &a->slot[i];
	return a;
}

static CUresult launchKernel(uint64_t fn, unsigned gx, unsigned gy, unsigned gz, unsigned block, unsigned shmem, uint64_t stream, launchArgs* a) {
	return cuLaunchKernel((CUfunction)fn, gx, gy, gz, block, 1, 1, shmem, (CUstream)stream, a->ptr, NULL);
}

static CUresult loadModule(const char* image, uint64_t* mod) { return cuModuleLoadData((CUmodule*)mod, image); }
static CUresult moduleFunction(uint64_t mod, const char* name, uint64_t* fn) { return cuModuleGetFunction((CUfunction*)fn, (CUmodule)mod, name); }
static CUresult unloadModule(uint64_t mod) { return cuModuleUnload((CUmodule)mod); }

static CUresult beginCapture(uint64_t stream) { return cuStreamBeginCapture((CUstream)stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL); }

// endCapture ends a capture and instantiates its graph; the graph itself
// is not kept. The capture is ended even when instantiation fails.
static CUresult endCapture(uint64_t stream, uint64_t* exec) {
	CUgraph g = NULL;
	CUresult r = cuStreamEndCapture((CUstream)stream, &g);
	if (r != CUDA_SUCCESS) return r;
	r = cuGraphInstantiateWithFlags((CUgraphExec*)exec, g, 0);
	cuGraphDestroy(g);
	return r;
}

static CUresult launchGraph(uint64_t exec, uint64_t stream) { return cuGraphLaunch((CUgraphExec)exec, (CUstream)stream); }
static CUresult destroyGraph(uint64_t exec) { return cuGraphExecDestroy((CUgraphExec)exec); }
*/
import "C"

import (
	"fmt"
	"math"
	"unsafe"
)

// The few driver calls made here rather than through gorgonia.org/cu:
// its Function.Launch mallocs and frees two C arrays on every launch, and
// a decode step of an 8B model launches about 400 kernels. A launcher
// keeps one C block of argument slots for its device thread's lifetime.

type module struct{ h C.uint64_t }

func loadModule(ptx []byte) (module, error) {
	img := C.CString(string(ptx))
	defer C.free(unsafe.Pointer(img))
	var m module
	if r := C.loadModule(img, &m.h); r != C.CUDA_SUCCESS {
		return m, fmt.Errorf("cuModuleLoadData: CUDA error %d", int(r))
	}
	return m, nil
}

func (m module) function(name string) (kernel, error) {
	n := C.CString(name)
	defer C.free(unsafe.Pointer(n))
	var k kernel
	if r := C.moduleFunction(m.h, n, &k.h); r != C.CUDA_SUCCESS {
		return k, fmt.Errorf("kernel %s: CUDA error %d", name, int(r))
	}
	k.name = name
	return k, nil
}

func (m module) unload() {
	if m.h != 0 {
		C.unloadModule(m.h)
	}
}

type kernel struct {
	h    C.uint64_t
	name string
}

// launcher launches kernels with arguments copied into its C block; it
// belongs to one device thread.
type launcher struct{ a *C.launchArgs }

func newLauncher() (*launcher, error) {
	a := C.newLaunchArgs()
	if a == nil {
		return nil, fmt.Errorf("allocating kernel argument slots")
	}
	return &launcher{a: a}, nil
}

func (l *launcher) free() {
	if l != nil && l.a != nil {
		C.free(unsafe.Pointer(l.a))
		l.a = nil
	}
}

// launch runs k on a grid of gx x gy x gz blocks of block threads on
// stream; args are device pointers, integers (passed as 64-bit) and
// float32s (in an 8-byte slot).
func (l *launcher) launch(k kernel, gx, gy, gz, block int, stream uintptr, args ...any) error {
	if len(args) > C.maxKernelArgs {
		return fmt.Errorf("kernel %s: %d arguments, at most %d", k.name, len(args), C.maxKernelArgs)
	}
	if gx < 1 || gy < 1 || gz < 1 {
		return fmt.Errorf("kernel %s: empty grid %dx%dx%d", k.name, gx, gy, gz)
	}
	slots := unsafe.Slice((*uint64)(unsafe.Pointer(&l.a.slot[0])), C.maxKernelArgs)
	for i, a := range args {
		switch v := a.(type) {
		case devPtr:
			slots[i] = uint64(v)
		case int:
			slots[i] = uint64(int64(v))
		case int64:
			slots[i] = uint64(v)
		case uint64:
			slots[i] = v
		case float32:
			slots[i] = uint64(math.Float32bits(v))
		default:
			return fmt.Errorf("kernel %s: argument %d of type %T", k.name, i, a)
		}
	}
	if r := C.launchKernel(k.h, C.uint(gx), C.uint(gy), C.uint(gz), C.uint(block), 0, C.uint64_t(stream), l.a); r != C.CUDA_SUCCESS {
		return fmt.Errorf("kernel %s: CUDA error %d", k.name, int(r))
	}
	return nil
}

// graphExec is an instantiated CUDA graph.
type graphExec struct{ h C.uint64_t }

func beginCapture(stream uintptr) error {
	if r := C.beginCapture(C.uint64_t(stream)); r != C.CUDA_SUCCESS {
		return fmt.Errorf("cuStreamBeginCapture: CUDA error %d", int(r))
	}
	return nil
}

func endCapture(stream uintptr) (graphExec, error) {
	var g graphExec
	if r := C.endCapture(C.uint64_t(stream), &g.h); r != C.CUDA_SUCCESS {
		return graphExec{}, fmt.Errorf("capturing a CUDA graph: CUDA error %d", int(r))
	}
	return g, nil
}

func (g graphExec) launch(stream uintptr) error {
	if r := C.launchGraph(g.h, C.uint64_t(stream)); r != C.CUDA_SUCCESS {
		return fmt.Errorf("cuGraphLaunch: CUDA error %d", int(r))
	}
	return nil
}

func (g graphExec) destroy() {
	if g.h != 0 {
		C.destroyGraph(g.h)
	}
}
