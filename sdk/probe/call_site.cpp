// Code ranges of exported functions and the stack walk that finds them: see call_site.hpp.
#include "probe/call_site.hpp"

#include <dlfcn.h>
#include <link.h>
#include <unwind.h>

namespace neuronmap::detail {

CodeRange exported_function_code(const void* entry) {
  CodeRange code;
  if (entry == nullptr) return code;
  Dl_info info{};
  void* symbol_entry = nullptr;  // dladdr1 writes a `const ElfW(Sym)*` here
  if (dladdr1(entry, &info, &symbol_entry, RTLD_DL_SYMENT) == 0 || symbol_entry == nullptr) return code;
  const auto* symbol = static_cast<const ElfW(Sym)*>(symbol_entry);
  // dladdr1 answers with the nearest symbol at or below `entry`: it must start exactly there, or the
  // size would be another function's. (ELF64_ST_TYPE reads st_info as ELF32_ST_TYPE does.)
  if (info.dli_saddr != entry || ELF64_ST_TYPE(symbol->st_info) != STT_FUNC || symbol->st_size == 0) return code;
  code.begin = reinterpret_cast<std::uintptr_t>(entry);
  code.end = code.begin + symbol->st_size;
  if (info.dli_sname != nullptr) code.symbol = info.dli_sname;
  return code;
}

namespace {

struct Walk {
  const CodeRange* code;
  int max_frames;
  int index = 0;
  int found = -1;
};

_Unwind_Reason_Code visit_frame(struct _Unwind_Context* context, void* arg) {
  auto& walk = *static_cast<Walk*>(arg);
  int before_instruction = 0;
  std::uintptr_t address = _Unwind_GetIPInfo(context, &before_instruction);
  // A return address is the instruction after the call, which lies past the function's end when the
  // call is its last instruction: look at the call itself. (A signal frame's address is the
  // interrupted instruction; before_instruction says so.)
  if (!before_instruction && address > 0) --address;
  if (walk.code->contains(address)) {
    walk.found = walk.index;
    return _URC_END_OF_STACK;
  }
  return ++walk.index < walk.max_frames ? _URC_NO_REASON : _URC_END_OF_STACK;
}

}  // namespace

int frame_index_in(const CodeRange& code, int max_frames) noexcept {
  if (code.empty() || max_frames <= 0) return -1;
  Walk walk{&code, max_frames};
  _Unwind_Backtrace(&visit_frame, &walk);
  return walk.found;
}

}  // namespace neuronmap::detail
