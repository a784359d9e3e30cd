// neuronmap::Run: the public face of the run-file reader.
#include "neuronmap/run.hpp"

#include "store/run_file.hpp"

namespace neuronmap {

Run::Run(std::unique_ptr<detail::RunReader> reader) : reader_(std::move(reader)) {}
Run::Run(Run&&) noexcept = default;
Run& Run::operator=(Run&&) noexcept = default;
Run::~Run() = default;

Run Run::open(const std::string& path) { return Run(std::make_unique<detail::RunReader>(path)); }
const RunInfo& Run::info() const { return reader_->info(); }
std::int64_t Run::size() const { return reader_->size(); }
std::int64_t Run::refresh() { return reader_->refresh(); }
SnapshotSummary Run::summary(std::int64_t index) const { return reader_->summary(index); }
Snapshot Run::snapshot(std::int64_t index) const { return reader_->snapshot(index); }

}  // namespace neuronmap
