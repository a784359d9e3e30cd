// The JSON of a run file as `inspect --json` writes it, shared by `inspect --follow --json` and `serve`.
#pragma once

#include <cstdint>
#include <string>

#include "detail/json_writer.hpp"
#include "neuronmap/run.hpp"

namespace neuronmap::cli {

/// The run's fields (inside an open object): file, format_version, versions, device, created,
/// options_json, tag_names, layers.
void write_run_fields(detail::JsonWriter& w, const std::string& path, const RunInfo& info);

/// One snapshot as an object: index, epoch, loss, timestamp, phase, n_events, events, layers (the
/// summary per layer with counters and groups_detail). `header` is RunReader::snapshot_header's result.
void write_snapshot_object(detail::JsonWriter& w, std::int64_t index, const SnapshotSummary& summary,
                           const Snapshot& header);

}  // namespace neuronmap::cli
