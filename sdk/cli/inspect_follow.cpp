// inspect --follow: polls the run file (SWMR, incremental) and prints each newly committed snapshot;
// faults (file replaced, deleted, damaged) go to stderr once per change.
#include "cli/inspect_follow.hpp"

#include <chrono>
#include <cstdio>
#include <thread>

#include "cli/live_run.hpp"
#include "cli/run_json.hpp"
#include "detail/json_writer.hpp"
#include "store/run_file.hpp"

namespace neuronmap::cli {

int follow_run(const std::string& path, bool json, double idle_exit) {
  constexpr auto kPoll = std::chrono::milliseconds(100);
  LiveRun run(path);
  std::int64_t printed = 0;
  double last_new = wall_seconds();
  bool ever_read = false;
  FileState reported = FileState::ok;
  for (;;) {
    const PollResult r = run.poll();
    const LiveStatus& s = run.status();
    if (r.replaced) {
      std::fprintf(stderr, "neuronmap inspect: '%s' was replaced by a new run; following it from its first snapshot\n",
                   path.c_str());
      printed = 0;
    }
    if (r.status_changed && s.file != reported) {
      if (s.file != FileState::ok) std::fprintf(stderr, "neuronmap inspect: %s: %s\n", to_string(s.file), s.message.c_str());
      reported = s.file;
    }
    ever_read = ever_read || run.reader() != nullptr;
    for (; run.reader() != nullptr && printed < s.snapshots; ++printed) {
      if (json) {
        detail::JsonWriter w(detail::JsonLayout::compact);
        write_snapshot_object(w, printed, run.reader()->summary(printed), run.reader()->snapshot_header(printed));
        std::printf("%s\n", w.take().c_str());
      } else {
        std::printf("%s\n", run.snapshot_line(printed).c_str());
      }
      std::fflush(stdout);
      last_new = wall_seconds();
    }
    if (idle_exit > 0 && wall_seconds() - last_new >= idle_exit) {
      if (ever_read) return 0;
      std::fprintf(stderr, "neuronmap: inspect: no run file could be read in %g s: %s\n", idle_exit, s.message.c_str());
      return 2;
    }
    std::this_thread::sleep_for(kPoll);
  }
}

}  // namespace neuronmap::cli
