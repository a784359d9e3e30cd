// A layer's capture counters as a JSON object, as the JSON report and `inspect --json` both write them.
#pragma once

#include "detail/json_writer.hpp"
#include "neuronmap/snapshot.hpp"

namespace neuronmap::report {

inline void write_counters(detail::JsonWriter& w, const Counters& c) {
  w.begin_object();
  w.field("captured_batches", c.captured_batches).field("dropped_batches", c.dropped_batches);
  w.field("skipped_batches", c.skipped_batches).field("budget_skipped_batches", c.budget_skipped_batches);
  w.field("rows", c.rows);
  w.field("nonfinite_rows", c.nonfinite_rows).field("errors", c.errors);
  w.end_object();
}

}  // namespace neuronmap::report
