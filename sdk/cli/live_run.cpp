// LiveRun: follows one path. A new inode under the path is a new run (the writer renames a complete
// skeleton into place); a file that shrinks, or fails to read, is an error that keeps the last good state.
#include "cli/live_run.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "cli/run_json.hpp"
#include "detail/json_writer.hpp"
#include "neuronmap/errors.hpp"
#include "store/run_file.hpp"

namespace neuronmap::cli {
namespace {

using detail::JsonWriter;

/// Reopening a file in error is tried at most this often.
constexpr double kReopenInterval = 1.0;

std::int64_t mtime_ns(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

std::string one_line(std::string text) {
  for (auto& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  return text;
}

}  // namespace

const char* to_string(FileState state) {
  switch (state) {
    case FileState::waiting: return "waiting";
    case FileState::ok: return "ok";
    case FileState::deleted: return "deleted";
    case FileState::error: return "error";
  }
  return "error";
}

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

LiveRun::LiveRun(std::string path) : path_(std::move(path)) {}
LiveRun::~LiveRun() = default;

const RunInfo* LiveRun::info() const noexcept { return reader_ ? &reader_->info() : nullptr; }

void LiveRun::set_state(FileState state, std::string message, PollResult& result) {
  message = one_line(std::move(message));
  if (status_.file == state && status_.message == message) return;
  status_.file = state;
  status_.message = std::move(message);
  result.status_changed = true;
}

PollResult LiveRun::poll() {
  PollResult result;
  result.first_new = result.end = status_.snapshots;
  const detail::WriterState writer = detail::RunLock::probe(path_);
  if (writer.held != status_.writer.held || writer.pid != status_.writer.pid) {
    status_.writer = writer;
    result.status_changed = true;
  }

  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT)
      set_state(had_file_ ? FileState::deleted : FileState::waiting,
                had_file_ ? "the run file was deleted; showing the last state read, waiting for the file to reappear"
                        : "no run file yet; waiting for it to be created",
                result);
    else
      set_state(FileState::error, "cannot look at the run file: " + std::string(std::strerror(err)), result);
    return result;
  }
  const bool same_file = had_file_ && static_cast<std::uint64_t>(st.st_dev) == device_ &&
                         static_cast<std::uint64_t>(st.st_ino) == inode_;
  if (!same_file) {
    try {
      auto fresh = std::make_unique<detail::RunReader>(path_);
      const bool replacing = had_file_;
      had_file_ = true;
      reader_ = std::move(fresh);
      device_ = static_cast<std::uint64_t>(st.st_dev);
      inode_ = static_cast<std::uint64_t>(st.st_ino);
      file_size_ = static_cast<std::int64_t>(st.st_size);
      file_mtime_ns_ = mtime_ns(st);
      status_.last_change = wall_seconds();
      if (replacing) {
        ++status_.generation;
        status_.snapshots = 0;
        status_.last_commit = 0;
        result.replaced = true;
        result.status_changed = true;
      }
      result.first_new = status_.snapshots;
      result.end = reader_->size();
      status_.snapshots = result.end;
      if (result.end > 0) status_.last_commit = reader_->summary(result.end - 1).timestamp;
      set_state(FileState::ok, "", result);
    } catch (const std::exception& e) {
      if (had_file_)
        set_state(FileState::error, std::string("the path now names a file that cannot be read (") + e.what() +
                                        "); showing the last good state",
                  result);
      else
        set_state(FileState::waiting, std::string("cannot read the run file yet: ") + e.what(), result);
    }
    return result;
  }

  const bool shrank = static_cast<std::int64_t>(st.st_size) < file_size_;
  const bool changed = static_cast<std::int64_t>(st.st_size) != file_size_ || mtime_ns(st) != file_mtime_ns_;
  if (shrank)
    set_state(FileState::error,
              fmt::format("the run file shrank from {} to {} bytes (truncated?); showing the last good state",
                          file_size_, static_cast<std::int64_t>(st.st_size)),
              result);
  file_size_ = static_cast<std::int64_t>(st.st_size);
  file_mtime_ns_ = mtime_ns(st);
  if (changed) status_.last_change = wall_seconds();

