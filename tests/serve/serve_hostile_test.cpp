// Hostile and malformed clients against `neuronmap serve`: every request gets a 4xx, nothing outside the
// page, its script and the API is served, and the server keeps answering (raw sockets on the client
// side, to send what no HTTP library would).
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "serve_support.hpp"
#include "test_dir.hpp"

using neuronmap::test::eventually;
using neuronmap::test::Server;
using neuronmap::test::Writer;

namespace {

int connect_to(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

/// A response whose headers and Content-Length bytes of body have arrived.
bool response_complete(const std::string& response) {
  const auto end = response.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  std::string headers = response.substr(0, end);
  for (auto& c : headers) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto at = headers.find("content-length:");
  if (at == std::string::npos) return false;
  return response.size() >= end + 4 + std::stoul(headers.substr(at + 15));
}

/// Sends `request` and returns the response's text (until the server closes or `seconds` pass).
std::string exchange(int port, const std::string& request, double seconds = 10) {
  const int fd = connect_to(port);
  if (fd < 0) return "";
  std::size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may refuse before reading everything
    sent += static_cast<std::size_t>(n);
  }
  // No shutdown(SHUT_WR): cpp-httplib takes a half-closed client for gone and sends nothing back.
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char chunk[8192];
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) break;
    out.append(chunk, static_cast<std::size_t>(n));
    if (response_complete(out)) break;  // some errors leave the connection open until the read timeout
  }
  ::close(fd);
  return out;
}

int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12) return -1;
  return std::atoi(response.c_str() + 9);
}

std::string get(const std::string& target, const std::string& headers = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" + headers + "\r\n";
}

}  // namespace

