// Learning events of attention heads between two snapshots: a head that specialised (took a positional
// role, or concentrated its attention) and a head that collapsed onto one key (docs/HEADS.md).
#pragma once

#include <cstdint>
#include <vector>

#include "neuronmap/snapshot.hpp"

namespace neuronmap::learning {

/// Whether a head counts as specialised: previous-token or self role, or mean normalised entropy <= 0.5,
/// and not degenerate (collapsed or uniform).
bool head_specialised(const HeadStatistics& head) noexcept;

/// The events of `layer`'s heads at `epoch` against the previous snapshot's heads (null or empty at the
/// first snapshot: no events, it is the baseline). kind "head_specialised" or "head_collapsed"; lineages
/// holds the head's index, skill_category its role; strength in [0, 1].
std::vector<Event> head_events(const LayerSnapshot& layer, const std::vector<HeadStatistics>* previous,
                               std::int64_t epoch);

}  // namespace neuronmap::learning
