// `neuronmap serve RUN.h5 [--port 8050] [--host 127.0.0.1] [--open]`: a local, read-only web server
// (cpp-httplib) with the live dashboard, a JSON API and Server-Sent Events, following the run file.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <httplib.h>

#include "cli/serve_hub.hpp"
#include "cli/serve_page.hpp"
#include "cli/verbs.hpp"
#include "detail/json_writer.hpp"
#include "neuronmap/errors.hpp"
#include "report/report.hpp"

extern char** environ;

namespace neuronmap::cli {
namespace {

struct ServeOptions {
  std::string path;
  std::string host = "127.0.0.1";
  int port = 8050;
  bool open = false;
  unsigned poll_ms = 100;
  unsigned cache_mb = 64;
  unsigned max_clients = 32;  ///< event streams at once; more get 503
};

/// A query's integer parameter: absent, or a decimal of at most 17 characters, -1 or more; else a 400.
struct Query {
  bool ok = true;
  std::string error;
  std::optional<std::int64_t> get(const httplib::Request& req, const char* name) {
    const auto count = req.params.count(name);
    if (count == 0) return std::nullopt;
    if (count > 1) return fail(fmt::format("'{}' is given {} times", name, count));
    const std::string& v = req.params.find(name)->second;
    if (v.empty() || v.size() > 17) return fail(fmt::format("'{}' must be an integer", name));
    std::size_t at = v[0] == '-' ? 1 : 0;
    if (at == v.size()) return fail(fmt::format("'{}' must be an integer", name));
    for (std::size_t i = at; i < v.size(); ++i)
      if (v[i] < '0' || v[i] > '9') return fail(fmt::format("'{}' must be an integer", name));
    const std::int64_t n = std::stoll(v);
    if (n < -1) return fail(fmt::format("'{}' must be -1 or more", name));
    return n;
  }
  bool only(const httplib::Request& req, std::initializer_list<const char*> allowed) {
    for (const auto& [key, value] : req.params) {
      bool known = false;
      for (const char* a : allowed) known = known || key == a;
      if (!known) {
        fail(fmt::format("unknown parameter '{}'", key.substr(0, 64)));
        return false;
      }
    }
    return true;
  }
  std::nullopt_t fail(std::string why) {
    if (ok) error = std::move(why);
    ok = false;
    return std::nullopt;
  }
};

void reply_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  detail::JsonWriter w(detail::JsonLayout::compact);
  w.begin_object().field("error", message).end_object();
  res.set_content(w.take() + "\n", "application/json");
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return in ? text.str() : std::string();
}

void open_browser(const std::string& url) {
  const char* argv[] = {"xdg-open", url.c_str(), nullptr};
  pid_t pid = 0;
  if (posix_spawnp(&pid, "xdg-open", nullptr, nullptr, const_cast<char* const*>(argv), environ) != 0)
    std::fprintf(stderr, "neuronmap serve: cannot start xdg-open; open %s yourself\n", url.c_str());
  // Reaped by the SIGCHLD default of the shell-less child: xdg-open returns at once.
  std::thread([pid] { if (pid > 0) ::waitpid(pid, nullptr, 0); }).detach();
}

/// The generation a request names must be the current one: the page reloads on 409.
bool check_generation(Query& q, const httplib::Request& req, const HubView& view, httplib::Response& res) {
  const auto g = q.get(req, "generation");
  if (!q.ok) return false;
  if (g && static_cast<std::uint64_t>(*g) != view.generation) {
    reply_error(res, 409, "the run file was replaced by a new run; reload the page");
    return false;
  }
  return true;
}

int serve(const ServeOptions& opt) {
  // Signals go to one waiting thread, which stops the server: the HTTP threads never see them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  const std::string echarts_path = report::find_echarts();
  const std::string echarts = echarts_path.empty() ? std::string() : read_file(echarts_path);
  if (echarts.size() < 1000)
    throw Error("serve: the page needs ECharts, which the build installs with npm; install Node.js/npm and rebuild, "
                "or set NEURONMAP_ECHARTS_JS to an echarts.min.js file");

  HubOptions hub_options;
  hub_options.poll = std::chrono::milliseconds(opt.poll_ms);
  hub_options.cache_bytes = std::size_t{opt.cache_mb} << 20;
  LiveHub hub(opt.path, hub_options);
  hub.start();

  httplib::Server server;
  const unsigned threads = opt.max_clients + 16;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // cpp-httplib's default also sets SO_REUSEPORT: a second server on the same port would then share
  // it silently. SO_REUSEADDR alone still allows a quick restart.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  server.set_payload_max_length(4096);
  server.set_read_timeout(5, 0);
  server.set_write_timeout(5, 0);
  server.set_keep_alive_timeout(5);
  server.set_keep_alive_max_count(100);
  server.set_default_headers({{"X-Content-Type-Options", "nosniff"}, {"Cache-Control", "no-store"}});
  // Read-only: every method but GET and HEAD is refused before any body is read.
  server.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    if (req.method == "GET" || req.method == "HEAD") return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("Allow", "GET, HEAD");
    reply_error(res, 405, "read-only server: only GET and HEAD");
    return httplib::Server::HandlerResponse::Handled;
  });
  server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) reply_error(res, res.status, res.status == 404 ? "no such page" : "bad request");
  });
  server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    reply_error(res, 500, "internal error");
  });

  const std::string title = "NeuronMap live \u2014 " + opt.path;
  server.Get("/", [&](const httplib::Request& req, httplib::Response& res) {
    Query q;
    if (!q.only(req, {})) return reply_error(res, 400, q.error);
    const Text run = hub.run_json();
    res.set_content(live_page(echarts, run ? *run : std::string(), title), "text/html; charset=utf-8");
  });
  server.Get("/assets/live.js", [](const httplib::Request& req, httplib::Response& res) {
    Query q;
    if (!q.only(req, {})) return reply_error(res, 400, q.error);
    res.set_content(kLiveScript, "text/javascript; charset=utf-8");
  });
  server.Get("/api/run", [&](const httplib::Request& req, httplib::Response& res) {
    Query q;
    if (!q.only(req, {})) return reply_error(res, 400, q.error);
    const Text run = hub.run_json();
    if (!run) return reply_error(res, 503, "the run file has not been read yet");
    res.set_content(*run, "application/json");
  });
  server.Get("/api/status", [&](const httplib::Request& req, httplib::Response& res) {
    Query q;
    if (!q.only(req, {})) return reply_error(res, 400, q.error);
    res.set_content(hub.status_json(), "application/json");
  });
  server.Get("/api/snapshots", [&](const httplib::Request& req, httplib::Response& res) {
    Query q;
    const HubView view = hub.view();
    if (!q.only(req, {"after", "generation"}) || !check_generation(q, req, view, res)) {
      if (!q.ok) reply_error(res, 400, q.error);
      return;
    }
    const auto after = q.get(req, "after").value_or(-1);
    if (!q.ok) return reply_error(res, 400, q.error);
    std::string body = "[";
    for (std::int64_t i = std::max<std::int64_t>(after + 1, 0); i < view.snapshots; ++i) {
      const Text s = hub.snapshot(view.generation, i);
      if (!s) return reply_error(res, 503, "the run file changed while reading; try again");
      if (body.size() > 1) body += ",";
      body += *s;
    }
    res.set_content(body + "]", "application/json");
  });
  server.Get("/api/detail", [&](const httplib::Request& req, httplib::Response& res) {
    Query q;
    const HubView view = hub.view();
    if (!q.only(req, {"index", "generation"}) || !check_generation(q, req, view, res)) {
      if (!q.ok) reply_error(res, 400, q.error);
      return;
    }
    const auto index = q.get(req, "index");
    if (!q.ok) return reply_error(res, 400, q.error);
    if (!index) return reply_error(res, 400, "'index' is required");
    if (*index < 0 || *index >= view.snapshots)
      return reply_error(res, 404, fmt::format("no snapshot {} (the run has {})", *index, view.snapshots));
    const Text d = hub.detail(view.generation, *index);
    if (!d) return reply_error(res, 503, "the run file changed while reading; try again");
    res.set_content(*d, "application/json");
  });

  auto streams = std::make_shared<std::atomic<unsigned>>(0);
  server.Get("/events", [&, streams](const httplib::Request& req, httplib::Response& res) {
    Query q;
    HubView view = hub.view();
    if (!q.only(req, {"after", "generation"})) return reply_error(res, 400, q.error);
    auto after = q.get(req, "after");
    const auto generation = q.get(req, "generation");
    if (!q.ok) return reply_error(res, 400, q.error);
    // A reconnecting EventSource says where it stopped.
    if (req.has_header("Last-Event-ID")) {
      httplib::Request fake;
      fake.params.emplace("after", req.get_header_value("Last-Event-ID"));
      after = q.get(fake, "after");
      if (!q.ok) return reply_error(res, 400, "bad Last-Event-ID");
    }
    if (streams->fetch_add(1) >= opt.max_clients) {
      streams->fetch_sub(1);
      return reply_error(res, 503, "too many event streams");
    }
    struct Cursor {
      std::uint64_t generation;
      std::int64_t next;
      bool reload;
      HubView seen;
      bool first = true;
    };
    auto cursor = std::make_shared<Cursor>();
    cursor->generation = generation ? static_cast<std::uint64_t>(*generation) : view.generation;
    cursor->reload = cursor->generation != view.generation;
    cursor->next = after ? *after + 1 : view.snapshots;
    res.set_header("Cache-Control", "no-store");
    res.set_chunked_content_provider(
        "text/event-stream",
        [&hub, cursor](std::size_t, httplib::DataSink& sink) {
          Cursor& c = *cursor;
          HubView now = c.first ? hub.view() : hub.wait(c.seen, std::chrono::milliseconds(1000));
          c.first = false;
          if (now.stopping) {
            sink.done();
            return true;
          }
          std::string out;
          if (c.reload || now.generation != c.generation) {
            out = fmt::format("event: reload\ndata: {{\"generation\":{}}}\n\n", now.generation);
            if (!sink.write(out.data(), out.size())) return false;
            sink.done();
            return true;
          }
          for (; c.next < now.snapshots; ++c.next) {
            const Text s = hub.snapshot(c.generation, c.next);
            if (!s) break;
            out += fmt::format("event: snapshot\nid: {}\ndata: {}\n\n", c.next, *s);
          }
          out += "event: status\ndata: " + hub.status_json() + "\n\n";
          c.seen = now;
          return sink.write(out.data(), out.size());
        },
        [streams](bool) { streams->fetch_sub(1); });
  });

  int port = opt.port;
  if (port == 0) {
    port = server.bind_to_any_port(opt.host);
    if (port < 0) throw Error("serve: cannot listen on " + opt.host);
  } else if (!server.bind_to_port(opt.host, port)) {
    throw Error(fmt::format("serve: cannot listen on {}:{} (in use? try --port)", opt.host, port));
  }
  const std::string url = fmt::format("http://{}:{}/", opt.host.find(':') != std::string::npos ? "[" + opt.host + "]" : opt.host, port);
  std::printf("neuronmap serve: %s (following %s; Ctrl-C stops)\n", url.c_str(), opt.path.c_str());
  std::fflush(stdout);
  if (opt.open) open_browser(url);

  std::thread stopper([&server, &hub, signals] {
    int signal = 0;
    sigwait(&signals, &signal);
    hub.stop();  // ends the event streams
    server.stop();
  });
  stopper.detach();  // the process ends when listen returns
  server.listen_after_bind();
  hub.stop();
  return 0;
}

}  // namespace

void add_serve(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "Serve a live dashboard of a run file while it is written (read-only)");
  auto opt = std::make_shared<ServeOptions>();
  cmd->add_option("run", opt->path, "the run file (it may not exist yet)")->required();
  cmd->add_option("--port", opt->port, "TCP port (0: any free port, printed)")->capture_default_str()->check(CLI::Range(0, 65535));
  cmd->add_option("--host", opt->host, "address to listen on (other hosts can read the run when not 127.0.0.1)")
      ->capture_default_str();
  cmd->add_flag("--open", opt->open, "open the page in the default browser (xdg-open)");
  cmd->add_option("--poll-ms", opt->poll_ms, "how often the file is looked at")->capture_default_str()->check(CLI::Range(10u, 250u));
  cmd->add_option("--cache-mb", opt->cache_mb, "memory for rendered snapshots")->capture_default_str()->check(CLI::Range(1u, 65536u));
  cmd->add_option("--max-streams", opt->max_clients, "event streams at once")->capture_default_str()->check(CLI::Range(1u, 1024u));
  cmd->callback([opt] { set_exit_code(serve(*opt)); });
}

}  // namespace neuronmap::cli
