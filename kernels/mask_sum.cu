/*
 * mask_sum.cu -- the temporal-compressive-sensing mask-sum kernels of tcscodec.
 *
 * For one group of n <= B frames X_0 .. X_{n-1} (resident on the device as
 * an (n, H, W) stack) a kernel writes the group's measurement once:
 *
 *     Y[y, x] = sum_{b < n} C_b[y, x] * X_b[y, x]
 *
 * with the spec's binary masks C_b (generator id 1, "splitmix64-v1", see
 * tcscodec/masks.py).  Entry points (all extern "C", so cupy.RawModule can
 * fetch them by plain name, no name_expressions):
 *
 *     tcs_mask_sum_u8    uint8   frames -> uint16  measurement
 *     tcs_mask_sum_u16   uint16  frames -> uint32  measurement
 *     tcs_mask_sum_u32   uint32  frames -> uint64  measurement
 *     tcs_mask_sum_f32   float32 frames -> float64 measurement
 *     tcs_mask_words     the packed mask words, layout of masks.packed_masks
 *
 * mask-sum arguments, in order (tcscodec.cuda_encoder.mask_sum_args builds
 * them; the tests drive the same tuple through a host shim):
 *
 *     const T*  frames          first pixel of frame 0
 *     long long frame_stride    elements between frames
 *     long long row_stride      elements between rows of a frame
 *     int       n               frames in the group (1..64); frame b uses C_b
 *     int       height, width   frame shape
 *     const unsigned long long* words
 *                               packed masks (>= n, height, ceil(width/64)),
 *                               C-contiguous, or NULL to compute the words here
 *     unsigned long long key    mix64(seed + GOLDEN), used when words is NULL
 *     OUT*      out             measurement, first pixel
 *     long long out_row_stride  elements between rows of out
 *     int       vec             1: use 16-byte loads and stores (the caller has
 *                               checked the alignment, see below), 0: scalar
 *     int*      bad_frame       float32 only, may be NULL: atomicMin'ed with the
 *                               index b of the first frame holding a NaN or an
 *                               infinity (the caller presets it to >= n)
 *
 * Design
 * ------
 * Bandwidth.  The kernel is memory bound: it reads every frame once and
 * writes Y once (no read-modify-write of an accumulator per frame).  Each
 * thread owns P consecutive pixels of a row (P = 16 bytes / sizeof(T): 16,
 * 8, 4, 4), which all lie in one 64-bit mask word because P divides 64.  With
 * vec = 1 a thread reads one 16-byte vector of each frame and writes its P
 * measurement values with two 16-byte stores; consecutive threads own
 * consecutive chunks, so a warp reads 512 contiguous bytes of a frame.  vec
 * needs 16-byte aligned frames, frame and row strides and out rows, which
 * tcscodec.cuda_encoder.vector_ok checks (the encoder's own buffers always
 * qualify when W * sizeof(T) is a multiple of 16, e.g. every 4096-wide
 * frame).  Pixels of the last, partial chunk of a row and unaligned layouts
 * take the scalar path.  The launch is 2-D, blockDim.x * blockDim.y = 256
 * (tcscodec.cuda_encoder.mask_sum_launch): x runs over the chunks of a row
 * (a warp covers 32 consecutive chunks, or whole rows of narrow frames), y
 * over rows, both as grid-stride loops, so any frame size is covered with
 * 32-bit index arithmetic and no division.
 *
 * Masks: generated on the GPU, fused into the sum.  With words == NULL the
 * kernel computes each mask word itself from (key, b, y, x >> 6) with the
 * same SplitMix64 function as masks.py.  That costs about 30 integer
 * instructions (three 64-bit multiplies) per thread and frame, shared by the
 * thread's P pixels and well below what the memory-bound loop leaves idle,
 * and it saves (a) reading the masks, 1/8 byte per pixel and frame (+12.5 %
 * traffic for uint8, +6 % for uint16), (b) keeping B*H*W/8 bytes of masks on
 * the device (128 MiB for 4096 x 4096 at B = 64), and (c) building them with
 * numpy on the host and uploading them: 0.7 s (B = 30) to 1.5 s (B = 64) per
 * movie at that size.  Whether the fused words are really free on a given
 * GPU is measured by bench/encode_gpu.py (masks fused vs packed).  The
 * packed-word path (words != NULL) stays for checking and benchmarking the
 * two against each other and for future generator ids whose words come from
 * elsewhere; tcs_mask_words fills such a buffer on the GPU.  The tests check
 * both paths and tcs_mask_words bit for bit against masks.packed_masks.
 *
 * Exactness.  Integer sums are exact: they accumulate in 32 or 64 bits and
 * B * max(input) fits the measurement type for every B <= 64.  float32 input
 * is widened exactly to double and summed in the order b = 0, 1, ... with
 * __dadd_rn (round to nearest, never contracted into an FMA), adding +0.0
 * for masked-out pixels, which is what numpy's reference does, so the
 * result is bit-identical to tcscodec.encoder.encode_group.  NaN and
 * infinities are reported through bad_frame instead of being summed
 * silently (the CPU encoder rejects such frames too).
 *
 * Portability.  No #include: NVRTC (cupy.RawModule, options -std=c++17)
 * compiles this file without the CUDA or C++ standard headers, nvcc
 * compiles it for sm_80 / sm_90 in the tests, and tests/cuda_host_shim.h
 * turns it into plain C++ for g++, running the grid as loops, so the very
 * same source is checked bit for bit on a machine without a GPU.  Only
 * built-in types (uint4) and intrinsics (__ldg, __dadd_rn, __uint_as_float,
 * __float_as_uint, __double_as_longlong, atomicMin) are used; the shim
 * defines exactly these.
 */

