// Canvas: cairo surfaces, the toy text API with DejaVu Sans, axes with round ticks.
#include "report/canvas.hpp"

#include <cairo-svg.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "detail/utf8.hpp"
#include "neuronmap/errors.hpp"

namespace neuronmap::report {

namespace {
constexpr double kHalfPi = 1.57079632679489661923;
}

std::string printable_utf8(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t len = detail::utf8_sequence_length(s, i);
    if (len == 0 || (len == 1 && (c < 0x20 || c == 0x7f))) {
      out += '?';
      ++i;
    } else {
      out.append(s.substr(i, len));
      i += len;
    }
  }
  return out;
}

Canvas::Canvas(std::string path, ImageFormat format, int width, int height)
    : path_(std::move(path)), format_(format), width_(width), height_(height) {
  if (format_ == ImageFormat::svg) {
    surface_ = cairo_svg_surface_create(path_.c_str(), width, height);
    // Pixels, not points: the SVG opens at the same size as the PNG would.
    if (cairo_surface_status(surface_) == CAIRO_STATUS_SUCCESS)
      cairo_svg_surface_set_document_unit(surface_, CAIRO_SVG_UNIT_PX);
  } else {
    surface_ = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
  }
  if (cairo_surface_status(surface_) != CAIRO_STATUS_SUCCESS) {
    const std::string why = cairo_status_to_string(cairo_surface_status(surface_));
    cairo_surface_destroy(surface_);
    throw Error("report: cannot create '" + path_ + "': " + why);
  }
  cr_ = cairo_create(surface_);
  cairo_font_options_t* options = cairo_font_options_create();
  cairo_font_options_set_hint_metrics(options, CAIRO_HINT_METRICS_OFF);
  cairo_font_options_set_antialias(options, CAIRO_ANTIALIAS_GRAY);
  cairo_set_font_options(cr_, options);
  cairo_font_options_destroy(options);
  fill_rect(0, 0, width, height, {1, 1, 1});
}

Canvas::~Canvas() {
  if (cr_) cairo_destroy(cr_);
  if (surface_) cairo_surface_destroy(surface_);
}

void Canvas::finish() {
  if (finished_) return;
  finished_ = true;
  cairo_status_t status = cairo_status(cr_);
  if (status == CAIRO_STATUS_SUCCESS) {
    if (format_ == ImageFormat::png) {
      cairo_surface_flush(surface_);
      status = cairo_surface_write_to_png(surface_, path_.c_str());
    } else {
      cairo_surface_finish(surface_);  // writes the SVG's end
      status = cairo_surface_status(surface_);
    }
  }
  if (status != CAIRO_STATUS_SUCCESS)
    throw Error("report: cannot write '" + path_ + "': " + cairo_status_to_string(status));
}

void Canvas::set_color(const Rgb& c, double alpha) { cairo_set_source_rgba(cr_, c.r, c.g, c.b, alpha); }

void Canvas::fill_rect(double x, double y, double w, double h, const Rgb& c, double alpha) {
  set_color(c, alpha);
  cairo_rectangle(cr_, x, y, w, h);
  cairo_fill(cr_);
}

void Canvas::stroke_rect(double x, double y, double w, double h, const Rgb& c, double line_width) {
  set_color(c);
  cairo_set_line_width(cr_, line_width);
  cairo_rectangle(cr_, x, y, w, h);
  cairo_stroke(cr_);
}

void Canvas::line(double x0, double y0, double x1, double y1, const Rgb& c, double line_width, double alpha) {
  set_color(c, alpha);
  cairo_set_line_width(cr_, line_width);
  cairo_move_to(cr_, x0, y0);
  cairo_line_to(cr_, x1, y1);
  cairo_stroke(cr_);
}

void Canvas::select(const Font& f) {
  cairo_select_font_face(cr_, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                         f.bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr_, f.size);
}

double Canvas::text_width(std::string_view s, const Font& f) {
  select(f);
  const std::string text = printable_utf8(s);
  cairo_text_extents_t extents;
  cairo_text_extents(cr_, text.c_str(), &extents);
  return extents.x_advance;
}

std::string Canvas::elide(std::string_view s, double max_width, const Font& f) {
  std::string text = printable_utf8(s);
  if (text_width(text, f) <= max_width) return text;
  while (!text.empty()) {
    // Drop one whole UTF-8 character from the end.
    do text.pop_back();
    while (!text.empty() && (static_cast<unsigned char>(text.back()) >> 6) == 0x2);
    if (!text.empty() && (static_cast<unsigned char>(text.back()) & 0x80)) text.pop_back();
    if (text_width(text + "\u2026", f) <= max_width) break;
  }
  return text + "\u2026";
}

