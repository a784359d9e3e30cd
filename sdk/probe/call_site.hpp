// Whether the running op was called from inside a given function: the machine code of a LibTorch
// module type's own forward (e.g. torch::nn::ReLUImpl::forward, defined out of line in
// libtorch_cpu.so) is a range of addresses, and while a member's forward runs its return address lies
// in that range on the calling thread's stack. A functional call of the same op (torch::relu(x)) has
// no such frame. This is how a parameter-free module found by its type tells its op from the model's
// own functional calls.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace neuronmap::detail {

/// The machine code of one function, [begin, end), and its symbol's (mangled) name.
struct CodeRange {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  std::string symbol;

  bool empty() const noexcept { return begin >= end; }
  bool contains(std::uintptr_t address) const noexcept { return address >= begin && address < end; }
};

/// The function that starts exactly at `entry`, sized by its entry in the dynamic symbol table of the
/// shared object that holds it (dladdr1; it scans that table, so call it once, at attach). Empty when
/// `entry` is not the start of an exported function with a known size (e.g. a function compiled into
/// the caller, or a PLT stub).
CodeRange exported_function_code(const void* entry);

/// The entry address of a non-virtual member function. Under the Itanium C++ ABI a pointer to member
/// function is {function address, this adjustment}; for a virtual function the first word is instead
/// 1 + its vtable offset (odd), which has no single address: nullptr then.
template <class R, class C, class... A>
const void* member_function_entry(R (C::*function)(A...)) noexcept {
  static_assert(sizeof(function) == 2 * sizeof(std::uintptr_t), "not an Itanium ABI pointer to member function");
  std::uintptr_t words[2];
  std::memcpy(words, &function, sizeof(words));
  if ((words[0] & 1u) != 0) return nullptr;
  return reinterpret_cast<const void*>(words[0]);
}

/// How deep called_from looks. Between the op's start callback and the module's forward lie only
/// RecordFunction's and the dispatcher's frames: the forward is frame 5 on Debian's LibTorch 1.13
/// (CallSite test, which fails if it gets within 8 of this limit). A functional call's walk goes the
/// whole depth, about 130 ns a frame, so the limit is kept at about three times that.
constexpr int kCallSiteMaxFrames = 16;

/// The index, counted from the innermost frame (frame_index_in's own), of the first frame of the
/// calling thread's stack whose return address lies in `code`, looking at most `max_frames` deep; -1
/// when none does. Walks the stack with the unwinder (_Unwind_Backtrace), stopping at that frame.
int frame_index_in(const CodeRange& code, int max_frames = kCallSiteMaxFrames) noexcept;

/// Whether the calling thread runs inside `code`, within the innermost `max_frames` frames.
inline bool called_from(const CodeRange& code, int max_frames = kCallSiteMaxFrames) noexcept {
  return frame_index_in(code, max_frames) >= 0;
}

}  // namespace neuronmap::detail
