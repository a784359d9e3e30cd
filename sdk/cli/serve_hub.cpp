// LiveHub: the follower thread polls the file, renders each new snapshot once, publishes it, and
// answers cache misses; HTTP threads only read what it published.
#include "cli/serve_hub.hpp"

#include <algorithm>
#include <cmath>
#include <optional>

#include "detail/json_writer.hpp"
#include "neuronmap/errors.hpp"
#include "report/dashboard.hpp"
#include "report/embedding.hpp"
#include "report/layout.hpp"
#include "report/report.hpp"
#include "store/run_file.hpp"

namespace neuronmap::cli {
namespace {

// The seed `neuronmap report` uses by default (ReportOptions::seed): the live page draws the same
// layouts as the static dashboard of the same file.
const std::uint64_t kDashboardSeed = report::ReportOptions{}.seed;

constexpr int kSummary = 0;
constexpr int kDetail = 1;
/// A handler waits this long for the follower to read a snapshot it does not have in memory.
constexpr auto kFetchTimeout = std::chrono::seconds(20);

/// The dashboard's detail of one snapshot: groups, the reduced matrix and the 2-D placement per layer.
std::string detail_json(const detail::RunReader& reader, std::int64_t index, std::int64_t max_cells) {
  const Snapshot snap = reader.snapshot(index);
  detail::JsonWriter w(detail::JsonLayout::compact);
  w.begin_object();
  w.field("index", index).field("epoch", snap.epoch).field("loss", snap.loss).field("phase", snap.phase);
  w.key("layers").begin_array();
  for (const auto& layer : snap.layers) {
    const report::GroupOrder order = report::order_by_group(layer);
    std::optional<report::Embedding> embedding;
    if (layer.n_neurons >= 2) embedding = report::embed_layer(layer, false, kDashboardSeed);
    report::write_dashboard_layer(w, layer, order, embedding, max_cells, kDashboardSeed);
  }
  w.end_array();
  w.end_object();
  return w.take();
}

}  // namespace

Text ByteCache::get(int kind, std::int64_t index) {
  const auto it = entries_.find({kind, index});
  if (it == entries_.end()) return nullptr;
  if (it->second.second != order_.end()) order_.splice(order_.begin(), order_, it->second.second);
  return it->second.first;
}

void ByteCache::put(int kind, std::int64_t index, Text text, bool pinned) {
  const Key key{kind, index};
  if (const auto it = entries_.find(key); it != entries_.end()) {
    bytes_ -= it->second.first->size();
    if (it->second.second != order_.end()) order_.erase(it->second.second);
    entries_.erase(it);
  }
  bytes_ += text->size();
  if (!pinned) order_.push_front(key);
  entries_.emplace(key, std::make_pair(std::move(text), pinned ? order_.end() : order_.begin()));
  // The newest entry stays even when it alone is over the budget.
  while (bytes_ > budget_ && order_.size() > (pinned ? 0u : 1u)) {
    const auto victim = entries_.find(order_.back());
    bytes_ -= victim->second.first->size();
    entries_.erase(victim);
    order_.pop_back();
  }
}

void ByteCache::clear() {
  entries_.clear();
  order_.clear();
  bytes_ = 0;
}

LiveHub::LiveHub(std::string path, HubOptions options)
    : options_(options), run_(std::move(path)), cache_(options.cache_bytes) {}

LiveHub::~LiveHub() { stop(); }

void LiveHub::start() {
  poll_once();
  thread_ = std::thread([this] { follow(); });
}

void LiveHub::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    view_.stopping = true;
    for (auto& job : jobs_) job.result.set_value(nullptr);
    jobs_.clear();
  }
  changed_.notify_all();
  jobs_changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

HubView LiveHub::view() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return view_;
}

HubView LiveHub::wait(const HubView& seen, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait_for(lock, timeout, [&] {
    return view_.stopping || view_.generation != seen.generation || view_.snapshots != seen.snapshots ||
           view_.status_sequence != seen.status_sequence || view_.ready != seen.ready;
  });
  return view_;
}

