// A picture being drawn: a cairo PNG or SVG surface with text, axes and a few shapes.
#pragma once

#include <cairo.h>

#include <string>
#include <string_view>
#include <vector>

#include "report/colormap.hpp"
#include "report/report.hpp"

namespace neuronmap::report {

enum class Align { left, center, right };
enum class Baseline { top, middle, alphabetic, bottom };

struct Font {
  double size = 13.0;
  bool bold = false;
  Rgb color{0.13, 0.13, 0.13};
};

/// Owns the surface; finish() writes the file (PNG) or completes it (SVG). Move-less, one per picture.
class Canvas {
 public:
  Canvas(std::string path, ImageFormat format, int width, int height);
  ~Canvas();
  Canvas(const Canvas&) = delete;
  Canvas& operator=(const Canvas&) = delete;

  cairo_t* cr() const { return cr_; }
  int width() const { return width_; }
  int height() const { return height_; }
  /// Throws neuronmap::Error if drawing or writing failed.
  void finish();

  void set_color(const Rgb& c, double alpha = 1.0);
  void fill_rect(double x, double y, double w, double h, const Rgb& c, double alpha = 1.0);
  void stroke_rect(double x, double y, double w, double h, const Rgb& c, double line_width);
  void line(double x0, double y0, double x1, double y1, const Rgb& c, double line_width, double alpha = 1.0);

  void text(double x, double y, std::string_view s, const Font& f, Align align = Align::left,
            Baseline baseline = Baseline::alphabetic, double angle = 0.0);
  double text_width(std::string_view s, const Font& f);
  /// `s` shortened with an ellipsis to fit `max_width`.
  std::string elide(std::string_view s, double max_width, const Font& f);

 private:
  void select(const Font& f);

  std::string path_;
  ImageFormat format_;
  int width_, height_;
  cairo_surface_t* surface_ = nullptr;
  cairo_t* cr_ = nullptr;
  bool finished_ = false;
};

/// Text that cairo accepts: invalid UTF-8 and control characters become '?'.
std::string printable_utf8(std::string_view s);

/// Round tick positions (1, 2, 5 x 10^k steps) covering [lo, hi], about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target);
std::string tick_label(double v, double step);

/// A rectangle of a canvas with value ranges on both axes.
class Plot {
 public:
  Plot(Canvas& canvas, double x, double y, double w, double h, double x_lo, double x_hi, double y_lo, double y_hi);
  double px(double x) const { return x_ + (x - x_lo_) / (x_hi_ - x_lo_) * w_; }
  double py(double y) const { return y_ + h_ - (y - y_lo_) / (y_hi_ - y_lo_) * h_; }
  /// Frame, grid, tick labels, axis labels and a title above the frame.
  void axes(const std::string& x_label, const std::string& y_label, const std::string& title, bool integer_x = false);
  void clip() const;
  void unclip() const;
  double x() const { return x_; }
  double y() const { return y_; }
  double w() const { return w_; }
  double h() const { return h_; }

 private:
  Canvas& canvas_;
  double x_, y_, w_, h_, x_lo_, x_hi_, y_lo_, y_hi_;
};

/// Pads a value range so data do not sit on the frame; a degenerate range gets a unit width.
void padded_range(double& lo, double& hi, double fraction = 0.05);

}  // namespace neuronmap::report