// Block size the kernels are compiled for (__launch_bounds__); the launcher
// in tcscodec/cuda_encoder.py (BLOCK_SIZE) must use the same.
#define TCS_BLOCK_SIZE 256

#define TCS_GOLDEN 0x9E3779B97F4A7C15ull
#define TCS_MUL1 0xBF58476D1CE4E5B9ull
#define TCS_MUL2 0x94D049BB133111EBull

/* SplitMix64 finaliser, identical to tcscodec.masks.mix64 (mod 2**64). */
__device__ __forceinline__ unsigned long long tcs_mix64(unsigned long long z)
{
    z = (z ^ (z >> 30)) * TCS_MUL1;
    z = (z ^ (z >> 27)) * TCS_MUL2;
    return z ^ (z >> 31);
}

/* Mask word for counter (b << 48) | (y << 24) | (x >> 6) under key
   mix64(seed + GOLDEN); bit x & 63 is C_b[y, x]. */
__device__ __forceinline__ unsigned long long
tcs_mask_word(unsigned long long key, unsigned long long counter)
{
    return tcs_mix64(key + (counter + 1ull) * TCS_GOLDEN);
}

/* Component k (0..3) of a 16-byte vector; k is a compile-time constant after
   unrolling, so this folds to a register. */
__device__ __forceinline__ unsigned int tcs_lane32(const uint4& v, int k)
{
    return k == 0 ? v.x : (k == 1 ? v.y : (k == 2 ? v.z : v.w));
}

__device__ __forceinline__ uint4 tcs_make4(unsigned int a, unsigned int b,
                                           unsigned int c, unsigned int d)
{
    uint4 r;
    r.x = a;
    r.y = b;
    r.z = c;
    r.w = d;
    return r;
}

/* Per input type: measurement type, accumulator type, pixels per thread P
   (16 bytes of input), unpacking of a 16-byte vector, the masked add and the
   two 16-byte stores of P measurement values (32 bytes). */
template <typename T>
struct tcs_traits;