std::string LiveHub::status_json() const {
  LiveStatus s;
  std::size_t cached = 0;
  std::int64_t published = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    s = status_;
    cached = cache_.bytes();
    published = view_.snapshots;
  }
  const double now = wall_seconds();
  detail::JsonWriter w(detail::JsonLayout::compact);
  w.begin_object();
  w.field("state", to_string(s.file)).field("message", s.message).field("generation", s.generation);
  w.field("snapshots", published).field("now", now);
  if (s.last_commit > 0) w.field("last_commit", s.last_commit).field("last_commit_age", std::max(0.0, now - s.last_commit));
  else w.key("last_commit").null().key("last_commit_age").null();
  w.field("idle", s.last_change > 0 ? std::max(0.0, now - s.last_change) : 0.0);
  w.key("writer").begin_object();
  w.field("active", s.writer.held).field("pid", static_cast<std::int64_t>(s.writer.pid)).field("program", s.writer.program);
  w.end_object();
  w.field("cache_bytes", cached);
  w.end_object();
  return w.take();
}

Text LiveHub::run_json() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return run_json_;
}

std::size_t LiveHub::cache_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cache_.bytes();
}

Text LiveHub::snapshot(std::uint64_t generation, std::int64_t index) { return fetch(kSummary, generation, index); }
Text LiveHub::detail(std::uint64_t generation, std::int64_t index) { return fetch(kDetail, generation, index); }

Text LiveHub::fetch(int kind, std::uint64_t generation, std::int64_t index) {
  std::future<Text> answer;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ || generation != view_.generation || index < 0 || index >= view_.snapshots) return nullptr;
    if (Text hit = cache_.get(kind, index)) return hit;
    jobs_.push_back(Job{kind, generation, index, {}});
    answer = jobs_.back().result.get_future();
  }
  jobs_changed_.notify_all();
  if (answer.wait_for(kFetchTimeout) != std::future_status::ready) return nullptr;
  return answer.get();
}

Text LiveHub::render(int kind, std::int64_t index) {
  try {
    if (kind == kSummary) return std::make_shared<const std::string>(run_.snapshot_json(index));
    if (run_.reader() == nullptr || index >= run_.status().snapshots) return nullptr;
    return std::make_shared<const std::string>(detail_json(*run_.reader(), index, options_.detail_cells));
  } catch (const std::exception&) {
    return nullptr;  // the file went bad under us: the next poll reports it
  }
}

void LiveHub::poll_once() {
  const PollResult r = run_.poll();
  if (r.replaced) {
    std::lock_guard<std::mutex> lock(mutex_);
    cache_.clear();
    view_.snapshots = 0;
    view_.generation = run_.status().generation;
  }
  // Render every new snapshot before publishing it, so that no client is told of one it cannot get.
  std::int64_t published = r.first_new;
  for (std::int64_t i = r.first_new; i < r.end; ++i) {
    Text text = render(kSummary, i);
    if (!text) break;
    std::lock_guard<std::mutex> lock(mutex_);
    cache_.put(kSummary, i, std::move(text), true);
    published = i + 1;
  }
  Text run_text;
  if (run_.info() != nullptr && (r.replaced || r.end > r.first_new || !view().ready)) {
    try {
      run_text = std::make_shared<const std::string>(run_.run_json());
    } catch (const std::exception&) {
    }
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (published > view_.snapshots) view_.snapshots = published;
    if (run_text) {
      run_json_ = std::move(run_text);
      view_.ready = true;
    }
    status_ = run_.status();
    if (r.status_changed || r.replaced) ++view_.status_sequence;
  }
  changed_.notify_all();
  // The page that follows the latest snapshot asks for its detail next: have it ready.
  if (published > r.first_new) {
    Text detail = render(kDetail, published - 1);
    if (detail) {
      std::lock_guard<std::mutex> lock(mutex_);
      cache_.put(kDetail, published - 1, std::move(detail));
    }
  }
}

void LiveHub::run_jobs() {
  for (;;) {
    Job job;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (jobs_.empty() || stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    Text text;
    bool current = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      current = job.generation == view_.generation && job.index < view_.snapshots;
      if (current) text = cache_.get(job.kind, job.index);
    }
    if (current && !text) {
      text = render(job.kind, job.index);
      if (text) {
        std::lock_guard<std::mutex> lock(mutex_);
        cache_.put(job.kind, job.index, text, job.kind == kSummary);
      }
    }
    job.result.set_value(std::move(text));
  }
}

void LiveHub::follow() {
  auto next_poll = std::chrono::steady_clock::now();
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      jobs_changed_.wait_until(lock, next_poll, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
    }
    run_jobs();
    if (std::chrono::steady_clock::now() >= next_poll) {
      poll_once();
      next_poll = std::chrono::steady_clock::now() + options_.poll;
    }
  }
}

}  // namespace neuronmap::cli
