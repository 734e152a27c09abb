// Host emulation of the CUDA constructs the nas-rs kernels use, so that the same `.cu` sources
// compile as C++ and run on the CPU (the `cuda-emu` feature; tests only).
//
// - One launch at a time (a process-wide lock); one block at a time; the threads of a block are
//   fibers (ucontext) on the launching thread, switched only at barriers, so `__shared__`
//   (mapped to `static`) is exactly the running block's shared memory.
// - `__syncthreads()` waits for every thread of the block and `__syncwarp()`/the shuffles for
//   every lane of the warp (32 consecutive linear thread indices). A barrier that can never
//   complete (a thread returned early, divergent barriers) fails the launch with an error
//   naming the kernel, where a GPU would hang or be undefined.
// - Atomics are plain read-modify-writes (fibers switch only at barriers).
// - TF32 tensor cores: `nas_cvt_tf32` is cvt.rna.tf32.f32 on the bits, `nas_mma_tf32` is
//   mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 for the calling warp: each lane hands
//   in its fragments, the 16 x 8 x 8 product is assembled with the PTX ISA's fragment layout
//   (see prelude.cuh) and each lane gets its own four accumulators back. It needs the full
//   warp (a warp barrier) and fails the launch on an operand that is not a TF32 value (low 13
//   bits set: a missing cvt), where the hardware's result is undefined.
// - Device memory is host memory with inaccessible guard pages after (and before) each
//   buffer: an access past the end of a buffer stops the process with a message naming the
//   kernel, block and thread (see emu_runtime.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#define NAS_EMU 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __shared__ static
#define __launch_bounds__(...)

struct dim3 {
    unsigned int x, y, z;
};

struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline float2 make_float2(float x, float y) { return float2{x, y}; }

namespace emu {
extern dim3 thread_idx, block_idx, block_dim, grid_dim;
void sync_block();
void sync_warp();
unsigned long long exchange(unsigned long long mine, int src_lane);
int lane_id();
int warp_lanes();

unsigned cvt_rna_tf32(float x);
void mma_tf32_m16n8k8(float d[4], const unsigned a[4], const unsigned b[2]);
void fail(const char* msg);

using Body = void (*)(void**);
struct Registrar {
    Registrar(const char* name, Body body);
};

template <typename... A, std::size_t... I>
void invoke_impl(void (*k)(A...), void** args, std::index_sequence<I...>) {
    k(*static_cast<std::decay_t<A>*>(args[I])...);
}
template <typename... A>
void invoke(void (*k)(A...), void** args) {
    invoke_impl(k, args, std::index_sequence_for<A...>{});
}

template <typename T>
T shuffle(T v, int src_lane) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    unsigned long long bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    bits = exchange(bits, src_lane);
    T out;
    std::memcpy(&out, &bits, sizeof(T));
    return out;
}
}  // namespace emu

#define threadIdx (emu::thread_idx)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)
#define warpSize 32

inline void __syncthreads() { emu::sync_block(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::sync_warp(); }

// Lane `src` of the caller's `width`-lane segment; lanes outside the segment read their own
// value, as on the GPU for down/up shuffles.
template <typename T>
T __shfl_sync(unsigned, T v, int src, int width = 32) {
    int lane = emu::lane_id();
    int base = lane - lane % width;
    return emu::shuffle(v, base + ((src % width) + width) % width);
}
template <typename T>
T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
    int lane = emu::lane_id();
    int seg = lane % width;
    int src = (seg + (int)delta < width) ? lane + (int)delta : lane;
    if (src >= emu::warp_lanes()) src = lane;
    return emu::shuffle(v, src);
}
template <typename T>
T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
    int lane = emu::lane_id();
    int base = lane - lane % width;
    int src = base + ((lane % width) ^ mask);
    if (src >= emu::warp_lanes() || src - base >= width) src = lane;
    return emu::shuffle(v, src);
}

inline unsigned nas_cvt_tf32(float x) { return emu::cvt_rna_tf32(x); }
inline void nas_mma_tf32(float d[4], const unsigned a[4], const unsigned b[2]) {
    emu::mma_tf32_m16n8k8(d, a, b);
}

template <typename T>
T atomicAdd(T* p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}
template <typename T>
T atomicMax(T* p, T v) {
    T old = *p;
    *p = old > v ? old : v;
    return old;
}
template <typename T>
T atomicCAS(T* p, T cmp, T v) {
    T old = *p;
    if (old == cmp) *p = v;
    return old;
}

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline unsigned __umulhi(unsigned a, unsigned b) {
    return (unsigned)(((unsigned long long)a * b) >> 32);
}
inline unsigned __float_as_uint(float f) {
    unsigned u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float __uint_as_float(unsigned u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}
template <typename T>
T __ldg(const T* p) {
    return *p;
}

// One launch export per kernel: a body that unpacks the argument pointers (the layout
// cuLaunchKernel takes) and calls the kernel, registered under the kernel's name.
#define EMU_EXPORT(name)                                                 \
    static void emu_body_##name(void** args) { emu::invoke(name, args); } \
    static emu::Registrar emu_registrar_##name(#name, &emu_body_##name);
