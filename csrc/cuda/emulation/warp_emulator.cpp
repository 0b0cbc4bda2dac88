#include "warp_emulator.h"

#include <array>
#include <exception>
#include <memory>
#include <random>
#include <utility>
#include <sstream>
#include <vector>

#include <c10/util/Exception.h>

// ucontext where the hand-written switch does not apply: other CPUs, and builds with shadow stacks (CET), whose
// `ret` into another fiber's stack would fault; glibc's swapcontext handles them.
#if !defined(__x86_64__) || defined(HNLM_EMULATOR_UCONTEXT) || (defined(__CET__) && (__CET__ & 2))
#define HNLM_EMULATOR_USES_UCONTEXT 1
#include <ucontext.h>
#endif

namespace cuda_emulation {
namespace {

constexpr std::size_t kStackBytes = 256 * 1024;

// ---- fibers: a stack and the registers of a suspended execution context ----------------------------------------
//
// On x86-64 a switch saves the callee-saved registers on the current stack, stores the stack pointer, loads the
// other fiber's and returns into it (~20 instructions). Elsewhere ucontext's swapcontext, which also saves the
// signal mask with a system call per switch (~40x slower; a warp shuffle costs two switches per lane).

#ifdef HNLM_EMULATOR_USES_UCONTEXT
struct Fiber {
  ucontext_t context;
};

void fiber_start(Fiber& fiber, char* stack, std::size_t size, void (*entry)()) {
  getcontext(&fiber.context);
  fiber.context.uc_stack.ss_sp = stack;
  fiber.context.uc_stack.ss_size = size;
  fiber.context.uc_link = nullptr;  // entry never returns: it switches away for good
  makecontext(&fiber.context, entry, 0);
}

void fiber_switch(Fiber& from, Fiber& to) { swapcontext(&from.context, &to.context); }
#else
struct Fiber {
  void* stack_pointer = nullptr;
};

extern "C" void hnlm_emulator_switch(void** save_stack_pointer, void* load_stack_pointer);
asm(R"(
    .text
    .p2align 4
    .globl hnlm_emulator_switch
    .hidden hnlm_emulator_switch
    .type hnlm_emulator_switch, @function
hnlm_emulator_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size hnlm_emulator_switch, .-hnlm_emulator_switch
)");

void fiber_start(Fiber& fiber, char* stack, std::size_t size, void (*entry)()) {
  // The first switch into the fiber pops six zero registers and returns into `entry` with the stack as after a call
  // (16-byte aligned minus the return address slot, which holds a null: entry never returns).
  auto top = (reinterpret_cast<std::uintptr_t>(stack) + size) & ~std::uintptr_t(15);
  void** sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;
  *--sp = reinterpret_cast<void*>(entry);
  for (int i = 0; i < 6; ++i) *--sp = nullptr;
  fiber.stack_pointer = sp;
}

void fiber_switch(Fiber& from, Fiber& to) { hnlm_emulator_switch(&from.stack_pointer, to.stack_pointer); }
#endif

// ---- warps --------------------------------------------------------------------------------------------------------

enum class LaneState { kReady, kAtShuffle, kReturned, kFailed };

struct Lane {
  Fiber fiber;
  char* stack = nullptr;
  LaneState state = LaneState::kReady;
  ThreadIndex index{};
  // the pending shuffle
  unsigned mask = 0;
  int lane_mask = 0, width = 0;
  std::size_t size = 0;
  unsigned char sent[16] = {}, received[16] = {};
};

struct Warp {
  Fiber scheduler;
  std::array<Lane, kWarpSize> lanes;
  int live = 0;              // lanes that exist in this warp (a block of 48 threads has a warp of 16)
  Lane* running = nullptr;   // the lane whose fiber is executing
  const std::function<void()>* body = nullptr;
  bool failed = false;       // a lane failed: the launch is abandoned
  std::string failure;       // the first failure, with its location
};

void fail(Warp& warp, const std::string& message) {
  if (!warp.failed) warp.failure = message.empty() ? "unknown error" : message;
  warp.failed = true;
}

thread_local Warp* active = nullptr;  // the warp being emulated by this OS thread

std::string where(const ThreadIndex& index) {
  std::ostringstream out;
  out << "block " << index.block_idx.x << ", thread " << index.thread_idx.x;
  return out.str();
}

[[noreturn]] void run_lane() {
  Warp& warp = *active;
  Lane& lane = *warp.running;
  try {  // nothing may unwind past the fiber's entry frame
    (*warp.body)();
    lane.state = LaneState::kReturned;
  } catch (const std::exception& error) {
    lane.state = LaneState::kFailed;
    fail(warp, std::string(error.what()) + " (" + where(lane.index) + ")");
  } catch (...) {
    lane.state = LaneState::kFailed;
    fail(warp, "a non-standard C++ exception (" + where(lane.index) + ")");
  }
  fiber_switch(lane.fiber, warp.scheduler);  // never resumed
  std::terminate();
}

// Exchanges the values of a warp whose live lanes all wait at one shuffle; reports any divergence.
void exchange(Warp& warp) {
  const Lane& first = warp.lanes[0];
  for (int i = 0; i < warp.live; ++i) {
    const Lane& lane = warp.lanes[i];
    if (lane.state != LaneState::kAtShuffle) {
      fail(warp, "warp divergence: thread " + std::to_string(lane.index.thread_idx.x) +
                     " returned while its warp waits in __shfl_xor_sync (" + where(first.index) + ")");
      return;
    }
    if (lane.mask != first.mask || lane.lane_mask != first.lane_mask || lane.width != first.width ||
        lane.size != first.size) {
      fail(warp, "warp divergence: lanes of one warp at different __shfl_xor_sync calls (" + where(lane.index) +
                     ")");
      return;
    }
  }
  const unsigned expected = warp.live == kWarpSize ? 0xffffffffu : (1u << warp.live) - 1u;
  if (first.mask != expected) {
    std::ostringstream out;
    out << "__shfl_xor_sync mask 0x" << std::hex << first.mask << " does not name exactly the live lanes 0x"
        << expected << " (" << where(first.index) << ")";
    fail(warp, out.str());
    return;
  }
  for (int i = 0; i < warp.live; ++i) {
    // PTX shfl.bfly: the source lane i ^ (laneMask & 31) is read unless it lies past the end of the caller's
    // width-segment (then the caller keeps its own value); a source in an earlier segment is read.
    const int segment_end = (i / first.width) * first.width + first.width - 1;
    int source = i ^ (first.lane_mask & (kWarpSize - 1));
    if (source > segment_end || source >= warp.live) source = i;
    std::memcpy(warp.lanes[i].received, warp.lanes[source].sent, first.size);
    warp.lanes[i].state = LaneState::kReady;
  }
}

void run_warp(Warp& warp) {
  for (int i = 0; i < warp.live; ++i) {
    Lane& lane = warp.lanes[i];
    lane.state = LaneState::kReady;
    fiber_start(lane.fiber, lane.stack, kStackBytes, run_lane);
  }
  while (true) {
    for (int i = 0; i < warp.live; ++i) {
      Lane& lane = warp.lanes[i];
      if (lane.state != LaneState::kReady) continue;
      warp.running = &lane;
      fiber_switch(warp.scheduler, lane.fiber);  // back here at a shuffle, a return or a failure
      if (warp.failed) return;
    }
    bool any_waiting = false;
    for (int i = 0; i < warp.live; ++i) any_waiting |= warp.lanes[i].state == LaneState::kAtShuffle;
    if (!any_waiting) return;  // every lane returned
    exchange(warp);
    if (warp.failed) return;
  }
}

std::uint64_t schedule_seed = 0;   // 0: grid order
std::uint64_t launches_since_seed = 0;

}  // namespace

void set_warp_schedule(std::uint64_t seed) {
  schedule_seed = seed;
  launches_since_seed = 0;
}

const ThreadIndex& current_thread() {
  TORCH_CHECK(active != nullptr && active->running != nullptr, "threadIdx/blockIdx read outside a kernel");
  return active->running->index;
}

void kernel_fail(const char* message, const char* file, int line) {
  Warp& warp = *active;
  Lane& lane = *warp.running;
  {  // destroyed before the switch: nothing on this fiber's stack is ever unwound
    std::ostringstream out;
    out << message << " at " << file << ":" << line << " (" << where(lane.index) << ")";
    fail(warp, out.str());
  }
  lane.state = LaneState::kFailed;
  fiber_switch(lane.fiber, warp.scheduler);  // never resumed: the launch is abandoned
  std::terminate();
}

void shuffle_xor(unsigned mask, void* value, std::size_t size, int lane_mask, int width) {
  Warp& warp = *active;
  Lane& lane = *warp.running;
  if (width <= 0 || width > kWarpSize || (width & (width - 1)) != 0)
    kernel_fail("__shfl_xor_sync width must be a power of two <= 32", __FILE__, __LINE__);
  lane.mask = mask;
  lane.lane_mask = lane_mask;
  lane.width = width;
  lane.size = size;
  std::memcpy(lane.sent, value, size);
  lane.state = LaneState::kAtShuffle;
  fiber_switch(lane.fiber, warp.scheduler);  // resumed once the whole warp has arrived
  std::memcpy(value, lane.received, size);
}

void launch(dim3 grid, dim3 block, const std::function<void()>& thread_body) {
  TORCH_CHECK(grid.y == 1 && grid.z == 1 && block.y == 1 && block.z == 1, "the emulator runs 1-D launches only");
  TORCH_CHECK(block.x >= 1 && block.x <= 1024, "block size must be in [1, 1024], got ", block.x);
  TORCH_CHECK(grid.x >= 1 && grid.x <= 0x7fffffffu, "grid size must be in [1, 2^31 - 1], got ", grid.x);
  TORCH_CHECK(active == nullptr, "a kernel launched from inside a kernel");
  auto warp = std::make_unique<Warp>();
  std::vector<std::unique_ptr<char[]>> stacks;
  for (auto& lane : warp->lanes) {
    stacks.emplace_back(new char[kStackBytes]);
    lane.stack = stacks.back().get();
  }
  warp->body = &thread_body;
  active = warp.get();
  struct Deactivate {
    ~Deactivate() { active = nullptr; }
  } deactivate;
  const unsigned warps_per_block = (block.x + kWarpSize - 1) / kWarpSize;
  std::vector<std::pair<unsigned, unsigned>> order;  // (block, warp in block), in the order they run
  order.reserve(static_cast<std::size_t>(grid.x) * warps_per_block);
  for (unsigned b = 0; b < grid.x; ++b)
    for (unsigned w = 0; w < warps_per_block; ++w) order.emplace_back(b, w);
  if (schedule_seed != 0) {
    std::mt19937_64 generator(schedule_seed * 0x9E3779B97F4A7C15ull + launches_since_seed++);
    std::shuffle(order.begin(), order.end(), generator);
  }
  for (std::size_t i = 0; i < order.size() && !warp->failed; ++i) {
    const auto [b, w] = order[i];
    warp->live = static_cast<int>(std::min<unsigned>(kWarpSize, block.x - w * kWarpSize));
    for (int l = 0; l < warp->live; ++l)
      warp->lanes[l].index = ThreadIndex{{w * kWarpSize + l, 0, 0}, {b, 0, 0}, block, grid};
    run_warp(*warp);
  }
  TORCH_CHECK(!warp->failed, "emulated CUDA kernel failed: ", warp->failure);
}

}  // namespace cuda_emulation
