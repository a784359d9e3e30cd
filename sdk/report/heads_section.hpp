// The attention-heads section of the text and JSON reports: per attention layer of the reported
// snapshot, each head's statistics, flags, role and group (docs/HEADS.md).
#pragma once

#include <string>

#include "neuronmap/snapshot.hpp"

namespace neuronmap::detail {
class JsonWriter;
}

namespace neuronmap::report {

/// "attention_heads": [{layer, heads: [...]}] (an empty array when no layer has heads).
void write_heads_json(detail::JsonWriter& w, const Snapshot& snapshot);

/// The text section, or "" when no layer has heads.
std::string heads_text(const Snapshot& snapshot);

}  // namespace neuronmap::report
