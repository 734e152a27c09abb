// The emulator's runtime: fibers, barriers, shuffles, launches, guarded memory. Compiled in
// one translation unit with emu.h and every kernel (see build.rs), so the kernels'
// registrations are linked whenever the launch entry point is.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>
#include <vector>

#include "emu.h"

namespace emu {
dim3 thread_idx, block_idx, block_dim, grid_dim;

namespace {
enum State { RUNNABLE, WAIT_BLOCK, WAIT_WARP, DONE };
struct Fiber {
    ucontext_t ctx;
    void* stack = nullptr;
    State state = RUNNABLE;
    unsigned wait_gen = 0;
};
constexpr std::size_t STACK_BYTES = 256 * 1024;
constexpr int MAX_THREADS = 1024;

std::vector<Fiber> fibers(MAX_THREADS);
ucontext_t scheduler;
int current = -1;
int nthreads = 0;
unsigned block_gen = 0;
int block_arrived = 0;
unsigned warp_gen[MAX_THREADS / 32];
int warp_arrived[MAX_THREADS / 32];
unsigned long long slots[MAX_THREADS];
Body body = nullptr;
void** body_args = nullptr;
const char* kernel_name = "";
bool in_launch = false;
std::mutex launch_lock;
std::string launch_error;  // the first error a kernel raised (emu::fail)
unsigned mma_a[MAX_THREADS][4], mma_b[MAX_THREADS][2];

std::map<std::string, Body>& registry() {
    static std::map<std::string, Body> r;
    return r;
}

void set_thread(int i) {
    thread_idx.x = i % block_dim.x;
    thread_idx.y = (i / block_dim.x) % block_dim.y;
    thread_idx.z = i / (block_dim.x * block_dim.y);
}

void fiber_main() {
    body(body_args);
    fibers[current].state = DONE;
    // returning resumes `scheduler` through uc_link
}

void yield(State s, unsigned gen) {
    Fiber& f = fibers[current];
    f.state = s;
    f.wait_gen = gen;
    swapcontext(&f.ctx, &scheduler);
}

void on_segv(int sig, siginfo_t* info, void*) {
    if (in_launch) {
        char msg[512];
        int n = std::snprintf(msg, sizeof msg,
                              "\nemulated CUDA kernel `%s` (block %u,%u,%u thread %u,%u,%u) "
                              "accessed %p outside its buffers\n",
                              kernel_name, block_idx.x, block_idx.y, block_idx.z, thread_idx.x,
                              thread_idx.y, thread_idx.z, info->si_addr);
        if (n > 0) (void)!write(2, msg, (std::size_t)n);
        _exit(134);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void install_handler() {
    static bool done = false;
    if (done) return;
    done = true;
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, nullptr);
    sigaction(SIGBUS, &sa, nullptr);
}

void ensure_altstack() {
    static thread_local bool done = false;
    if (done) return;
    done = true;
    stack_t ss;
    ss.ss_size = 64 * 1024;
    ss.ss_sp = std::malloc(ss.ss_size);
    ss.ss_flags = 0;
    sigaltstack(&ss, nullptr);
}

// Runs one block; returns an error message or empty.
std::string run_block() {
    for (int i = 0; i < nthreads; i++) {
        Fiber& f = fibers[i];
        if (!f.stack) {
            f.stack = mmap(nullptr, STACK_BYTES, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
            if (f.stack == MAP_FAILED) {
                f.stack = nullptr;
                return "cannot allocate fiber stacks";
            }
        }
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack;
        f.ctx.uc_stack.ss_size = STACK_BYTES;
        f.ctx.uc_link = &scheduler;
        makecontext(&f.ctx, fiber_main, 0);
        f.state = RUNNABLE;
    }
    block_arrived = 0;
    for (int w = 0; w < (nthreads + 31) / 32; w++) warp_arrived[w] = 0;
    int remaining = nthreads;
    while (remaining > 0) {
        bool progressed = false;
        for (int i = 0; i < nthreads; i++) {
            Fiber& f = fibers[i];
            if (f.state == DONE) continue;
            if (f.state == WAIT_BLOCK && f.wait_gen == block_gen) continue;
            if (f.state == WAIT_WARP && f.wait_gen == warp_gen[i / 32]) continue;
            f.state = RUNNABLE;
            current = i;
            set_thread(i);
            swapcontext(&scheduler, &f.ctx);
            progressed = true;
            if (f.state == DONE) remaining--;
        }
        if (!progressed) {
            int at_block = 0, at_warp = 0;
            for (int i = 0; i < nthreads; i++) {
                at_block += fibers[i].state == WAIT_BLOCK;
                at_warp += fibers[i].state == WAIT_WARP;
            }
            return "barrier deadlock: " + std::to_string(at_block) + " threads wait at __syncthreads, " +
                   std::to_string(at_warp) + " at a warp barrier or shuffle, " +
                   std::to_string(nthreads - remaining) +
                   " have returned (every thread of the block must reach each barrier)";
        }
    }
    return "";
}
}  // namespace

void sync_block() {
    if (++block_arrived == nthreads) {
        block_arrived = 0;
        block_gen++;
        return;
    }
    yield(WAIT_BLOCK, block_gen);
}

int lane_id() { return current % 32; }
int warp_lanes() {
    int w = current / 32;
    return std::min(32, nthreads - w * 32);
}

void sync_warp() {
    int w = current / 32;
    if (++warp_arrived[w] == warp_lanes()) {
        warp_arrived[w] = 0;
        warp_gen[w]++;
        return;
    }
    yield(WAIT_WARP, warp_gen[w]);
}

unsigned long long exchange(unsigned long long mine, int src_lane) {
    int base = current - current % 32;
    slots[current] = mine;
    sync_warp();
    unsigned long long v = slots[base + src_lane];
    sync_warp();
    return v;
}

void fail(const char* msg) {
    if (launch_error.empty())
        launch_error = std::string(msg) + " (block " + std::to_string(block_idx.x) + "," +
                       std::to_string(block_idx.y) + "," + std::to_string(block_idx.z) +
                       " thread " + std::to_string(current) + ")";
}

// cvt.rna.tf32.f32: keep the sign, the exponent and the top 10 mantissa bits, rounding the
// magnitude to nearest with ties away from zero (add half of the dropped 13 bits' unit, then
// clear them; a carry moves into the exponent, past the largest finite value to infinity).
// A NaN stays a NaN (its quiet bit set, so clearing the low bits cannot make it infinite).
unsigned cvt_rna_tf32(float x) {
    unsigned u;
    std::memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u | 0x00400000u) & 0xffffe000u;
    return (u + 0x1000u) & 0xffffe000u;
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 d, a, b, d for the calling warp, with
// the PTX ISA's fragment layout (g = lane / 4, q = lane % 4):
//   a0 = A[g][q], a1 = A[g + 8][q], a2 = A[g][q + 4], a3 = A[g + 8][q + 4]
//   b0 = B[q][g], b1 = B[q + 4][g]
//   d0 = D[g][2q], d1 = D[g][2q + 1], d2 = D[g + 8][2q], d3 = D[g + 8][2q + 1]
// Products of TF32 values are exact in f32 (11 + 11 significand bits); they are added to the
// accumulator in f32, k = 0..7 in order (the hardware's order and internal precision are
// its own: the tests bound the error, they do not expect these bits).
void mma_tf32_m16n8k8(float d[4], const unsigned a[4], const unsigned b[2]) {
    if (warp_lanes() != 32) fail("mma.sync needs all 32 lanes of the warp");
    for (int i = 0; i < 4; i++)
        if (a[i] & 0x1fffu) fail("mma.sync .tf32: an A operand is not a TF32 value (no cvt.rna.tf32.f32)");
    for (int i = 0; i < 2; i++)
        if (b[i] & 0x1fffu) fail("mma.sync .tf32: a B operand is not a TF32 value (no cvt.rna.tf32.f32)");
    std::memcpy(mma_a[current], a, sizeof mma_a[0]);
    std::memcpy(mma_b[current], b, sizeof mma_b[0]);
    sync_warp();
    int base = current - current % 32, lanes = warp_lanes();
    float A[16][8] = {}, B[8][8] = {};
    auto f = [](unsigned bits) {
        float v;
        std::memcpy(&v, &bits, 4);
        return v;
    };
    for (int l = 0; l < lanes; l++) {
        const unsigned* al = mma_a[base + l];
        const unsigned* bl = mma_b[base + l];
        int g = l >> 2, q = l & 3;
        A[g][q] = f(al[0]);
        A[g + 8][q] = f(al[1]);
        A[g][q + 4] = f(al[2]);
        A[g + 8][q + 4] = f(al[3]);
        B[q][g] = f(bl[0]);
        B[q + 4][g] = f(bl[1]);
    }
    int lane = current % 32, g = lane >> 2, q = lane & 3;
    float out[4];
    for (int e = 0; e < 4; e++) {
        int row = g + 8 * (e >> 1), col = 2 * q + (e & 1);
        float acc = d[e];
        for (int k = 0; k < 8; k++) acc += A[row][k] * B[k][col];
        out[e] = acc;
    }
    sync_warp();  // every lane has read the others' fragments
    for (int e = 0; e < 4; e++) d[e] = out[e];
}

Registrar::Registrar(const char* name, Body b) { registry()[name] = b; }
}  // namespace emu

extern "C" {

// Launches kernel `name` on a `grid` of `block`-shaped blocks with `args` laid out as for
// cuLaunchKernel. Returns 0, or writes a message to `err` and returns nonzero.
int nas_emu_launch(const char* name, const unsigned* grid, const unsigned* block, void** args,
                   char* err, std::size_t err_len) {
    using namespace emu;
    std::lock_guard<std::mutex> guard(launch_lock);
    auto fail = [&](const std::string& m) {
        std::snprintf(err, err_len, "%s", m.c_str());
        return 1;
    };
    auto it = registry().find(name);
    if (it == registry().end()) return fail("no emulated kernel of this name");
    unsigned threads = block[0] * block[1] * block[2];
    if (threads == 0 || threads > (unsigned)MAX_THREADS)
        return fail("invalid block size " + std::to_string(threads) + " (1..=1024 threads)");
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || grid[1] > 65535 || grid[2] > 65535)
        return fail("invalid grid (" + std::to_string(grid[0]) + ", " + std::to_string(grid[1]) +
                    ", " + std::to_string(grid[2]) + ")");
    install_handler();
    ensure_altstack();
    body = it->second;
    body_args = args;
    kernel_name = it->first.c_str();
    block_dim = dim3{block[0], block[1], block[2]};
    grid_dim = dim3{grid[0], grid[1], grid[2]};
    nthreads = (int)threads;
    in_launch = true;
    launch_error.clear();
    std::string e;
    for (unsigned z = 0; z < grid[2] && e.empty(); z++)
        for (unsigned y = 0; y < grid[1] && e.empty(); y++)
            for (unsigned x = 0; x < grid[0] && e.empty(); x++) {
                block_idx = dim3{x, y, z};
                e = run_block();
                if (e.empty()) e = launch_error;
            }
    in_launch = false;
    if (!e.empty()) return fail(e);
    return 0;
}

// Device memory: `bytes` (a multiple of 16, or 0) ending right before an inaccessible page,
// with another inaccessible page before the first page.
unsigned long long nas_emu_malloc(std::size_t bytes) {
    std::size_t page = (std::size_t)sysconf(_SC_PAGESIZE);
    std::size_t data_pages = (bytes + page - 1) / page;
    std::size_t total = (data_pages + 2) * page;
    void* base = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return 0;
    char* b = static_cast<char*>(base);
    mprotect(b, page, PROT_NONE);
    mprotect(b + (data_pages + 1) * page, page, PROT_NONE);
    return (unsigned long long)(b + (data_pages + 1) * page - bytes);
}

// The emulated cvt.rna.tf32.f32 on raw bits (for the tests' bit-level check).
unsigned nas_emu_tf32_round(unsigned bits) {
    float x;
    std::memcpy(&x, &bits, 4);
    return emu::cvt_rna_tf32(x);
}

void nas_emu_free(unsigned long long ptr, std::size_t bytes) {
    std::size_t page = (std::size_t)sysconf(_SC_PAGESIZE);
    std::size_t data_pages = (bytes + page - 1) / page;
    char* end = reinterpret_cast<char*>(ptr) + bytes;
    char* base = end - (data_pages + 1) * page;
    munmap(base, (data_pages + 2) * page);
}
}