TEST(ServeHostile, MalformedAndHostileRequestsGet4xxAndTheServerStaysUp) {
  const std::string path = neuronmap::test::fresh_test_dir("serve_tmp") + "/run.h5";
  Writer writer(path, 2);
  Server server(path);
  const int port = server.port();

  struct Case {
    std::string name, request;
  };
  std::vector<Case> cases = {
      {"URL of 10 KB", get("/" + std::string(10000, 'a'))},
      {"URL of 100 KB", get("/api/snapshots?after=" + std::string(100000, '1'))},
      {"header of 10 KB", get("/", "X-Long: " + std::string(10000, 'h') + "\r\n")},
      {"header of 100 KB", get("/api/run", "Cookie: " + std::string(100000, 'c') + "\r\n")},
      {"after=abc", get("/api/snapshots?after=abc")},
      {"after=-2", get("/api/snapshots?after=-2")},
      {"after=1e5", get("/api/snapshots?after=1e5")},
      {"after huge", get("/api/snapshots?after=99999999999999999999999")},
      {"after empty", get("/api/snapshots?after=")},
      {"after twice", get("/api/snapshots?after=1&after=2")},
      {"after=0x10", get("/api/snapshots?after=0x10")},
      {"after with space", get("/api/snapshots?after=1%202")},
      {"generation=x", get("/api/snapshots?generation=x")},
      {"unknown parameter", get("/api/snapshots?evil=1")},
      {"detail without index", get("/api/detail")},
      {"detail index=abc", get("/api/detail?index=abc")},
      {"detail index past the end", get("/api/detail?index=1000000")},
      {"events after=zz", get("/events?after=zz")},
      {"events bad Last-Event-ID", get("/events", "Last-Event-ID: ../../x\r\n")},
      {"page with a parameter", get("/?x=<script>")},
      {"../ traversal", get("/../../../../etc/passwd")},
      {"encoded traversal", get("/%2e%2e/%2e%2e/%2e%2e/etc/passwd")},
      {"double-encoded traversal", get("/%252e%252e/%252e%252e/etc/passwd")},
      {"assets traversal", get("/assets/../../../etc/passwd")},
      {"assets encoded slash", get("/assets/..%2f..%2f..%2fetc%2fpasswd")},
      {"backslash traversal", get("/assets/..\\..\\etc\\passwd")},
      {"the run file by name", get("/run.h5")},
      {"the run file by absolute path", get(path)},
      {"NUL in the path", get(std::string("/api/run%00.js"))},
      {"POST", "POST /api/run HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"},
      {"POST of 1 MB", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\nConnection: close\r\n\r\n" +
                           std::string(1 << 20, 'p')},
      {"PUT", "PUT /api/run HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
      {"DELETE", "DELETE /api/run HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
      {"PATCH", "PATCH / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
      {"OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
      {"TRACE", "TRACE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
      {"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"},
      {"made-up method", "BREW /pot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
      {"garbage request line", "\x01\x02garbage\r\n\r\n"},
      {"no version", "GET /\r\n\r\n"},
      {"bad version", "GET / HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n"},
      {"unsatisfiable range", get("/assets/live.js", "Range: bytes=99999999-\r\n")},
  };
  int answered_4xx = 0;
  for (const auto& c : cases) {
    const auto start = std::chrono::steady_clock::now();
    const std::string response = exchange(port, c.request);
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (took > 1) std::printf("%s: %.1f s\n", c.name.c_str(), took);
    const int status = status_of(response);
    EXPECT_TRUE(status >= 400 && status < 500) << c.name << ": " << response.substr(0, 200);
    EXPECT_EQ(response.find("root:x:0:0"), std::string::npos) << c.name;
    EXPECT_EQ(response.find("HDF"), std::string::npos) << c.name << ": the run file leaked";
    answered_4xx += status >= 400 && status < 500;
    ASSERT_TRUE(server.alive()) << "after " << c.name;
  }
  EXPECT_GE(answered_4xx, 30);
  EXPECT_EQ(answered_4xx, static_cast<int>(cases.size()));

  // Slowloris: 12 clients trickle a header byte every 300 ms; the server keeps answering others.
  std::vector<int> slow;
  for (int i = 0; i < 12; ++i) {
    const int fd = connect_to(port);
    ASSERT_GE(fd, 0);
    ASSERT_GT(::send(fd, "GET / HTTP/1.1\r\nX-Slow: ", 24, MSG_NOSIGNAL), 0);
    slow.push_back(fd);
  }
  // Clients that never read: the page (1 MB) and an event stream, left unread.
  std::vector<int> deaf;
  for (const char* target : {"/", "/events", "/api/snapshots"}) {
    const int fd = connect_to(port);
    ASSERT_GE(fd, 0);
    const std::string request = get(target);
    ASSERT_GT(::send(fd, request.data(), request.size(), MSG_NOSIGNAL), 0);
    deaf.push_back(fd);
  }
  for (int tick = 0; tick < 10; ++tick) {
    for (int fd : slow) (void)::send(fd, "a", 1, MSG_NOSIGNAL);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(server.get("/api/status").first, 200);
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 2.0);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  for (int fd : slow) ::close(fd);
  for (int fd : deaf) ::close(fd);

  // 100 connections opened and dropped: half silent, half after a partial request, reset.
  for (int i = 0; i < 100; ++i) {
    const int fd = connect_to(port);
    ASSERT_GE(fd, 0) << "connection " << i;
    if (i % 2 == 1) {
      (void)::send(fd, "GET /api/snap", 13, MSG_NOSIGNAL);
      linger reset{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    }
    ::close(fd);
  }
  EXPECT_TRUE(eventually([&] { return server.alive(); }, 10));
  EXPECT_EQ(server.get("/api/snapshots").first, 200);
  writer.commit();
  EXPECT_TRUE(eventually([&] { return server.status()["snapshots"].GetInt64() == 3; }));
}

TEST(ServeHostile, BindsTheLoopbackByDefault) {
  const std::string path = neuronmap::test::fresh_test_dir("serve_tmp") + "/run.h5";
  Server server(path);
  // The URL printed says 127.0.0.1 (Server parses it from there) and the socket is bound to it.
  const auto out = neuronmap::test::run_process({"/bin/sh", "-c", "cat /proc/net/tcp"}, 10).out;
  char hex_port[8];
  std::snprintf(hex_port, sizeof hex_port, "%04X", server.port());
  EXPECT_NE(out.find(std::string("0100007F:") + hex_port), std::string::npos) << "not bound to 127.0.0.1";
  EXPECT_EQ(out.find(std::string("00000000:") + hex_port), std::string::npos) << "bound to every address";
}
