// RunLock: the lock file beside a run file, so that a second writer fails instead of silently writing
// into an unlinked inode (a replaced file that nobody reads again).
#include "store/run_lock.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include "neuronmap/errors.hpp"

namespace neuronmap::detail {
namespace {

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

struct flock whole_file(short type) {
  struct flock lock {};
  lock.l_type = type;
  lock.l_whence = SEEK_SET;
  lock.l_start = 0;
  lock.l_len = 0;
  lock.l_pid = 0;  // F_OFD_* require 0
  return lock;
}

std::string own_program() {
  std::ifstream in("/proc/self/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

/// "<pid> <program>" as the holder wrote it; pid 0 when unreadable.
void read_holder(int fd, WriterState& state) {
  char buffer[256] = {};
  const ssize_t n = ::pread(fd, buffer, sizeof buffer - 1, 0);
  if (n <= 0) return;
  char* end = nullptr;
  const long pid = std::strtol(buffer, &end, 10);
  if (end == buffer || pid <= 0) return;
  state.pid = pid;
  std::string rest(end, static_cast<std::size_t>(buffer + n - end));
  while (!rest.empty() && (rest.front() == ' ')) rest.erase(rest.begin());
  while (!rest.empty() && (rest.back() == '\n' || rest.back() == ' ')) rest.pop_back();
  for (auto& c : rest)
    if (static_cast<unsigned char>(c) < 0x20) c = '?';
  state.program = rest;
}

std::string holder_text(const WriterState& s) {
  if (s.pid == 0) return "another process";
  std::string text = "process " + std::to_string(s.pid);
  if (!s.program.empty()) text += " (" + s.program + ")";
  if (s.pid == static_cast<long>(::getpid())) text += ", this very process";
  return text;
}

}  // namespace

std::string RunLock::lock_path(const std::string& run_path) { return run_path + ".lock"; }

RunLock::RunLock(const std::string& run_path) : path_(lock_path(run_path)) {
  const std::filesystem::path parent = std::filesystem::path(run_path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);  // a failure shows at open() below
  }
  // Retry when the file we locked was removed or replaced by its previous holder meanwhile.
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      const int err = errno;
      throw FileError("cannot lock run file '" + run_path + "': cannot create '" + path_ + "' (" + errno_text(err) + ")");
    }
    struct flock lock = whole_file(F_WRLCK);
    if (::fcntl(fd, F_OFD_SETLK, &lock) != 0) {
      const int err = errno;
      WriterState holder;
      read_holder(fd, holder);
      ::close(fd);
      if (err == EAGAIN || err == EACCES)
        throw FileError("run file '" + run_path + "' is in use: " + holder_text(holder) +
                        " is writing it and holds '" + path_ +
                        "'. Two sessions cannot write one file (overwrite(true) does not change that); wait for "
                        "that run to finish, stop it, or choose another file");
      throw FileError("cannot lock run file '" + run_path + "': " + errno_text(err));
    }
    struct stat opened {}, named {};
    if (::fstat(fd, &opened) != 0 || ::stat(path_.c_str(), &named) != 0 || opened.st_ino != named.st_ino ||
        opened.st_dev != named.st_dev) {
      ::close(fd);
      continue;
    }
    const std::string text = std::to_string(::getpid()) + " " + own_program() + "\n";
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
      const int err = errno;
      ::unlink(path_.c_str());
      ::close(fd);
      throw FileError("cannot lock run file '" + run_path + "': cannot write '" + path_ + "' (" + errno_text(err) + ")");
    }
    fd_ = fd;
    return;
  }
  throw FileError("cannot lock run file '" + run_path + "': '" + path_ + "' keeps being replaced");
}

RunLock::RunLock(RunLock&& other) noexcept : path_(std::move(other.path_)), fd_(other.fd_) { other.fd_ = -1; }

RunLock& RunLock::operator=(RunLock&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

RunLock::~RunLock() { release(); }

void RunLock::release() noexcept {
  if (fd_ < 0) return;
  // Unlink while still holding the lock: a process waiting on this inode sees it gone and retries.
  ::unlink(path_.c_str());
  ::close(fd_);
  fd_ = -1;
}

WriterState RunLock::probe(const std::string& run_path) {
  WriterState state;
  const int fd = ::open(lock_path(run_path).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return state;
  struct flock lock = whole_file(F_RDLCK);
  if (::fcntl(fd, F_OFD_GETLK, &lock) == 0 && lock.l_type != F_UNLCK) {
    state.held = true;
    read_holder(fd, state);
  }
  ::close(fd);
  return state;
}

}  // namespace neuronmap::detail
