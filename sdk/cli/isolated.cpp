// The crash-isolated child of `inspect` and `report`: fork, a pipe for the answer, waitpid.
#include "cli/isolated.hpp"

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>

#include "neuronmap/errors.hpp"

namespace neuronmap::cli {
namespace {

bool write_all(int fd, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

std::string read_all(int fd) {
  std::string data;
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buffer, static_cast<std::size_t>(n));
  }
  return data;
}

}  // namespace

std::string run_isolated(const Isolation& how,
                         const std::function<std::string(const std::function<void()>& tick)>& work) {
  int fds[2];
  if (::pipe(fds) != 0) throw Error(how.verb + ": cannot create a pipe: " + std::strerror(errno));
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw Error(how.verb + ": cannot fork: " + std::strerror(errno));
  }
  if (pid == 0) {
    // The child answers 'O' + output or 'E' + message.
    ::close(fds[0]);
    std::string reply;
    const unsigned step_timeout = how.step_timeout;
    const auto tick = [step_timeout] {
      if (step_timeout > 0) ::alarm(step_timeout);
    };
    try {
      tick();
      reply = "O" + work(tick);
      ::alarm(0);
    } catch (const Error& e) {
      reply = std::string("E") + e.what();
    } catch (const std::exception& e) {
      reply = "Einternal error " + how.action + ": " + e.what();
    }
    const bool ok = write_all(fds[1], reply);
    ::close(fds[1]);
    std::fflush(nullptr);
    ::_exit(ok ? 0 : 3);  // skip atexit handlers and static destructors of the parent's copy
  }
  ::close(fds[1]);
  const std::string reply = read_all(fds[0]);
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM && how.step_timeout > 0) throw FormatError(how.stalled);
  if (WIFSIGNALED(status))
    throw FormatError(how.crashed + " (signal " + std::to_string(WTERMSIG(status)) + "): the file is damaged");
  if (reply.empty() || (reply[0] != 'O' && reply[0] != 'E'))
    throw Error(how.verb + ": " + how.action + " failed without a message");
  if (reply[0] == 'E') {
    std::string message = reply.substr(1);
    std::replace(message.begin(), message.end(), '\n', ' ');
    throw Error(message);
  }
  return reply.substr(1);
}

}  // namespace neuronmap::cli
