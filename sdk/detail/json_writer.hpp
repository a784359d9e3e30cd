// The one JSON writer of the SDK and its tools: RapidJSON's Writer (compact) or PrettyWriter behind the
// small interface the reports, the CLI's --json outputs and the session's options_json share.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <rapidjson/prettywriter.h>
#include <rapidjson/writer.h>

#include "detail/utf8.hpp"

namespace neuronmap::detail {

enum class JsonLayout {
  compact,  // no spaces, one line
  pretty,   // objects and arrays of containers one member a line, arrays of scalars on one line
};

enum class JsonEscape {
  plain,
  html,  // also '<', '>', '&' as \u003c, \u003e, \u0026: the text may sit inside an HTML <script>
};

/// `s` with every byte that does not belong to a well-formed UTF-8 sequence replaced by U+FFFD, so
/// that names read from a damaged file still give valid JSON.
inline std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t len = utf8_sequence_length(s, i);
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s.substr(i, len));
      i += len;
    }
  }
  return out;
}

/// A RapidJSON output stream into a std::string. With JsonEscape::html it rewrites '<', '>' and '&':
/// in JSON text those bytes occur only inside strings, where the \u form means the same character.
class JsonOutput {
 public:
  using Ch = char;
  explicit JsonOutput(JsonEscape escape) : html_(escape == JsonEscape::html) {}
  void Put(char c) {
    if (html_ && (c == '<' || c == '>' || c == '&')) {
      text += c == '<' ? "\\u003c" : c == '>' ? "\\u003e" : "\\u0026";
    } else {
      text += c;
    }
  }
  void Flush() {}

  std::string text;

 private:
  bool html_;
};

/// Writes one JSON document. NaN and infinity become null (JSON has neither); doubles print with
/// RapidJSON's round-trip precision, integral ones as integers; strings are made valid UTF-8 first.
class JsonWriter {
 public:
  explicit JsonWriter(JsonLayout layout = JsonLayout::pretty, JsonEscape escape = JsonEscape::plain)
      : output_(escape) {
    if (layout == JsonLayout::pretty) {
      pretty_ = std::make_unique<rapidjson::PrettyWriter<JsonOutput>>(output_);
      pretty_->SetIndent(' ', 2);
    } else {
      compact_ = std::make_unique<rapidjson::Writer<JsonOutput>>(output_);
    }
  }
  JsonWriter(const JsonWriter&) = delete;
  JsonWriter& operator=(const JsonWriter&) = delete;

  JsonWriter& begin_object() {
    before_value(true);
    call([](auto& w) { return w.StartObject(); });
    levels_.push_back({false});
    return *this;
  }
  JsonWriter& end_object() {
    levels_.pop_back();
    call([](auto& w) { return w.EndObject(); });
    return *this;
  }
  JsonWriter& begin_array() {
    before_value(true);
    call([](auto& w) { return w.StartArray(); });
    levels_.push_back({true});
    return *this;
  }
  JsonWriter& end_array() {
    set_one_line(levels_.back().one_line);  // EndArray breaks the line unless the array is on one
    levels_.pop_back();
    call([](auto& w) { return w.EndArray(); });
    return *this;
  }
  JsonWriter& key(std::string_view name) {
    const std::string text = valid_utf8(name);
    call([&](auto& w) { return w.Key(text.data(), static_cast<rapidjson::SizeType>(text.size())); });
    return *this;
  }

  JsonWriter& value(std::string_view s) {
    before_value(false);
    const std::string text = valid_utf8(s);
    call([&](auto& w) { return w.String(text.data(), static_cast<rapidjson::SizeType>(text.size())); });
    return *this;
  }
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  JsonWriter& value(const std::string& s) { return value(std::string_view(s)); }
  JsonWriter& value(double v) {
    // Integral values print as integers ("2", not "2.0"), as readers of earlier files saw them.
    if (std::isfinite(v) && v == std::trunc(v) && std::fabs(v) < 9007199254740992.0)
      return value(static_cast<std::int64_t>(v));
    before_value(false);
    call([&](auto& w) { return std::isfinite(v) ? w.Double(v) : w.Null(); });
    return *this;
  }
  JsonWriter& value(float v) { return value(static_cast<double>(v)); }
  JsonWriter& value(bool v) {
    before_value(false);
    call([&](auto& w) { return w.Bool(v); });
    return *this;
  }
  template <class T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  JsonWriter& value(T v) {
    before_value(false);
    if constexpr (std::is_signed_v<T>) {
      call([&](auto& w) { return w.Int64(static_cast<std::int64_t>(v)); });
    } else {
      call([&](auto& w) { return w.Uint64(static_cast<std::uint64_t>(v)); });
    }
    return *this;
  }
  JsonWriter& null() {
    before_value(false);
    call([](auto& w) { return w.Null(); });
    return *this;
  }
  /// A complete JSON array or object written by another JsonWriter, inserted as it is.
  JsonWriter& raw(std::string_view json) {
    before_value(true);
    call([&](auto& w) { return w.RawValue(json.data(), json.size(), rapidjson::kArrayType); });
    return *this;
  }
  /// A number rounded to `decimals` places (for compact embedded data).
  JsonWriter& rounded(double v, int decimals) {
    if (!std::isfinite(v)) return null();
    const double scale = std::pow(10.0, decimals);
    return value(std::round(v * scale) / scale);  // a rounded -0 prints as 0: value() writes it as an integer
  }

  template <class T>
  JsonWriter& array(const std::vector<T>& values) {
    begin_array();
    for (const auto& v : values) value(v);
    return end_array();
  }
  JsonWriter& rounded_array(const std::vector<float>& values, int decimals) {
    begin_array();
    for (float v : values) rounded(v, decimals);
    return end_array();
  }

  template <class T>
  JsonWriter& field(std::string_view name, const T& v) {
    key(name);
    return value(v);
  }

  const std::string& str() const { return output_.text; }
  std::string take() { return std::move(output_.text); }

 private:
  struct Level {
    bool array;
    bool one_line = false;
    bool empty = true;
  };

  template <class F>
  void call(F&& f) {
    if (pretty_) {
      f(*pretty_);
    } else {
      f(*compact_);
    }
  }

  void set_one_line(bool one_line) {
    if (pretty_)
      pretty_->SetFormatOptions(one_line ? rapidjson::kFormatSingleLineArray : rapidjson::kFormatDefault);
  }

  // An array's first element decides its layout: scalars stay on one line, containers take a line each.
  void before_value(bool container) {
    if (levels_.empty() || !levels_.back().array) return;
    auto& top = levels_.back();
    if (top.empty) top.one_line = !container;
    top.empty = false;
    set_one_line(top.one_line);
  }

  JsonOutput output_;
  std::unique_ptr<rapidjson::PrettyWriter<JsonOutput>> pretty_;
  std::unique_ptr<rapidjson::Writer<JsonOutput>> compact_;
  std::vector<Level> levels_;
};

}  // namespace neuronmap::detail
