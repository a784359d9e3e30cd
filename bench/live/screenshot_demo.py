"""The README's picture of the live view: `neuronmap serve` on the demo's run file while the demo trains,
photographed by headless Chromium once a few snapshots are on the page.

  /usr/bin/python3 bench/live/screenshot_demo.py --build build --out docs/images/live_view.png
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "serve"))
import cdp_pipe  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="docs/images/live_view.png")
    ap.add_argument("--dir", default="/tmp/neuronmap-live-demo")
    ap.add_argument("--snapshots", type=int, default=3, help="photograph once this many are shown")
    args = ap.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)
    path = os.path.join(args.dir, "run.h5")
    server = subprocess.Popen([os.path.join(args.build, "bin", "neuronmap"), "serve", path, "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    url = re.search(r"http://\S+/", server.stdout.readline()).group(0)
    browser = cdp_pipe.Browser(width=1400, height=1250)
    demo = None
    try:
        browser.navigate(url)
        browser.wait_for("window.neuronmapLive && window.neuronmapLive.status", timeout=60)
        demo = subprocess.Popen([os.path.join(args.build, "bin", "neuronmap_demo"), path, "20"],
                                stdout=subprocess.DEVNULL)
        browser.wait_for(f"window.neuronmapDashboard.data.details.length >= {args.snapshots}", timeout=600)
        n = browser.evaluate("window.neuronmapDashboard.data.details.length")
        browser.wait_for(f"!window.neuronmapDashboard.data.details[{n - 1}].pending", timeout=60)
        browser.wait_for("document.getElementById('nm-status').textContent.indexOf('writer active') >= 0", timeout=30)
        browser.screenshot(args.out)
        print(browser.evaluate("document.getElementById('nm-status').textContent"))
        demo.wait(timeout=600)
        return 0
    finally:
        browser.close()
        if demo and demo.poll() is None:
            demo.kill()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)


if __name__ == "__main__":
    sys.exit(main())