template <>
struct tcs_traits<unsigned char> {
    typedef unsigned short out_t;
    typedef unsigned int acc_t;  // 32-bit registers; 64 * 255 fits out_t
    enum { P = 16 };
    static __device__ __forceinline__ acc_t lane(const uint4& v, int i)
    {
        return (tcs_lane32(v, i >> 2) >> ((i & 3) * 8)) & 0xffu;
    }
    static __device__ __forceinline__ acc_t scalar(unsigned char v) { return v; }
    static __device__ __forceinline__ bool nonfinite_lane(const uint4&, int) { return false; }
    static __device__ __forceinline__ bool nonfinite(unsigned char) { return false; }
    static __device__ __forceinline__ void add(acc_t& a, acc_t x, unsigned int m)
    {
        a += m ? x : 0u;
    }
    static __device__ __forceinline__ void store_vec(out_t* dst, const acc_t* a)
    {
        uint4* d = reinterpret_cast<uint4*>(dst);
        d[0] = tcs_make4(a[0] | (a[1] << 16), a[2] | (a[3] << 16),
                         a[4] | (a[5] << 16), a[6] | (a[7] << 16));
        d[1] = tcs_make4(a[8] | (a[9] << 16), a[10] | (a[11] << 16),
                         a[12] | (a[13] << 16), a[14] | (a[15] << 16));
    }
};

template <>
struct tcs_traits<unsigned short> {
    typedef unsigned int out_t;
    typedef unsigned int acc_t;
    enum { P = 8 };
    static __device__ __forceinline__ acc_t lane(const uint4& v, int i)
    {
        return (tcs_lane32(v, i >> 1) >> ((i & 1) * 16)) & 0xffffu;
    }
    static __device__ __forceinline__ acc_t scalar(unsigned short v) { return v; }
    static __device__ __forceinline__ bool nonfinite_lane(const uint4&, int) { return false; }
    static __device__ __forceinline__ bool nonfinite(unsigned short) { return false; }
    static __device__ __forceinline__ void add(acc_t& a, acc_t x, unsigned int m)
    {
        a += m ? x : 0u;
    }
    static __device__ __forceinline__ void store_vec(out_t* dst, const acc_t* a)
    {
        uint4* d = reinterpret_cast<uint4*>(dst);
        d[0] = tcs_make4(a[0], a[1], a[2], a[3]);
        d[1] = tcs_make4(a[4], a[5], a[6], a[7]);
    }
};

template <>
struct tcs_traits<unsigned int> {
    typedef unsigned long long out_t;
    typedef unsigned long long acc_t;
    enum { P = 4 };
    static __device__ __forceinline__ acc_t lane(const uint4& v, int i)
    {
        return tcs_lane32(v, i);
    }
    static __device__ __forceinline__ acc_t scalar(unsigned int v) { return v; }
    static __device__ __forceinline__ bool nonfinite_lane(const uint4&, int) { return false; }
    static __device__ __forceinline__ bool nonfinite(unsigned int) { return false; }
    static __device__ __forceinline__ void add(acc_t& a, acc_t x, unsigned int m)
    {
        a += m ? x : 0ull;
    }
    static __device__ __forceinline__ void store_vec(out_t* dst, const acc_t* a)
    {
        // little endian: low word first
        uint4* d = reinterpret_cast<uint4*>(dst);
        d[0] = tcs_make4((unsigned int)a[0], (unsigned int)(a[0] >> 32),
                         (unsigned int)a[1], (unsigned int)(a[1] >> 32));
        d[1] = tcs_make4((unsigned int)a[2], (unsigned int)(a[2] >> 32),
                         (unsigned int)a[3], (unsigned int)(a[3] >> 32));
    }
};

