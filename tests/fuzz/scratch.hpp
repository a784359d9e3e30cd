// The fuzzers' scratch directory: /dev/shm/neuronmap_<name>_<pid> (or under the temp directory).
// libFuzzer ends the process without running atexit handlers, so each start removes the directories
// that processes no longer alive have left.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>

namespace neuronmap::fuzz {

inline std::string make_scratch_dir(const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
  const std::string prefix = "neuronmap_" + name + "_";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(base, ec)) {
    const std::string file = entry.path().filename().string();
    if (file.rfind(prefix, 0) != 0) continue;
    const std::string pid = file.substr(prefix.size());
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (::kill(static_cast<pid_t>(std::stol(pid)), 0) != 0 && errno == ESRCH) fs::remove_all(entry.path(), ec);
  }
  const fs::path dir = base / (prefix + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir.string();
}

}  // namespace neuronmap::fuzz
