/*
 * cuda_host_shim.h -- just enough CUDA for g++ to compile kernels/mask_sum.cu
 * as plain C++ (tests/test_cuda_kernels.py).
 *
 * The kernels then become ordinary extern "C" functions; cuda_host_shim.cpp
 * runs a launch as loops over blockIdx and threadIdx.  That is a valid
 * schedule for kernels without __syncthreads or shared memory, which is
 * what mask_sum.cu is, so the host run computes what the device computes.
 * Each intrinsic below has the device's exact semantics for the way the
 * kernels use it (compile with -ffp-contract=off -fno-strict-aliasing, as
 * the test does: no FMA contraction, and vector loads that reinterpret the
 * frame's bytes like the GPU does).
 */
#ifndef TCS_CUDA_HOST_SHIM_H
#define TCS_CUDA_HOST_SHIM_H

#include <cstring>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct uint3 {
    unsigned int x, y, z;
};

// CUDA's uint4 is 16-byte aligned; a load of one is one 128-bit access.
struct alignas(16) uint4 {
    unsigned int x, y, z, w;
};

// Built-in index variables, set by the launcher before each "thread" runs.
inline uint3 threadIdx = {0, 0, 0};
inline uint3 blockIdx = {0, 0, 0};
inline uint3 blockDim = {1, 1, 1};
inline uint3 gridDim = {1, 1, 1};

template <typename T>
inline T __ldg(const T* p)
{
    return *p;
}

// x86-64 doubles are IEEE binary64 with round to nearest even (SSE2, no
// x87 excess precision), like __dadd_rn.
inline double __dadd_rn(double a, double b)
{
    return a + b;
}

inline float __uint_as_float(unsigned int u)
{
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

inline unsigned int __float_as_uint(float f)
{
    unsigned int u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

inline long long __double_as_longlong(double d)
{
    long long u;
    std::memcpy(&u, &d, sizeof u);
    return u;
}

// The launcher runs one thread at a time, so a plain read-modify-write is
// atomic here.
inline int atomicMin(int* address, int val)
{
    const int old = *address;
    if (val < old) *address = val;
    return old;
}

#endif  // TCS_CUDA_HOST_SHIM_H