  try {
    // A file in error (or one that changed while nobody holds its lock: not an append) is reopened,
    // and only taken back when it still holds every snapshot already shown.
    const bool suspicious = changed && !writer.held && status_.file == FileState::ok;
    if (!reader_ || status_.file == FileState::error || status_.file == FileState::deleted || suspicious) {
      const double now = wall_seconds();
      if (!suspicious && now - last_reopen_try_ < kReopenInterval) return result;
      last_reopen_try_ = now;
      // HDF5 hands out the already open file again for the same inode: close ours first, so that the
      // file is read from disk anew (what was shown stays in the server's cache meanwhile).
      reader_.reset();
      auto fresh = std::make_unique<detail::RunReader>(path_);
      if (fresh->size() < status_.snapshots)
        throw FormatError(fmt::format("the run file now holds {} snapshots, fewer than the {} read before",
                                      fresh->size(), status_.snapshots));
      for (std::int64_t i = 0; i < fresh->size(); ++i) (void)fresh->summary(i);
      reader_ = std::move(fresh);
    }
    const std::int64_t n = reader_->refresh();
    for (std::int64_t i = status_.snapshots; i < n; ++i) (void)reader_->summary(i);  // damaged rows throw here
    if (n > status_.snapshots) {
      status_.last_commit = reader_->summary(n - 1).timestamp;
      result.end = n;
      status_.snapshots = n;
    }
    set_state(FileState::ok, "", result);
  } catch (const std::exception& e) {
    set_state(FileState::error, std::string(e.what()) + "; showing the last good state", result);
  }
  return result;
}

std::string LiveRun::run_json() const {
  if (!reader_) throw FileError("no run file read yet");
  JsonWriter w(detail::JsonLayout::compact);
  w.begin_object();
  write_run_fields(w, path_, reader_->info());
  w.field("size", status_.snapshots);
  w.field("generation", status_.generation);
  w.end_object();
  return w.take();
}

std::string LiveRun::snapshot_json(std::int64_t index) const {
  if (!reader_ || index < 0 || index >= status_.snapshots)
    throw UsageError(fmt::format("snapshot {} is not committed", index));
  const Snapshot full = reader_->snapshot(index);
  JsonWriter w(detail::JsonLayout::compact);
  write_snapshot_object(w, index, reader_->summary(index), full);
  std::string text = w.take();
  // The dashboard's timelines also need what the summary lacks: appended as extra fields.
  JsonWriter extra(detail::JsonLayout::compact);
  extra.begin_object();
  extra.key("live_layers").begin_array();
  for (const auto& l : full.layers) {
    extra.begin_object().field("name", l.name).field("cka_previous", l.cka_previous);
    if (l.mean_abs.empty()) extra.key("dormant_rate").null();
    else extra.field("dormant_rate", l.dormant_rate);
    extra.end_object();
  }
  extra.end_array();
  extra.key("loss_epochs").array(full.loss_epochs);
  extra.key("losses").array(full.losses);
  extra.end_object();
  const std::string more = extra.take();
  text.pop_back();  // '}'
  return text + "," + more.substr(1);
}

std::string LiveRun::snapshot_line(std::int64_t index) const {
  const auto s = reader_->summary(index);
  const auto header = reader_->snapshot_header(index);
  std::string line = fmt::format("#{}  epoch {}  loss {:.6g}  phase {}  events {}", index, s.epoch, s.loss,
                                 header.phase.empty() ? "-" : header.phase, header.events.size());
  for (const auto& l : s.layers) {
    std::string name = l.name;
    for (auto& c : name)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    line += fmt::format("  {}: {} neurons, {} groups, cohesion {:.3f}, {} dead", name, l.n_neurons, l.groups,
                        l.mean_cohesion, l.dead);
  }
  return line;
}

}  // namespace neuronmap::cli
