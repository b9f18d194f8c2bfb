//go:build cuda

package gpu

/*
#cgo LDFLAGS: -lcublas
#include <cublas_v2.h>

#include <stdint.h>

// Device pointers arrive as integers (they are not Go pointers).
static cublasStatus_t gemm16(cublasHandle_t h, cudaDataType in, int m, int n, int k, uint64_t A, int lda, uint64_t B, int ldb, uint64_t C, int ldc) {
	const float alpha = 1.0f, beta = 0.0f;
	return cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, (const void*)A, in, lda, (const void*)B, in, ldb,
		&beta, (void*)C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

static cublasStatus_t gemm16_strided(cublasHandle_t h, cudaDataType in, int m, int n, int k, uint64_t A, int lda, long long sA,
		uint64_t B, int ldb, long long sB, uint64_t C, int ldc, long long sC, int batch) {
	const float alpha = 1.0f, beta = 0.0f;
	return cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, (const void*)A, in, lda, sA,
		(const void*)B, in, ldb, sB, &beta, (void*)C, CUDA_R_32F, ldc, sC, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

static cublasStatus_t set_stream(cublasHandle_t h, uint64_t s) { return cublasSetStream_v2(h, (cudaStream_t)s); }
static cublasStatus_t set_workspace(cublasHandle_t h, uint64_t p, size_t n) { return cublasSetWorkspace_v2(h, (void*)p, n); }
*/
import "C"

import "fmt"

// cublas is the project's own binding of the few cuBLAS calls that
// gorgonia.org/cu/blas lacks: GemmEx and GemmStridedBatchedEx with 16-bit
// inputs (bf16 or fp16) and fp32 accumulation and output, and SetStream.
type cublas struct {
	h  C.cublasHandle_t
	in C.cudaDataType
}

// newCublas makes a handle whose products take inputs in format p (BF16
// or FP16).
func newCublas(p Precision) (*cublas, error) {
	b := cublas{in: C.CUDA_R_16BF}
	if p == FP16 {
		b.in = C.CUDA_R_16F
	}
	if st := C.cublasCreate_v2(&b.h); st != C.CUBLAS_STATUS_SUCCESS {
		return nil, fmt.Errorf("cublasCreate: status %d", int(st))
	}
	return &b, nil
}

// setStream binds later calls to a CUDA stream (a CUstream from
// gorgonia.org/cu, which is the runtime's cudaStream_t).
func (b *cublas) setStream(stream uintptr) error {
	if st := C.set_stream(b.h, C.uint64_t(stream)); st != C.CUBLAS_STATUS_SUCCESS {
		return fmt.Errorf("cublasSetStream: status %d", int(st))
	}
	return nil
}

// setWorkspace gives the handle n bytes of device memory at p to work in.
func (b *cublas) setWorkspace(p uintptr, n int) error {
	if st := C.set_workspace(b.h, C.uint64_t(p), C.size_t(n)); st != C.CUBLAS_STATUS_SUCCESS {
		return fmt.Errorf("cublasSetWorkspace: status %d", int(st))
	}
	return nil
}

// linear computes Y[rows, n] = X[rows, k] . W[n, k]^T, X and W row-major
// 16-bit, Y row-major fp32: in column-major terms Y^T = W . X^T.
func (b *cublas) linear(y, x, w uintptr, rows, n, k int) error {
	st := C.gemm16(b.h, b.in, C.int(n), C.int(rows), C.int(k), C.uint64_t(w), C.int(k), C.uint64_t(x), C.int(k), C.uint64_t(y), C.int(n))
	if st != C.CUBLAS_STATUS_SUCCESS {
		return fmt.Errorf("cublasGemmEx %dx%dx%d: status %d", rows, n, k, int(st))
	}
	return nil
}

// linearBatched is linear over batch independent problems laid out with
// the given element strides.
func (b *cublas) linearBatched(y, x, w uintptr, rows, n, k int, sy, sx, sw int64, batch int) error {
	st := C.gemm16_strided(b.h, b.in, C.int(n), C.int(rows), C.int(k), C.uint64_t(w), C.int(k), C.longlong(sw),
		C.uint64_t(x), C.int(k), C.longlong(sx), C.uint64_t(y), C.int(n), C.longlong(sy), C.int(batch))
	if st != C.CUBLAS_STATUS_SUCCESS {
		return fmt.Errorf("cublasGemmStridedBatchedEx: status %d", int(st))
	}
	return nil
}

func (b *cublas) destroy() { C.cublasDestroy_v2(b.h) }
