/*
 * cuda_host_shim.cpp -- kernels/mask_sum.cu compiled by g++ for the CPU.
 *
 * Built by tests/test_cuda_kernels.py:
 *
 *     g++ -std=c++17 -O2 -shared -fPIC -ffp-contract=off -fno-strict-aliasing
 *         -I tests -I kernels tests/cuda_host_shim.cpp -o libtcs_shim.so
 *
 * shim_launch(name, grid_x, grid_y, block_x, block_y, args) takes the kernel arguments the way
 * cuLaunchKernel does (and so the way CuPy passes them): args[i] points at
 * the bytes of argument i.  Each argument is read back with the type the
 * kernel declares, so a Python argument tuple of the wrong order or width
 * gives wrong results here just as it would on the GPU.
 */
#include "cuda_host_shim.h"

#include "mask_sum.cu"

#include <cstddef>
#include <cstring>
#include <utility>

namespace {

struct dim_t {
    unsigned int x, y;
};

template <typename... A, std::size_t... I>
void call_with(void (*kernel)(A...), void** args, std::index_sequence<I...>)
{
    kernel(*static_cast<A*>(args[I])...);
}

template <typename... A>
void run_grid(void (*kernel)(A...), dim_t grid, dim_t block, void** args)
{
    gridDim = {grid.x, grid.y, 1};
    blockDim = {block.x, block.y, 1};
    for (unsigned int by = 0; by < grid.y; ++by)
        for (unsigned int bx = 0; bx < grid.x; ++bx)
            for (unsigned int ty = 0; ty < block.y; ++ty)
                for (unsigned int tx = 0; tx < block.x; ++tx) {
                    blockIdx = {bx, by, 0};
                    threadIdx = {tx, ty, 0};
                    call_with(kernel, args, std::index_sequence_for<A...>{});
                }
}

}  // namespace

extern "C" int shim_block_size(void)
{
    return TCS_BLOCK_SIZE;
}

/* Run kernel `name` over a (grid_x, grid_y) x (block_x, block_y) launch;
   0 on success, -1 for an unknown name. */
extern "C" int shim_launch(const char* name, unsigned int grid_x, unsigned int grid_y,
                           unsigned int block_x, unsigned int block_y, void** args)
{
    const dim_t grid = {grid_x, grid_y}, block = {block_x, block_y};
    if (!std::strcmp(name, "tcs_mask_sum_u8"))
        run_grid(tcs_mask_sum_u8, grid, block, args);
    else if (!std::strcmp(name, "tcs_mask_sum_u16"))
        run_grid(tcs_mask_sum_u16, grid, block, args);
    else if (!std::strcmp(name, "tcs_mask_sum_u32"))
        run_grid(tcs_mask_sum_u32, grid, block, args);
    else if (!std::strcmp(name, "tcs_mask_sum_f32"))
        run_grid(tcs_mask_sum_f32, grid, block, args);
    else if (!std::strcmp(name, "tcs_mask_words"))
        run_grid(tcs_mask_words, grid, block, args);
    else
        return -1;
    return 0;
}
