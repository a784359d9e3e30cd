// `neuronmap compare A.h5 B.h5 [--layers a,b | --layers a:x,b:y] [--epoch-a E] [--epoch-b E] [--json]`:
// per layer pair, linear CKA (Kornblith et al. 2019) on the two runs' stored reference-batch outputs, and
// a maximum-total-Jaccard one-to-one matching of the layers' groups (Jaccard of neuron index sets; pairs
// with no common neuron stay unmatched). Mean Jaccard: over the matched pairs; "over all groups" divides
// the same sum by max(groups A, groups B), so unmatched groups count as 0.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/verbs.hpp"
#include "detail/json_writer.hpp"
#include "learning/learning.hpp"
#include "neuronmap/errors.hpp"
#include "store/run_file.hpp"

namespace neuronmap::cli {
namespace {

using detail::JsonWriter;

constexpr const char* kReferenceNote =
    "CKA compares the layers' outputs on each run's reference batch (Session::set_reference); it is "
    "meaningful only if both runs were given the same reference inputs in the same order, which the "
    "files cannot check.";

struct CompareArgs {
  std::string file_a, file_b;
  std::string layers;
  std::int64_t epoch_a = 0, epoch_b = 0;  // used when given; default: the last snapshot
  bool json = false;
};

/// One run at the chosen snapshot.
struct Side {
  std::string file;
  std::int64_t index = 0;  // snapshot index in the file
  std::int64_t size = 0;   // committed snapshots
  Snapshot snapshot;
};

struct GroupMatch {
  int group_a = 0, group_b = 0;
  std::size_t size_a = 0, size_b = 0;
  double jaccard = 0.0;
};

struct PairResult {
  const LayerSnapshot* a = nullptr;
  const LayerSnapshot* b = nullptr;
  double cka = std::nan("");
  std::string cka_note;  // why CKA is missing ("" when it was computed)
  std::vector<GroupMatch> matches;
  std::vector<int> unmatched_a, unmatched_b;  // group ids
  double mean_jaccard = std::nan("");         // over the matched pairs
  double mean_jaccard_all = std::nan("");     // sum over matched pairs / max(groups A, groups B)
};

Side load(const std::string& label, const std::string& path, const std::optional<std::int64_t>& epoch) {
  const detail::RunReader reader(path);
  Side side;
  side.file = path;
  side.size = reader.size();
  if (side.size == 0)
    throw UsageError("run " + label + " ('" + path + "') has no committed snapshots; nothing to compare");
  side.index = side.size - 1;
  if (epoch) {
    std::string epochs;
    side.index = -1;
    for (std::int64_t i = 0; i < side.size; ++i) {
      const auto e = reader.summary(i).epoch;
      if (e == *epoch) side.index = i;
      epochs += (epochs.empty() ? "" : ", ") + std::to_string(e);
    }
    if (side.index < 0)
      throw UsageError(fmt::format("run {} ('{}') has no snapshot at epoch {}; its snapshot epochs: {}", label, path,
                                   *epoch, epochs));
  }
  side.snapshot = reader.snapshot(side.index);
  return side;
}

std::string layer_names(const Snapshot& s) {
  std::string out;
  for (const auto& l : s.layers) out += (out.empty() ? "" : ", ") + l.name;
  return out.empty() ? "(none)" : out;
}

const LayerSnapshot& find_layer(const std::string& label, const Side& side, const std::string& name) {
  for (const auto& l : side.snapshot.layers)
    if (l.name == name) return l;
  throw UsageError(fmt::format("layer '{}' is not in run {} ('{}') at epoch {}; its layers: {}", name, label,
                               side.file, side.snapshot.epoch, layer_names(side.snapshot)));
}

/// "a,b" pairs each layer with the same name in B; "a:x" pairs a in A with x in B. Default: the names
/// both snapshots have, in A's order.
std::vector<std::pair<const LayerSnapshot*, const LayerSnapshot*>> layer_pairs(const std::string& spec,
                                                                                const Side& a, const Side& b) {
  std::vector<std::pair<const LayerSnapshot*, const LayerSnapshot*>> pairs;
  if (spec.empty()) {
    for (const auto& la : a.snapshot.layers)
      for (const auto& lb : b.snapshot.layers)
        if (la.name == lb.name) {
          pairs.emplace_back(&la, &lb);
          break;
        }
    if (pairs.empty())
      throw UsageError(fmt::format("the runs have no layer name in common (A: {}; B: {}); pair layers with "
                                   "--layers a:x,b:y",
                                   layer_names(a.snapshot), layer_names(b.snapshot)));
    return pairs;
  }
  std::size_t start = 0;
  while (start <= spec.size()) {
    const auto end = std::min(spec.find(',', start), spec.size());
    const std::string item = spec.substr(start, end - start);
    start = end + 1;
    if (item.empty()) throw UsageError("--layers '" + spec + "' has an empty entry; use a,b or a:x,b:y");
    const auto colon = item.find(':');
    const std::string name_a = item.substr(0, colon);
    const std::string name_b = colon == std::string::npos ? name_a : item.substr(colon + 1);
    if (name_a.empty() || name_b.empty())
      throw UsageError("--layers entry '" + item + "' needs a layer name on both sides of ':'");
    const LayerSnapshot* layer_a = &find_layer("A", a, name_a);  // A's error first
    pairs.emplace_back(layer_a, &find_layer("B", b, name_b));
  }
  return pairs;
}

PairResult compare_pair(const LayerSnapshot& a, const LayerSnapshot& b) {
  PairResult r;
  r.a = &a;
  r.b = &b;
  if (a.reference_rows == 0 || b.reference_rows == 0) {
    r.cka_note = a.reference_rows == 0 && b.reference_rows == 0 ? "no reference rows in either run"
                 : a.reference_rows == 0                         ? "no reference rows in run A"
                                                                 : "no reference rows in run B";
  } else if (a.reference_rows != b.reference_rows) {
    r.cka_note = fmt::format("reference batches differ in rows ({} vs {})", a.reference_rows, b.reference_rows);
  } else {
    r.cka = detail::learning::linear_cka(
        detail::learning::MatrixView<float>{a.reference.data(), a.reference_rows, a.n_neurons},
        detail::learning::MatrixView<float>{b.reference.data(), b.reference_rows, b.n_neurons});
    if (std::isnan(r.cka)) r.cka_note = "undefined (fewer than 2 finite rows, or no variance)";
  }

  const int na = static_cast<int>(a.groups.size());
  const int nb = static_cast<int>(b.groups.size());
  std::vector<double> weights(static_cast<std::size_t>(na) * static_cast<std::size_t>(nb));
  for (int i = 0; i < na; ++i)
    for (int j = 0; j < nb; ++j)
      weights[static_cast<std::size_t>(i) * nb + j] =
          detail::learning::jaccard(a.groups[i].neuron_indices, b.groups[j].neuron_indices);
  const auto assigned = na > 0 && nb > 0 ? detail::learning::max_weight_assignment(weights, na, nb)
                                         : std::vector<int>(static_cast<std::size_t>(na), -1);
  std::vector<bool> b_taken(static_cast<std::size_t>(nb), false);
  double sum = 0.0;
  for (int i = 0; i < na; ++i) {
    const int j = assigned[static_cast<std::size_t>(i)];
    if (j < 0) {
      r.unmatched_a.push_back(a.groups[i].group_id);
      continue;
    }
    b_taken[static_cast<std::size_t>(j)] = true;
    const double w = weights[static_cast<std::size_t>(i) * nb + j];
    r.matches.push_back({a.groups[i].group_id, b.groups[j].group_id, a.groups[i].neuron_indices.size(),
                         b.groups[j].neuron_indices.size(), w});
    sum += w;
  }
  for (int j = 0; j < nb; ++j)
    if (!b_taken[static_cast<std::size_t>(j)]) r.unmatched_b.push_back(b.groups[j].group_id);
  if (!r.matches.empty()) r.mean_jaccard = sum / static_cast<double>(r.matches.size());
  if (na > 0 || nb > 0) r.mean_jaccard_all = sum / static_cast<double>(std::max(na, nb));
  return r;
}

std::string number(double v, const char* spec) {
  if (std::isnan(v)) return "-";
  return fmt::format(fmt::runtime(spec), v);
}

std::string id_list(const std::vector<int>& ids) {
  std::string out;
  for (int id : ids) out += (out.empty() ? "" : ", ") + std::to_string(id);
  return out.empty() ? "-" : out;
}

/// Control characters from a damaged file must not reach the terminal.
std::string printable(std::string s) {
  for (auto& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return s;
}

/// Columns padded to their widest cell; all but the first two right-aligned.
std::string render_table(const std::vector<std::vector<std::string>>& rows, std::size_t left_columns,
                         const std::string& indent) {
  std::vector<std::size_t> width(rows.front().size(), 0);
  for (const auto& row : rows)
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  std::string out;
  for (const auto& row : rows) {
    std::string line = indent;
    for (std::size_t c = 0; c < row.size(); ++c) {
      const std::string pad(width[c] - row[c].size(), ' ');
      line += c < left_columns ? row[c] + (c + 1 < row.size() ? pad : "") : pad + row[c];
      if (c + 1 < row.size()) line += "  ";
    }
    out += line + "\n";
  }
  return out;
}

std::string render_text(const Side& a, const Side& b, const std::vector<PairResult>& results) {
  std::string out;
  for (const auto* side : {&a, &b})
    out += fmt::format("run {}  {}  epoch {} (snapshot {} of {})\n", side == &a ? "A" : "B", printable(side->file),
                       side->snapshot.epoch, side->index + 1, side->size);
  out += std::string("note: ") + kReferenceNote + "\n\n";
  std::vector<std::vector<std::string>> table = {{"layer A", "layer B", "neurons A", "neurons B", "ref rows", "CKA",
                                                  "groups A", "groups B", "matched", "mean Jaccard"}};
  for (const auto& r : results)
    table.push_back({printable(r.a->name), printable(r.b->name), std::to_string(r.a->n_neurons),
                     std::to_string(r.b->n_neurons),
                     r.a->reference_rows == r.b->reference_rows
                         ? std::to_string(r.a->reference_rows)
                         : fmt::format("{}/{}", r.a->reference_rows, r.b->reference_rows),
                     number(r.cka, "{:.4f}"), std::to_string(r.a->groups.size()), std::to_string(r.b->groups.size()),
                     std::to_string(r.matches.size()), number(r.mean_jaccard, "{:.3f}")});
  out += render_table(table, 2, "");
  for (const auto& r : results) {
    out += fmt::format("\n{} ~ {}", printable(r.a->name), printable(r.b->name));
    if (!r.cka_note.empty()) out += "  (CKA: " + r.cka_note + ")";
    out += "\n";
    if (!r.matches.empty()) {
      std::vector<std::vector<std::string>> rows = {{"group A", "group B", "size A", "size B", "Jaccard"}};
      for (const auto& m : r.matches)
        rows.push_back({std::to_string(m.group_a), std::to_string(m.group_b), std::to_string(m.size_a),
                        std::to_string(m.size_b), number(m.jaccard, "{:.3f}")});
      out += render_table(rows, 0, "  ");
    }
    out += "  unmatched in A: " + id_list(r.unmatched_a) + "\n";
    out += "  unmatched in B: " + id_list(r.unmatched_b) + "\n";
    out += "  mean Jaccard over matched pairs " + number(r.mean_jaccard, "{:.3f}") +
           ", over all groups (unmatched count 0) " + number(r.mean_jaccard_all, "{:.3f}") + "\n";
  }
  return out;
}

std::string render_json(const Side& a, const Side& b, const std::vector<PairResult>& results) {
  JsonWriter w;
  w.begin_object();
  for (const auto* side : {&a, &b}) {
    w.key(side == &a ? "a" : "b").begin_object();
    w.field("file", side->file).field("epoch", side->snapshot.epoch).field("snapshot", side->index);
    w.field("snapshots", side->size);
    w.end_object();
  }
  w.field("note", kReferenceNote);
  w.key("layers").begin_array();
  for (const auto& r : results) {
    w.begin_object();
    w.field("layer_a", r.a->name).field("layer_b", r.b->name);
    w.field("n_neurons_a", r.a->n_neurons).field("n_neurons_b", r.b->n_neurons);
    w.field("reference_rows_a", r.a->reference_rows).field("reference_rows_b", r.b->reference_rows);
    w.field("cka", r.cka).field("cka_note", r.cka_note);
    w.field("groups_a", r.a->groups.size()).field("groups_b", r.b->groups.size());
    w.key("matches").begin_array();
    for (const auto& g : r.matches) {
      w.begin_object();
      w.field("group_a", g.group_a).field("group_b", g.group_b).field("size_a", g.size_a).field("size_b", g.size_b);
      w.field("jaccard", g.jaccard);
      w.end_object();
    }
    w.end_array();
    w.key("unmatched_a").array(r.unmatched_a);
    w.key("unmatched_b").array(r.unmatched_b);
    w.field("mean_jaccard", r.mean_jaccard).field("mean_jaccard_all", r.mean_jaccard_all);
    w.end_object();
  }
  w.end_array();
  w.end_object();
  return w.take() + "\n";
}

}  // namespace

void add_compare(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "compare", "Compare two runs layer by layer: CKA on the reference batches, group matching by Jaccard overlap");
  auto args = std::make_shared<CompareArgs>();
  cmd->add_option("run_a", args->file_a, "the first run file")->required();
  cmd->add_option("run_b", args->file_b, "the second run file")->required();
  cmd->add_option("--layers", args->layers,
                  "layers to compare: a,b (same names in both runs) or a:x,b:y (a in A with x in B); default: the "
                  "names both runs have");
  auto* epoch_a = cmd->add_option("--epoch-a", args->epoch_a, "snapshot epoch of run A (default: its last snapshot)");
  auto* epoch_b = cmd->add_option("--epoch-b", args->epoch_b, "snapshot epoch of run B (default: its last snapshot)");
  cmd->add_flag("--json", args->json, "print JSON instead of tables");
  cmd->callback([args, epoch_a, epoch_b] {
    const Side a = load("A", args->file_a, epoch_a->count() > 0 ? std::optional<std::int64_t>(args->epoch_a) : std::nullopt);
    const Side b = load("B", args->file_b, epoch_b->count() > 0 ? std::optional<std::int64_t>(args->epoch_b) : std::nullopt);
    std::vector<PairResult> results;
    for (const auto& [la, lb] : layer_pairs(args->layers, a, b)) results.push_back(compare_pair(*la, *lb));
    const std::string out = args->json ? render_json(a, b, results) : render_text(a, b, results);
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    set_exit_code(0);
  });
}

}  // namespace neuronmap::cli