void Canvas::text(double x, double y, std::string_view s, const Font& f, Align align, Baseline baseline,
                  double angle) {
  const std::string text = printable_utf8(s);
  select(f);
  cairo_text_extents_t extents;
  cairo_text_extents(cr_, text.c_str(), &extents);
  cairo_font_extents_t font;
  cairo_font_extents(cr_, &font);
  double dx = 0;
  if (align == Align::center) dx = -extents.x_advance / 2;
  if (align == Align::right) dx = -extents.x_advance;
  double dy = 0;
  if (baseline == Baseline::top) dy = font.ascent * 0.8;
  if (baseline == Baseline::middle) dy = font.ascent * 0.35;
  if (baseline == Baseline::bottom) dy = -font.descent;
  cairo_save(cr_);
  cairo_translate(cr_, x, y);
  if (angle != 0.0) cairo_rotate(cr_, angle);
  cairo_move_to(cr_, dx, dy);
  set_color(f.color);
  cairo_show_text(cr_, text.c_str());
  cairo_restore(cr_);
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return {lo};
  const double raw = (hi - lo) / std::max(1, target);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * magnitude >= raw) {
      step = m * magnitude;
      break;
    }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step)
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0.0 : t);
  return ticks;
}

std::string tick_label(double v, double step) {
  const double a = std::fabs(v);
  if (a != 0 && (a >= 1e6 || a < 1e-4)) return fmt::format("{:.2g}", v);
  // As many decimals as the step needs to be exact (0.25 needs two), at most six.
  int decimals = 0;
  while (decimals < 6 && std::fabs(step * std::pow(10.0, decimals) - std::round(step * std::pow(10.0, decimals))) > 1e-6)
    ++decimals;
  return fmt::format("{:.{}f}", v, decimals);
}

void padded_range(double& lo, double& hi, double fraction) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) {
    lo = 0;
    hi = 1;
    return;
  }
  if (hi - lo < 1e-12) {
    const double pad = std::max(0.5, std::fabs(lo) * 0.1);
    lo -= pad;
    hi += pad;
    return;
  }
  const double pad = (hi - lo) * fraction;
  lo -= pad;
  hi += pad;
}

Plot::Plot(Canvas& canvas, double x, double y, double w, double h, double x_lo, double x_hi, double y_lo, double y_hi)
    : canvas_(canvas), x_(x), y_(y), w_(w), h_(h), x_lo_(x_lo), x_hi_(x_hi), y_lo_(y_lo), y_hi_(y_hi) {}

void Plot::clip() const {
  cairo_save(canvas_.cr());
  cairo_rectangle(canvas_.cr(), x_, y_, w_, h_);
  cairo_clip(canvas_.cr());
}

void Plot::unclip() const { cairo_restore(canvas_.cr()); }

void Plot::axes(const std::string& x_label, const std::string& y_label, const std::string& title, bool integer_x) {
  const Rgb grid{0.9, 0.9, 0.9}, frame{0.35, 0.35, 0.35};
  const Font tick{11.0, false, {0.3, 0.3, 0.3}};
  canvas_.fill_rect(x_, y_, w_, h_, {0.985, 0.985, 0.985});
  auto x_ticks = nice_ticks(x_lo_, x_hi_, std::max(2, static_cast<int>(w_ / 90)));
  if (integer_x) {
    x_ticks.erase(std::remove_if(x_ticks.begin(), x_ticks.end(), [](double t) { return t != std::floor(t); }),
                  x_ticks.end());
    if (x_ticks.empty()) x_ticks.push_back(std::round((x_lo_ + x_hi_) / 2));
  }
  const auto y_ticks = nice_ticks(y_lo_, y_hi_, std::max(2, static_cast<int>(h_ / 50)));
  const double x_step = x_ticks.size() > 1 ? x_ticks[1] - x_ticks[0] : 1.0;
  const double y_step = y_ticks.size() > 1 ? y_ticks[1] - y_ticks[0] : 1.0;
  double widest_y = 0;
  for (double t : x_ticks) {
    if (t < x_lo_ || t > x_hi_) continue;
    canvas_.line(px(t), y_, px(t), y_ + h_, grid, 1);
    canvas_.line(px(t), y_ + h_, px(t), y_ + h_ + 4, frame, 1);
    canvas_.text(px(t), y_ + h_ + 7, tick_label(t, integer_x ? std::max(1.0, x_step) : x_step), tick, Align::center,
                 Baseline::top);
  }
  for (double t : y_ticks) {
    if (t < y_lo_ || t > y_hi_) continue;
    canvas_.line(x_, py(t), x_ + w_, py(t), grid, 1);
    canvas_.line(x_ - 4, py(t), x_, py(t), frame, 1);
    const std::string label = tick_label(t, y_step);
    widest_y = std::max(widest_y, canvas_.text_width(label, tick));
    canvas_.text(x_ - 7, py(t), label, tick, Align::right, Baseline::middle);
  }
  canvas_.stroke_rect(x_, y_, w_, h_, frame, 1);
  const Font label{12.5, false, {0.2, 0.2, 0.2}};
  if (!x_label.empty()) canvas_.text(x_ + w_ / 2, y_ + h_ + 34, x_label, label, Align::center, Baseline::alphabetic);
  if (!y_label.empty())
    canvas_.text(x_ - widest_y - 16, y_ + h_ / 2, canvas_.elide(y_label, h_, label), label, Align::center,
                 Baseline::alphabetic, -kHalfPi);
  if (!title.empty())
    canvas_.text(x_, y_ - 10, canvas_.elide(title, w_, {14.0, true}), {14.0, true}, Align::left, Baseline::alphabetic);
}

}  // namespace neuronmap::report
