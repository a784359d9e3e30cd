// Learning events, their summary, learning phases, and the per-layer driver that ties them together.
#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "learning/learning.hpp"

namespace neuronmap::detail::learning {

namespace {

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();
// Threshold comparisons forgive rounding: 0.6 - 0.5 is 0.0999...98 in binary.
constexpr double threshold_slack = 1e-12;

EventKind event_kind(TransitionKind kind) {
  switch (kind) {
    case TransitionKind::emerged: return EventKind::emerged;
    case TransitionKind::grew: return EventKind::grew;
    case TransitionKind::shrank: return EventKind::shrank;
    case TransitionKind::split: return EventKind::split;
    case TransitionKind::merged: return EventKind::merged;
    case TransitionKind::dissolved: return EventKind::dissolved;
    case TransitionKind::survived: break;
  }
  return EventKind::emerged;  // unreachable: survived is filtered out before
}

std::unordered_map<int, std::size_t> index_by_group_id(const std::vector<Group>& groups) {
  std::unordered_map<int, std::size_t> index;
  for (std::size_t k = 0; k < groups.size(); ++k) index.emplace(groups[k].group_id, k);
  return index;
}

std::string skill_of(const std::vector<Group>& groups, const std::unordered_map<int, std::size_t>& index,
                     const std::vector<int>& ids) {
  if (ids.empty()) return {};
  const auto it = index.find(ids.front());
  return it == index.end() ? std::string{} : groups[it->second].skill_category;
}

}  // namespace

const char* to_string(EventKind kind) noexcept {
  switch (kind) {
    case EventKind::emerged: return "emerged";
    case EventKind::grew: return "grew";
    case EventKind::shrank: return "shrank";
    case EventKind::split: return "split";
    case EventKind::merged: return "merged";
    case EventKind::dissolved: return "dissolved";
    case EventKind::cohesion_jump: return "cohesion_jump";
    case EventKind::dormant_change: return "dormant_change";
  }
  return "unknown";
}

const char* to_string(LearningPhase phase) noexcept {
  switch (phase) {
    case LearningPhase::unknown: return "unknown";
    case LearningPhase::rapid: return "rapid";
    case LearningPhase::refinement: return "refinement";
    case LearningPhase::plateau: return "plateau";
    case LearningPhase::unstable: return "unstable";
  }
  return "unknown";
}

std::vector<LearningEvent> detect_events(const EventContext& context, const std::vector<Group>& previous,
                                         const std::vector<Group>& current, const LineageUpdate& update,
                                         const LearningOptions& options) {
  const auto previous_index = index_by_group_id(previous), current_index = index_by_group_id(current);
  std::vector<LearningEvent> events;
  auto base_event = [&](EventKind kind) {
    LearningEvent e;
    e.epoch = context.epoch;
    e.previous_epoch = context.previous_epoch;
    e.layer = context.layer;
    e.kind = kind;
    e.loss_change = context.loss_change;
    return e;
  };

  for (const auto& t : update.transitions) {
    if (t.kind == TransitionKind::survived) continue;
    LearningEvent e = base_event(event_kind(t.kind));
    e.old_group_ids = t.old_group_ids;
    e.new_group_ids = t.new_group_ids;
    for (const auto* ids : {&t.old_lineage_ids, &t.new_lineage_ids}) {
      for (auto id : *ids) {
        if (std::find(e.lineage_ids.begin(), e.lineage_ids.end(), id) == e.lineage_ids.end()) e.lineage_ids.push_back(id);
      }
    }
    e.strength = t.strength;
    // The group the event is about: the one that split or dissolved, else the (first) resulting group.
    const bool about_old = t.kind == TransitionKind::split || t.kind == TransitionKind::dissolved;
    e.skill_category = about_old ? skill_of(previous, previous_index, t.old_group_ids)
                                 : skill_of(current, current_index, t.new_group_ids);
    events.push_back(std::move(e));
  }

  // Cohesion jump of a continued lineage: |c_t - c_t-1| >= threshold, strength min(1, |delta| / scale).
  for (std::size_t j = 0; j < current.size() && j < update.matched_previous.size(); ++j) {
    const int i = update.matched_previous[j];
    if (i < 0 || static_cast<std::size_t>(i) >= previous.size()) continue;
    const double delta = current[j].cohesion_score - previous[i].cohesion_score;
    if (!std::isfinite(delta) || std::abs(delta) < options.cohesion_jump_threshold - threshold_slack) continue;
    LearningEvent e = base_event(EventKind::cohesion_jump);
    e.old_group_ids = {previous[i].group_id};
    e.new_group_ids = {current[j].group_id};
    if (j < update.lineage_ids.size()) e.lineage_ids = {update.lineage_ids[j]};
    e.change = delta;
    e.strength = std::min(1.0, std::abs(delta) / options.cohesion_jump_scale);
    e.skill_category = current[j].skill_category;
    events.push_back(std::move(e));
  }

  // The layer's dormant rate moved: |r_t - r_t-1| >= threshold, strength min(1, |delta| / scale).
  const double dormant_delta = context.dormant_rate - context.previous_dormant_rate;
  if (std::isfinite(dormant_delta) && std::abs(dormant_delta) >= options.dormant_change_threshold - threshold_slack) {
    LearningEvent e = base_event(EventKind::dormant_change);
    e.change = dormant_delta;
    e.strength = std::min(1.0, std::abs(dormant_delta) / options.dormant_change_scale);
    events.push_back(std::move(e));
  }
  return events;
}

LearningSummary summarize(const std::vector<LearningEvent>& events) {
  LearningSummary summary;
  double strength_sum = 0.0;
  for (const auto& e : events) {
    ++summary.total_events;
    ++summary.events_per_kind[to_string(e.kind)];
    if (!e.skill_category.empty()) ++summary.skill_distribution[e.skill_category];
    strength_sum += e.strength;
  }
  // average_strength = the mean strength over all events (0 without events).
  if (summary.total_events > 0) summary.average_strength = strength_sum / static_cast<double>(summary.total_events);
  return summary;
}

// r = (L_t - L_t-1) / (|L_t-1| * (epoch_t - epoch_t-1)).
double relative_loss_change_per_epoch(const PhaseInput& input) noexcept {
  const auto epochs = input.epoch - input.previous_epoch;
  if (!std::isfinite(input.loss) || !std::isfinite(input.previous_loss) || input.previous_loss == 0.0 || epochs <= 0) {
    return nan_value;
  }
  return (input.loss - input.previous_loss) / (std::abs(input.previous_loss) * static_cast<double>(epochs));
}

LearningPhase classify_phase(const PhaseInput& input, const LearningOptions& options) noexcept {
  const double r = relative_loss_change_per_epoch(input);
  const bool have_loss = std::isfinite(r), have_cka = std::isfinite(input.cka);
  // 1. The loss rises: unstable, whatever the representation does.
  if (have_loss && r >= options.unstable_loss_rise) return LearningPhase::unstable;
  // 2. The loss falls fast: rapid (the representation is expected to move a lot then).
  if (have_loss && r <= -options.rapid_loss_drop) return LearningPhase::rapid;
  // 3. The representation suddenly moves much more than in the interval before: unstable.
  if (have_cka && std::isfinite(input.previous_cka) && input.previous_cka - input.cka >= options.unstable_cka_drop) {
    return LearningPhase::unstable;
  }
  // 4. Neither the loss nor the representation moves: plateau (a signal that is missing is not required).
  if (!have_loss && !have_cka) return LearningPhase::unknown;
  const bool loss_flat = !have_loss || std::abs(r) < options.plateau_loss_change;
  const bool representation_still = !have_cka || input.cka >= options.plateau_cka;
  if (loss_flat && representation_still) return LearningPhase::plateau;
  // 5. Slow progress, or a flat loss while the representation still changes.
  return LearningPhase::refinement;
}

LayerStep LayerLearning::update(std::int64_t epoch, double loss, const std::vector<Group>& groups, double dormant_rate,
                                double cka_to_previous) {
  LayerStep step;
  LineageUpdate lineage = tracker_.update(groups);
  if (!first_) {
    EventContext context;
    context.layer = layer_;
    context.previous_epoch = previous_epoch_;
    context.epoch = epoch;
    context.loss_change = loss - previous_loss_;  // loss(t) - loss(t-1); NaN when either is unknown
    if (!std::isfinite(context.loss_change)) context.loss_change = nan_value;
    context.previous_dormant_rate = previous_dormant_rate_;
    context.dormant_rate = dormant_rate;
    step.events = detect_events(context, previous_groups_, groups, lineage, options_);

    PhaseInput phase;
    phase.previous_epoch = previous_epoch_;
    phase.epoch = epoch;
    phase.previous_loss = previous_loss_;
    phase.loss = loss;
    phase.cka = cka_to_previous;
    phase.previous_cka = previous_cka_;
    step.phase = classify_phase(phase, options_);
  }
  step.lineage_ids = std::move(lineage.lineage_ids);
  step.transitions = std::move(lineage.transitions);
  step.dormant_rate = dormant_rate;

  // Keep what the next step reads (ids, members, cohesion, skill), not the activation patterns.
  previous_groups_ = groups;
  for (auto& g : previous_groups_) std::vector<float>().swap(g.activation_pattern);
  previous_epoch_ = epoch;
  previous_loss_ = loss;
  previous_dormant_rate_ = dormant_rate;
  previous_cka_ = cka_to_previous;
  first_ = false;
  return step;
}

}  // namespace neuronmap::detail::learning