template <>
struct tcs_traits<float> {
    typedef double out_t;
    typedef double acc_t;
    enum { P = 4 };
    static __device__ __forceinline__ acc_t lane(const uint4& v, int i)
    {
        return (double)__uint_as_float(tcs_lane32(v, i));  // exact widening
    }
    static __device__ __forceinline__ acc_t scalar(float v) { return (double)v; }
    // exponent all ones: infinity or NaN
    static __device__ __forceinline__ bool nonfinite_lane(const uint4& v, int i)
    {
        return (tcs_lane32(v, i) & 0x7f800000u) == 0x7f800000u;
    }
    static __device__ __forceinline__ bool nonfinite(float v)
    {
        return (__float_as_uint(v) & 0x7f800000u) == 0x7f800000u;
    }
    static __device__ __forceinline__ void add(acc_t& a, acc_t x, unsigned int m)
    {
        // numpy adds where(C, x, 0): +0.0 for masked-out pixels; an explicit
        // round-to-nearest add keeps the compiler from reordering/contracting
        a = __dadd_rn(a, m ? x : 0.0);
    }
    static __device__ __forceinline__ void store_vec(out_t* dst, const acc_t* a)
    {
        uint4* d = reinterpret_cast<uint4*>(dst);
        const unsigned long long w0 = (unsigned long long)__double_as_longlong(a[0]);
        const unsigned long long w1 = (unsigned long long)__double_as_longlong(a[1]);
        const unsigned long long w2 = (unsigned long long)__double_as_longlong(a[2]);
        const unsigned long long w3 = (unsigned long long)__double_as_longlong(a[3]);
        d[0] = tcs_make4((unsigned int)w0, (unsigned int)(w0 >> 32),
                         (unsigned int)w1, (unsigned int)(w1 >> 32));
        d[1] = tcs_make4((unsigned int)w2, (unsigned int)(w2 >> 32),
                         (unsigned int)w3, (unsigned int)(w3 >> 32));
    }
};

/* The mask sum of one group; see the header for the arguments. */
template <typename T>
__device__ __forceinline__ void tcs_mask_sum(
    const T* __restrict__ frames, long long frame_stride, long long row_stride,
    int n, int height, int width,
    const unsigned long long* __restrict__ words, unsigned long long key,
    typename tcs_traits<T>::out_t* __restrict__ out, long long out_row_stride,
    int vec, int* __restrict__ bad_frame)
{
    typedef tcs_traits<T> Tr;
    typedef typename Tr::acc_t acc_t;
    typedef typename Tr::out_t out_t;
    enum { P = Tr::P };

    // 2-D grid-stride loops: x over the P-pixel chunks of a row, y over rows.
    // No 64-bit division of a flat index (a subroutine call that made ptxas
    // spill on sm_80); width <= 2**30 and height <= 2**24 keep 32 bits.
    const unsigned int chunks_per_row = ((unsigned int)width + P - 1) / P;
    const unsigned long long words_per_row = ((unsigned long long)width + 63ull) >> 6;
    const unsigned long long words_per_mask = words_per_row * (unsigned long long)height;
    int first_bad = n;

    for (unsigned int yy = blockIdx.y * blockDim.y + threadIdx.y; yy < (unsigned int)height;
         yy += gridDim.y * blockDim.y) {
    for (unsigned int c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks_per_row;
         c += gridDim.x * blockDim.x) {
        const unsigned long long y = yy;
        const int x0 = (int)c * P;
        const unsigned long long wx = (unsigned long long)(x0 >> 6);
        const int shift = x0 & 63;  // P divides 64: the chunk's bits are shift .. shift+P-1
        const unsigned long long counter0 = (y << 24) | wx;
        const unsigned long long* wsrc = words ? words + y * words_per_row + wx : 0;
        const T* src = frames + (long long)y * row_stride + x0;
        out_t* dst = out + (long long)y * out_row_stride + x0;

        acc_t acc[P];
#pragma unroll
        for (int i = 0; i < P; ++i) acc[i] = 0;

        if (vec && x0 + P <= width) {
            // full chunk, 16-byte aligned: one vector load per frame
#pragma unroll 4
            for (int b = 0; b < n; ++b) {
                const unsigned long long w = wsrc
                    ? __ldg(wsrc + (unsigned long long)b * words_per_mask)
                    : tcs_mask_word(key, ((unsigned long long)b << 48) | counter0);
                const unsigned int bits = (unsigned int)(w >> shift);
                const uint4 v = __ldg(reinterpret_cast<const uint4*>(src + (long long)b * frame_stride));
#pragma unroll
                for (int i = 0; i < P; ++i) {
                    if (Tr::nonfinite_lane(v, i) && b < first_bad) first_bad = b;
                    Tr::add(acc[i], Tr::lane(v, i), (bits >> i) & 1u);
                }
            }
            Tr::store_vec(dst, acc);
        } else {
            // last partial chunk of a row, or an unaligned layout
            const int m = width - x0 < P ? width - x0 : P;
            for (int b = 0; b < n; ++b) {
                const unsigned long long w = wsrc
                    ? __ldg(wsrc + (unsigned long long)b * words_per_mask)
                    : tcs_mask_word(key, ((unsigned long long)b << 48) | counter0);
                const unsigned int bits = (unsigned int)(w >> shift);
                const T* p = src + (long long)b * frame_stride;
#pragma unroll
                for (int i = 0; i < P; ++i) {
                    if (i < m) {
                        const T v = __ldg(p + i);
                        if (Tr::nonfinite(v) && b < first_bad) first_bad = b;
                        Tr::add(acc[i], Tr::scalar(v), (bits >> i) & 1u);
                    }
                }
            }
#pragma unroll
            for (int i = 0; i < P; ++i)
                if (i < m) dst[i] = (out_t)acc[i];
        }
    }
    }
    // one atomic per thread that saw a bad value, none on the normal path
    if (first_bad < n && bad_frame) atomicMin(bad_frame, first_bad);
}

