// A one-line progress display on stderr, for long reports in a terminal; silent when disabled.
#pragma once

#include <cstdio>
#include <string>

namespace neuronmap::report {

class Progress {
 public:
  Progress(bool enabled, int total) : enabled_(enabled), total_(total) {}
  ~Progress() { clear(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void add_total(int more) { total_ += more; }
  /// Shows "[done/total] what"; the line is rewritten in place.
  void step(const std::string& what) {
    ++done_;
    if (!enabled_) return;
    std::fprintf(stderr, "\r\033[Kneuronmap report: [%d/%d] %s", done_, total_ > done_ ? total_ : done_, what.c_str());
    std::fflush(stderr);
    shown_ = true;
  }
  void clear() {
    if (!shown_) return;
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
    shown_ = false;
  }

 private:
  bool enabled_;
  int total_;
  int done_ = 0;
  bool shown_ = false;
};

}  // namespace neuronmap::report
