// The reports' attention-heads section: see heads_section.hpp.
#include "report/heads_section.hpp"

#include <cmath>
#include <cstdint>

#include <fmt/format.h>

#include "detail/json_writer.hpp"

namespace neuronmap::report {
namespace {

constexpr std::size_t kPrevious = HeadStatistics::kOffsets - 1;
constexpr std::size_t kSelf = HeadStatistics::kOffsets;

double offset(const HeadStatistics& h, std::size_t k) { return k < h.offset_weight.size() ? h.offset_weight[k] : NAN; }

std::int64_t group_of(const LayerSnapshot& layer, std::size_t head) {
  return head < layer.labels.size() ? layer.labels[head] : -1;
}

std::string value(double v) { return std::isfinite(v) ? fmt::format("{:.3f}", v) : std::string("-"); }

std::string clean(std::string s) {
  for (auto& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return s;
}

}  // namespace

void write_heads_json(detail::JsonWriter& w, const Snapshot& snapshot) {
  w.key("attention_heads").begin_array();
  for (const auto& layer : snapshot.layers) {
    if (layer.heads.empty()) continue;
    w.begin_object();
    w.field("layer", layer.name);
    w.key("heads").begin_array();
    for (std::size_t h = 0; h < layer.heads.size(); ++h) {
      const auto& s = layer.heads[h];
      w.begin_object();
      w.field("head", static_cast<std::int64_t>(h)).field("role", s.role).field("queries", s.queries);
      w.field("entropy_mean", s.entropy_mean).field("entropy_std", s.entropy_std);
      w.field("distance_mean", s.distance_mean).field("previous_token", offset(s, kPrevious));
      w.field("self", offset(s, kSelf)).field("concentration", s.concentration);
      w.field("collapsed_fraction", s.collapsed_fraction).field("uniform", s.uniform).field("collapsed", s.collapsed);
      w.field("group", group_of(layer, h));
      w.end_object();
    }
    w.end_array();
    w.end_object();
  }
  w.end_array();
}

std::string heads_text(const Snapshot& snapshot) {
  std::string out;
  for (const auto& layer : snapshot.layers) {
    if (layer.heads.empty()) continue;
    if (out.empty()) out = "Attention heads (reported snapshot)\n";
    out += fmt::format("  layer {}: {} heads\n", clean(layer.name), layer.heads.size());
    out += fmt::format("    {:>4}  {:<14}  {:>7}  {:>8}  {:>6}  {:>7}  {:>9}  {:>5}\n", "head", "role", "entropy",
                       "distance", "prev", "concent", "collapsed", "group");
    for (std::size_t h = 0; h < layer.heads.size(); ++h) {
      const auto& s = layer.heads[h];
      const auto group = group_of(layer, h);
      out += fmt::format("    {:>4}  {:<14}  {:>7}  {:>8}  {:>6}  {:>7}  {:>9}  {:>5}\n", h, clean(s.role),
                         value(s.entropy_mean), value(s.distance_mean), value(offset(s, kPrevious)),
                         value(s.concentration), value(s.collapsed_fraction),
                         group < 0 ? std::string("-") : std::to_string(group));
    }
  }
  return out.empty() ? out : out + "\n";
}

}  // namespace neuronmap::report
