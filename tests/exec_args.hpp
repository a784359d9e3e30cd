// Building a child's argv before fork(), for every test that starts a process.
#pragma once

#include <string>
#include <vector>

namespace neuronmap::test {

/// argv as execv wants it, built before fork(): the forked child of a multithreaded test must not
/// allocate before exec. glibc's malloc survives that, but the sanitizers' allocators (GCC 12's
/// libasan has no fork interceptor) do not: a lock another thread held at the fork stays locked in
/// the child forever (a Crash.* test hung 300 s under ASan that way). The strings must outlive exec.
inline std::vector<char*> exec_args(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  return args;
}

}  // namespace neuronmap::test
