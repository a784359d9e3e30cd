// Head events: see head_events.hpp.
#include "learning/head_events.hpp"

#include <algorithm>
#include <cmath>

namespace neuronmap::learning {

bool head_specialised(const HeadStatistics& head) noexcept {
  if (head.queries == 0 || head.collapsed || head.uniform) return false;
  return head.role == "previous-token" || head.role == "self" || head.entropy_mean <= 0.5;
}

std::vector<Event> head_events(const LayerSnapshot& layer, const std::vector<HeadStatistics>* previous,
                               std::int64_t epoch) {
  std::vector<Event> out;
  if (previous == nullptr || previous->size() != layer.heads.size()) return out;
  for (std::size_t h = 0; h < layer.heads.size(); ++h) {
    const HeadStatistics& now = layer.heads[h];
    const HeadStatistics& before = (*previous)[h];
    if (now.queries == 0 || before.queries == 0) continue;
    Event e;
    e.epoch = epoch;
    e.layer = layer.name;
    e.lineages = {static_cast<std::int64_t>(h)};
    e.skill_category = now.role;
    if (now.collapsed && !before.collapsed) {
      e.kind = "head_collapsed";
      e.strength = std::clamp(now.collapsed_fraction, 0.0, 1.0);
      out.push_back(e);
    } else if (head_specialised(now) && !head_specialised(before)) {
      e.kind = "head_specialised";
      e.strength = std::clamp(before.entropy_mean - now.entropy_mean, 0.0, 1.0);
      out.push_back(e);
    }
  }
  return out;
}

}  // namespace neuronmap::learning