#define TCS_MASK_SUM_ENTRY(NAME, T, OUT)                                          \
    extern "C" __global__ void __launch_bounds__(TCS_BLOCK_SIZE) NAME(            \
        const T* __restrict__ frames, long long frame_stride, long long row_stride, \
        int n, int height, int width,                                             \
        const unsigned long long* __restrict__ words, unsigned long long key,      \
        OUT* __restrict__ out, long long out_row_stride,                          \
        int vec, int* __restrict__ bad_frame)                                     \
    {                                                                             \
        tcs_mask_sum<T>(frames, frame_stride, row_stride, n, height, width,       \
                        words, key, out, out_row_stride, vec, bad_frame);         \
    }

TCS_MASK_SUM_ENTRY(tcs_mask_sum_u8, unsigned char, unsigned short)
TCS_MASK_SUM_ENTRY(tcs_mask_sum_u16, unsigned short, unsigned int)
TCS_MASK_SUM_ENTRY(tcs_mask_sum_u32, unsigned int, unsigned long long)
TCS_MASK_SUM_ENTRY(tcs_mask_sum_f32, float, double)

/* The packed masks words[b, y, w] (n_masks, height, words_per_row), exactly
   masks.packed_masks(seed, n_masks, height, width) for
   words_per_row = ceil(width / 64) and key = mix64(seed + GOLDEN). */
extern "C" __global__ void __launch_bounds__(TCS_BLOCK_SIZE) tcs_mask_words(
    unsigned long long key, int n_masks, int height, long long words_per_row,
    unsigned long long* __restrict__ words)
{
    const unsigned long long wpr = (unsigned long long)words_per_row;
    const unsigned long long total = (unsigned long long)n_masks * (unsigned long long)height * wpr;
    const unsigned long long step = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
         i < total; i += step) {
        const unsigned long long w = i % wpr;
        const unsigned long long r = i / wpr;
        const unsigned long long y = r % (unsigned long long)height;
        const unsigned long long b = r / (unsigned long long)height;
        words[i] = tcs_mask_word(key, (b << 48) | (y << 24) | w);
    }
}
