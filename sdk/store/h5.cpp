// HDF5 helpers for the store: quiet error stacks, one-line error messages, the schema's compound types.
#include "store/h5.hpp"

#include <hdf5.h>

#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "store/schema.hpp"

namespace neuronmap::detail::h5 {

static_assert(std::is_same_v<Id, hid_t>, "h5::Id must be hid_t");
static_assert(std::is_same_v<decltype(&H5Tclose), Closer>, "h5::Closer must match H5?close");

void quiet() noexcept { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

namespace {

struct WalkState {
  std::string innermost;
  std::string system;  // strerror text HDF5 quotes in "error message = '...'"
};

herr_t walk(unsigned, const H5E_error2_t* err, void* data) {
  auto* state = static_cast<WalkState*>(data);
  if (err->desc == nullptr) return 0;
  std::string desc = err->desc;
  state->innermost = desc;
  const std::string key = "error message = '";
  if (auto at = desc.find(key); at != std::string::npos && state->system.empty()) {
    auto start = at + key.size();
    auto end = desc.find('\'', start);
    state->system = desc.substr(start, end == std::string::npos ? std::string::npos : end - start);
  }
  return 0;
}

std::string one_line(std::string text, std::size_t max_len = 200) {
  for (auto& c : text)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  if (text.size() > max_len) text = text.substr(0, max_len) + "...";
  return text;
}

enum class Kind { i32, u32, i64, u64, u8, f64, shape, label };

struct Member {
  const char* name;
  std::size_t offset;  // in the native struct
  Kind kind;
};

hid_t native_of(Kind kind) {
  switch (kind) {
    case Kind::i32: return H5T_NATIVE_INT32;
    case Kind::u32: return H5T_NATIVE_UINT32;
    case Kind::i64: return H5T_NATIVE_INT64;
    case Kind::u64: return H5T_NATIVE_UINT64;
    case Kind::u8: return H5T_NATIVE_UINT8;
    case Kind::f64: return H5T_NATIVE_DOUBLE;
    default: return H5T_NATIVE_INT64;  // shape's base type
  }
}

hid_t file_of(Kind kind) {
  switch (kind) {
    case Kind::i32: return H5T_STD_I32LE;
    case Kind::u32: return H5T_STD_U32LE;
    case Kind::i64: return H5T_STD_I64LE;
    case Kind::u64: return H5T_STD_U64LE;
    case Kind::u8: return H5T_STD_U8LE;
    case Kind::f64: return H5T_IEEE_F64LE;
    default: return H5T_STD_I64LE;
  }
}

Handle member_type(Kind kind, bool file) {
  if (kind == Kind::shape) {
    const hsize_t dims[1] = {schema::kMaxDims};
    return Handle(H5Tarray_create2(file ? file_of(kind) : native_of(kind), 1, dims), &H5Tclose);
  }
  if (kind == Kind::label) {
    Handle t(H5Tcopy(H5T_C_S1), &H5Tclose);
    if (!t.valid() || H5Tset_size(t.get(), schema::kLabelLen) < 0 || H5Tset_strpad(t.get(), H5T_STR_NULLPAD) < 0 ||
        H5Tset_cset(t.get(), H5T_CSET_UTF8) < 0)
      return Handle();
    return t;
  }
  return Handle(H5Tcopy(file ? file_of(kind) : native_of(kind)), &H5Tclose);
}

Handle compound(std::size_t native_size, const std::vector<Member>& members, bool file) {
  std::size_t size = native_size;
  if (file) {
    size = 0;
    for (const auto& m : members) {
      Handle t = member_type(m.kind, true);
      if (!t.valid()) return Handle();
      size += H5Tget_size(t.get());
    }
  }
  Handle type(H5Tcreate(H5T_COMPOUND, size), &H5Tclose);
  if (!type.valid()) return Handle();
  std::size_t packed = 0;
  for (const auto& m : members) {
    Handle t = member_type(m.kind, file);
    if (!t.valid()) return Handle();
    if (H5Tinsert(type.get(), m.name, file ? packed : m.offset, t.get()) < 0) return Handle();
    packed += H5Tget_size(t.get());
  }
  return type;
}

}  // namespace

std::string last_error(bool* system) {
  // A downward walk goes from the API call to the innermost frame, which says the most.
  WalkState down;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, &walk, &down);
  if (system != nullptr) *system = !down.system.empty();
  if (!down.system.empty()) return one_line(down.system);
  if (!down.innermost.empty()) return one_line(down.innermost);
  return "unknown HDF5 error";
}

// Members are listed in file order; fields a format version added come after the older ones.
Handle commit_row_type(bool file, std::int64_t version) {
  using R = schema::CommitRow;
  std::vector<Member> m = {{"epoch", offsetof(R, epoch), Kind::i64},
                           {"loss", offsetof(R, loss), Kind::f64},
                           {"timestamp", offsetof(R, timestamp), Kind::f64},
                           {"layer_rows_offset", offsetof(R, layer_rows_offset), Kind::u64},
                           {"n_layers", offsetof(R, n_layers), Kind::u32},
                           {"committed", offsetof(R, committed), Kind::u8}};
  if (version >= 2)
    m.insert(m.end(), {{"phase_offset", offsetof(R, phase_offset), Kind::u64},
                       {"phase_len", offsetof(R, phase_len), Kind::u32},
                       {"event_offset", offsetof(R, event_offset), Kind::u64},
                       {"n_events", offsetof(R, n_events), Kind::u64},
                       {"cka_offset", offsetof(R, cka_offset), Kind::u64},
                       {"cka_count", offsetof(R, cka_count), Kind::u64},
                       {"loss_offset", offsetof(R, loss_offset), Kind::u64},
                       {"loss_count", offsetof(R, loss_count), Kind::u64}});
  return compound(sizeof(R), m, file);
}

Handle layer_row_type(bool file, std::int64_t version) {
  using R = schema::LayerRow;
  std::vector<Member> m = {{"snapshot", offsetof(R, snapshot), Kind::u64},
                           {"layer", offsetof(R, layer), Kind::i32},
                           {"name_offset", offsetof(R, name_offset), Kind::u64},
                           {"name_len", offsetof(R, name_len), Kind::u32},
                           {"n_neurons", offsetof(R, n_neurons), Kind::i64},
                           {"samples", offsetof(R, samples), Kind::i64},
                           {"ndim", offsetof(R, ndim), Kind::i32},
                           {"output_shape", offsetof(R, output_shape), Kind::shape},
                           {"captured_batches", offsetof(R, captured_batches), Kind::i64},
                           {"dropped_batches", offsetof(R, dropped_batches), Kind::i64},
                           {"skipped_batches", offsetof(R, skipped_batches), Kind::i64},
                           {"rows", offsetof(R, rows), Kind::i64},
                           {"nonfinite_rows", offsetof(R, nonfinite_rows), Kind::i64},
                           {"errors", offsetof(R, errors), Kind::i64},
                           {"neuron_offset", offsetof(R, neuron_offset), Kind::u64},
                           {"corr_offset", offsetof(R, corr_offset), Kind::u64},
                           {"corr_count", offsetof(R, corr_count), Kind::u64},
                           {"group_offset", offsetof(R, group_offset), Kind::u64},
                           {"n_groups", offsetof(R, n_groups), Kind::u64},
                           {"mean_cohesion", offsetof(R, mean_cohesion), Kind::f64},
                           {"dead_count", offsetof(R, dead_count), Kind::i64},
                           {"gradient_samples", offsetof(R, gradient_samples), Kind::i64},
                           {"gradients", offsetof(R, gradients), Kind::u8}};
  if (version >= 2)
    m.insert(m.end(), {{"has_mean_abs", offsetof(R, has_mean_abs), Kind::u8},
                       {"dead_rate", offsetof(R, dead_rate), Kind::f64},
                       {"dormant_rate", offsetof(R, dormant_rate), Kind::f64},
                       {"cka_previous", offsetof(R, cka_previous), Kind::f64},
                       {"reservoir_offset", offsetof(R, reservoir_offset), Kind::u64},
                       {"reservoir_count", offsetof(R, reservoir_count), Kind::u64},
                       {"reservoir_ids_offset", offsetof(R, reservoir_ids_offset), Kind::u64},
                       {"reservoir_ids_count", offsetof(R, reservoir_ids_count), Kind::u64},
                       {"reservoir_tags_offset", offsetof(R, reservoir_tags_offset), Kind::u64},
                       {"reservoir_tags_count", offsetof(R, reservoir_tags_count), Kind::u64},
                       {"reservoir_loss_offset", offsetof(R, reservoir_loss_offset), Kind::u64},
                       {"reservoir_loss_count", offsetof(R, reservoir_loss_count), Kind::u64}});
  if (version >= 3)
    m.insert(m.end(), {{"reference_offset", offsetof(R, reference_offset), Kind::u64},
                       {"reference_count", offsetof(R, reference_count), Kind::u64},
                       {"reference_rows", offsetof(R, reference_rows), Kind::i64}});
  if (version >= 5)
    m.insert(m.end(), {{"budget_skipped_batches", offsetof(R, budget_skipped_batches), Kind::i64},
                       {"heads_offset", offsetof(R, heads_offset), Kind::u64},
                       {"heads_count", offsetof(R, heads_count), Kind::u64}});
  return compound(sizeof(R), m, file);
}

Handle neuron_row_type(bool file, std::int64_t version) {
  using R = schema::NeuronRow;
  std::vector<Member> m = {{"mean", offsetof(R, mean), Kind::f64},
                           {"stddev", offsetof(R, stddev), Kind::f64},
                           {"min", offsetof(R, min), Kind::f64},
                           {"max", offsetof(R, max), Kind::f64},
                           {"dead", offsetof(R, dead), Kind::u8},
                           {"label", offsetof(R, label), Kind::i32},
                           {"grad_mean_abs", offsetof(R, grad_mean_abs), Kind::f64},
                           {"taylor", offsetof(R, taylor), Kind::f64}};
  if (version >= 2) m.push_back({"mean_abs", offsetof(R, mean_abs), Kind::f64});
  return compound(sizeof(R), m, file);
}

Handle group_row_type(bool file, std::int64_t version) {
  using R = schema::GroupRow;
  std::vector<Member> m = {{"group_id", offsetof(R, group_id), Kind::i32},
                           {"layer_row", offsetof(R, layer_row), Kind::u64},
                           {"size", offsetof(R, size), Kind::i64},
                           {"cohesion", offsetof(R, cohesion), Kind::f64},
                           {"mean_activation", offsetof(R, mean_activation), Kind::f64},
                           {"importance", offsetof(R, importance), Kind::f64},
                           {"members_offset", offsetof(R, members_offset), Kind::u64},
                           {"pattern_offset", offsetof(R, pattern_offset), Kind::u64},
                           {"pattern_len", offsetof(R, pattern_len), Kind::u64},
                           {"learning_phase", offsetof(R, learning_phase), Kind::label},
                           {"skill_category", offsetof(R, skill_category), Kind::label}};
  if (version >= 2)
    m.insert(m.end(), {{"lineage_id", offsetof(R, lineage_id), Kind::i64},
                       {"selectivity", offsetof(R, selectivity), Kind::f64},
                       {"loss_correlation", offsetof(R, loss_correlation), Kind::f64}});
  if (version >= 4)
    m.insert(m.end(), {{"min_member_correlation", offsetof(R, min_member_correlation), Kind::f64},
                       {"loose", offsetof(R, loose), Kind::u8}});
  return compound(sizeof(R), m, file);
}

Handle event_row_type(bool file) {
  using R = schema::EventRow;
  return compound(sizeof(R),
                  {{"snapshot", offsetof(R, snapshot), Kind::u64},
                   {"epoch", offsetof(R, epoch), Kind::i64},
                   {"layer_offset", offsetof(R, layer_offset), Kind::u64},
                   {"layer_len", offsetof(R, layer_len), Kind::u32},
                   {"kind_offset", offsetof(R, kind_offset), Kind::u64},
                   {"kind_len", offsetof(R, kind_len), Kind::u32},
                   {"skill_offset", offsetof(R, skill_offset), Kind::u64},
                   {"skill_len", offsetof(R, skill_len), Kind::u32},
                   {"lineages_offset", offsetof(R, lineages_offset), Kind::u64},
                   {"n_lineages", offsetof(R, n_lineages), Kind::u64},
                   {"strength", offsetof(R, strength), Kind::f64},
                   {"loss_change", offsetof(R, loss_change), Kind::f64}},
                  file);
}

Handle loss_row_type(bool file) {
  using R = schema::LossRow;
  return compound(sizeof(R), {{"epoch", offsetof(R, epoch), Kind::i64}, {"loss", offsetof(R, loss), Kind::f64}}, file);
}

bool compound_matches(Id file_type, Id expected) {
  if (H5Tget_class(file_type) != H5T_COMPOUND || H5Tget_class(expected) != H5T_COMPOUND) return false;
  const int n = H5Tget_nmembers(expected);
  if (n < 0) return false;
  for (int i = 0; i < n; ++i) {
    char* name = H5Tget_member_name(expected, static_cast<unsigned>(i));
    if (name == nullptr) return false;
    const int at = H5Tget_member_index(file_type, name);
    H5free_memory(name);
    if (at < 0) return false;
    Handle want(H5Tget_member_type(expected, static_cast<unsigned>(i)), &H5Tclose);
    Handle have(H5Tget_member_type(file_type, static_cast<unsigned>(at)), &H5Tclose);
    if (!want.valid() || !have.valid()) return false;
    const auto cls = H5Tget_class(want.get());
    if (cls != H5Tget_class(have.get())) return false;
    // Same class is not enough for arrays and strings: the element counts must match too.
    if (cls == H5T_ARRAY || cls == H5T_STRING) {
      if (H5Tget_size(want.get()) != H5Tget_size(have.get()) && cls == H5T_STRING) return false;
      if (cls == H5T_ARRAY) {
        hsize_t a[4] = {0}, b[4] = {0};
        if (H5Tget_array_ndims(want.get()) != 1 || H5Tget_array_ndims(have.get()) != 1) return false;
        H5Tget_array_dims2(want.get(), a);
        H5Tget_array_dims2(have.get(), b);
        if (a[0] != b[0]) return false;
      }
    } else if (cls == H5T_INTEGER || cls == H5T_FLOAT) {
      if (H5Tget_size(have.get()) > 8) return false;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace neuronmap::detail::h5
