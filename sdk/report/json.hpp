// A small streaming JSON writer for the report and the dashboard data (NaN and infinity become null).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace neuronmap::report {

/// A JSON string literal. Bytes that are not valid UTF-8 become U+FFFD; with `html_safe`, '<', '>' and
/// '&' are escaped too so the text can sit inside an HTML <script> element.
std::string json_quote(std::string_view s, bool html_safe = false);

class JsonWriter {
 public:
  /// `pretty`: objects and arrays of containers one member a line; arrays of scalars stay on one line.
  explicit JsonWriter(bool pretty = true, bool html_safe = false) : pretty_(pretty), html_safe_(html_safe) {}

  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  JsonWriter& key(std::string_view name);

  JsonWriter& value(std::string_view s);
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  JsonWriter& value(const std::string& s) { return value(std::string_view(s)); }
  JsonWriter& value(double v);
  JsonWriter& value(float v) { return value(static_cast<double>(v)); }
  JsonWriter& value(std::int64_t v);
  JsonWriter& value(int v) { return value(static_cast<std::int64_t>(v)); }
  JsonWriter& value(std::uint64_t v);
  JsonWriter& value(bool v);
  JsonWriter& null();
  /// A value already rendered as JSON (e.g. by another writer), inserted as it is.
  JsonWriter& raw(std::string_view json);
  /// A number rounded to `decimals` places, trailing zeros dropped (for compact embedded data).
  JsonWriter& rounded(double v, int decimals);

  template <class T>
  JsonWriter& array(const std::vector<T>& values) {
    begin_array();
    for (const auto& v : values) value(v);
    return end_array();
  }
  JsonWriter& rounded_array(const std::vector<float>& values, int decimals);

  template <class T>
  JsonWriter& field(std::string_view name, const T& v) {
    key(name);
    return value(v);
  }

  const std::string& str() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  struct Level {
    bool object;
    bool first = true;
    bool has_container = false;
    std::size_t start = 0;
  };
  void before_value(bool container);
  void newline();

  std::string out_;
  std::vector<Level> stack_;
  bool pretty_;
  bool html_safe_;
  bool after_key_ = false;
};

}  // namespace neuronmap::report
