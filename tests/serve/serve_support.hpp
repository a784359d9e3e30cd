// What the serve tests share: a `neuronmap serve` child on a free port, a writer child that commits a
// snapshot per line on its stdin, an SSE client, and waiting for a condition without fixed sleeps.
#pragma once

#include <httplib.h>
#include <rapidjson/document.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/process.hpp"

namespace neuronmap::test {

/// Calls `ok` every 20 ms until it holds or `seconds` pass; returns whether it held.
inline bool eventually(const std::function<bool()>& ok, double seconds = 20) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return ok();
}

inline rapidjson::Document parse(const std::string& text) {
  rapidjson::Document d;
  d.Parse(text.c_str());
  return d;
}

/// `neuronmap serve PATH --port 0`, and a client for it.
class Server {
 public:
  explicit Server(const std::string& path, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{NEURONMAP_CLI, "serve", path, "--port", "0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    process_ = std::make_unique<ChildProcess>(argv);
    std::string line;
    if (!process_->read_line(line, 30000)) throw std::runtime_error("neuronmap serve printed no URL");
    const auto colon = line.find("127.0.0.1:");
    if (colon == std::string::npos) throw std::runtime_error("neuronmap serve: " + line);
    port_ = std::stoi(line.substr(colon + 10));
  }
  int port() const { return port_; }
  ChildProcess& process() { return *process_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(10, 0);
    return c;
  }
  /// GET `target`: status (-1 when no response) and body.
  std::pair<int, std::string> get(const std::string& target) const {
    auto c = client();
    auto res = c.Get(target.c_str());
    if (!res) return {-1, ""};
    return {res->status, res->body};
  }
  rapidjson::Document status() const { return parse(get("/api/status").second); }
  bool alive() const { return get("/api/status").first == 200; }

 private:
  std::unique_ptr<ChildProcess> process_;
  int port_ = 0;
};

/// A run-file writer (store_writer_child) that holds the lock and commits one snapshot per `commit()`.
class Writer {
 public:
  explicit Writer(const std::string& path, int initial = 1)
      : process_({NEURONMAP_STORE_CHILD, path, "--count", std::to_string(initial), "--stdin", "--lock"}, true) {
    for (int i = 0; i < initial; ++i) expect_commit();
  }
  void commit() {
    process_.write_stdin("\n");
    expect_commit();
  }
  ChildProcess& process() { return process_; }
  int committed() const { return committed_; }

 private:
  void expect_commit() {
    std::string line;
    while (process_.read_line(line, 30000))
      if (line.rfind("committed ", 0) == 0) {
        ++committed_;
        return;
      }
    throw std::runtime_error("the writer did not commit");
  }
  ChildProcess process_;
  int committed_ = 0;
};

/// One Server-Sent Events stream, read on its own thread.
class EventStream {
 public:
  struct Event {
    std::string type, id, data;
  };
  EventStream(int port, const std::string& target) {
    thread_ = std::thread([this, port, target] {
      httplib::Client c("127.0.0.1", port);
      c.set_read_timeout(30, 0);
      c.Get(target.c_str(), [this](const char* data, std::size_t n) {
        std::lock_guard<std::mutex> lock(mutex_);
        buffer_.append(data, n);
        for (std::size_t end; (end = buffer_.find("\n\n")) != std::string::npos;) {
          Event e;
          std::size_t at = 0;
          const std::string block = buffer_.substr(0, end);
          buffer_.erase(0, end + 2);
          while (at < block.size()) {
            std::size_t nl = block.find('\n', at);
            if (nl == std::string::npos) nl = block.size();
            const std::string line = block.substr(at, nl - at);
            at = nl + 1;
            if (line.rfind("event: ", 0) == 0) e.type = line.substr(7);
            else if (line.rfind("id: ", 0) == 0) e.id = line.substr(4);
            else if (line.rfind("data: ", 0) == 0) e.data = line.substr(6);
          }
          events_.push_back(e);
        }
        return !stop_;
      });
      finished_ = true;
    });
  }
  ~EventStream() {
    stop_ = true;
    thread_.join();
  }
  std::vector<Event> of_type(const std::string& type) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<Event> out;
    for (const auto& e : events_)
      if (e.type == type) out.push_back(e);
    return out;
  }
  bool finished() const { return finished_; }

 private:
  mutable std::mutex mutex_;
  std::string buffer_;
  std::vector<Event> events_;
  std::atomic<bool> stop_{false}, finished_{false};
  std::thread thread_;
};

}  // namespace neuronmap::test
