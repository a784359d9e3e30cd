// The JSON writer: commas, indentation and escaping in one place.
#include "report/json.hpp"

#include <cmath>

#include <fmt/format.h>

namespace neuronmap::report {
namespace {

std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  const std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k)
    if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return 0;
  return len;
}

}  // namespace

std::string json_quote(std::string_view s, bool html_safe) {
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c < 0x20 || (html_safe && (c == '<' || c == '>' || c == '&'))) {
      switch (c) {
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default: out += fmt::format("\\u{:04x}", c);
      }
      ++i;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
    } else if (const auto len = utf8_sequence_length(s, i); len > 0) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\\ufffd";
      ++i;
    }
  }
  out += '"';
  return out;
}

void JsonWriter::newline() {
  out_ += '\n';
  out_.append(2 * stack_.size(), ' ');
}

void JsonWriter::before_value(bool container) {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (stack_.empty()) return;
  auto& top = stack_.back();
  if (top.first) {
    top.first = false;
    top.has_container = pretty_ && container;
  } else {
    out_ += ',';
    if (pretty_ && !top.has_container) out_ += ' ';
  }
  if (top.has_container) newline();
}

JsonWriter& JsonWriter::begin_object() {
  before_value(true);
  out_ += '{';
  stack_.push_back({true});
  return *this;
}

JsonWriter& JsonWriter::end_object() {
  const bool broke = !stack_.back().first && pretty_;
  stack_.pop_back();
  if (broke) newline();
  out_ += '}';
  return *this;
}

JsonWriter& JsonWriter::begin_array() {
  before_value(true);
  out_ += '[';
  stack_.push_back({false});
  return *this;
}

JsonWriter& JsonWriter::end_array() {
  const bool broke = stack_.back().has_container;
  stack_.pop_back();
  if (broke) newline();
  out_ += ']';
  return *this;
}

JsonWriter& JsonWriter::key(std::string_view name) {
  auto& top = stack_.back();
  if (!top.first) out_ += ',';
  top.first = false;
  if (pretty_) newline();
  out_ += json_quote(name, html_safe_);
  out_ += pretty_ ? ": " : ":";
  after_key_ = true;
  return *this;
}

JsonWriter& JsonWriter::value(std::string_view s) {
  before_value(false);
  out_ += json_quote(s, html_safe_);
  return *this;
}

JsonWriter& JsonWriter::value(double v) {
  before_value(false);
  out_ += std::isfinite(v) ? fmt::format("{}", v) : "null";
  return *this;
}

JsonWriter& JsonWriter::value(std::int64_t v) {
  before_value(false);
  out_ += std::to_string(v);
  return *this;
}

JsonWriter& JsonWriter::value(std::uint64_t v) {
  before_value(false);
  out_ += std::to_string(v);
  return *this;
}

JsonWriter& JsonWriter::value(bool v) {
  before_value(false);
  out_ += v ? "true" : "false";
  return *this;
}

JsonWriter& JsonWriter::null() {
  before_value(false);
  out_ += "null";
  return *this;
}

JsonWriter& JsonWriter::raw(std::string_view json) {
  before_value(true);
  out_ += json;
  return *this;
}

JsonWriter& JsonWriter::rounded(double v, int decimals) {
  before_value(false);
  if (!std::isfinite(v)) {
    out_ += "null";
    return *this;
  }
  std::string s = fmt::format("{:.{}f}", v, decimals);
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  out_ += s;
  return *this;
}

JsonWriter& JsonWriter::rounded_array(const std::vector<float>& values, int decimals) {
  begin_array();
  for (float v : values) rounded(v, decimals);
  return end_array();
}

}  // namespace neuronmap::report
