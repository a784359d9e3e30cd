"""The live page in headless Chromium: snapshots appear without a reload in every chart and table, the
user's layer and snapshot selection stays, and the status line and banner follow the file's faults
(writer killed, truncated, replaced by a new run, deleted). Exit 77 (skipped) without Chromium."""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdp_pipe  # noqa: E402


class Writer:
    def __init__(self, exe, path, count):
        self.proc = subprocess.Popen([exe, path, "--count", str(count), "--stdin", "--lock"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        for _ in range(count):
            self.expect_commit()

    def expect_commit(self):
        for line in self.proc.stdout:
            if line.startswith("committed "):
                return
        raise RuntimeError("writer ended without committing")

    def commit(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        self.expect_commit()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--writer", required=True)
    ap.add_argument("--dir", required=True)
    args = ap.parse_args()
    if not os.path.exists(cdp_pipe.CHROMIUM):
        print("skipped: no", cdp_pipe.CHROMIUM)
        return 77
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)
    path = os.path.join(args.dir, "run.h5")
    writer = Writer(args.writer, path, 1)
    server = subprocess.Popen([args.cli, "serve", path, "--port", "0"], stdout=subprocess.PIPE, text=True)
    browser = None
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+/", server.stdout.readline()).group(0)
        browser = cdp_pipe.Browser()
        browser.navigate(url)
        live = 'document.documentElement.getAttribute("data-neuronmap-live") || ""'

        def wait_live(pattern):
            return browser.wait_for(f'/{pattern}/.test({live}) && {live}', timeout=30)

        def js(expression):
            return browser.evaluate(expression)

        def settles(expression, expected, timeout=15):
            """The page updates its charts and tables after the live attribute changes (and Chromium
            may draw late on a loaded machine): poll until `expression` equals `expected`, then assert."""
            try:
                browser.wait_for(f'({expression}) === {json.dumps(expected)}', timeout=timeout)
            except TimeoutError:
                pass
            value = js(expression)
            assert value == expected, (expression, value, expected)

        wait_live(r"^1\|ok\|active$")
        assert js('document.documentElement.getAttribute("data-neuronmap")').startswith("ok:"), "dashboard errors"
        status = js('document.getElementById("nm-status").textContent')
        # The writer holds its lock: "writer active", or "idle" once nothing changed for 10 s (a slow start).
        assert re.fullmatch(r"live · 1 snapshot · last \d+ (s|min) ago · writer (active|idle for \d+ (s|min))",
                            status), status

        writer.commit()
        writer.commit()
        wait_live(r"^3\|ok\|active$")
        settles('document.getElementById("nm-snapshot").options.length', 3)
        settles('document.getElementById("nm-snapshot").value', "2")  # "follow latest" moved on
        browser.wait_for('!window.neuronmapDashboard.data.details[2].pending')
        assert js('document.getElementById("nm-groups").tBodies[0].rows.length') >= 1

        # The user picks another layer and an older snapshot: new snapshots must not move them.
        js('(function(){var l=document.getElementById("nm-layer"); l.value=l.options[1].value;'
           'l.dispatchEvent(new Event("change")); var s=document.getElementById("nm-snapshot"); s.value="0";'
           's.dispatchEvent(new Event("change"));})()')
        layer = js('document.getElementById("nm-layer").value')
        writer.commit()
        wait_live(r"^4\|ok\|active$")
        assert js('document.getElementById("nm-layer").value') == layer
        assert js('document.getElementById("nm-snapshot").value') == "0"
        assert js('document.getElementById("nm-follow").checked') is False
        settles('document.getElementById("nm-snapshot").options.length', 4)
        # Every chart got the new point: the timelines and the loss chart have 4 epochs.
        for chart in ("nm-tl-groups", "nm-tl-cohesion", "nm-tl-dead", "nm-tl-cka"):
            settles(f'echarts.getInstanceByDom(document.getElementById("{chart}")).getOption().series[0].data.length', 4)
        settles('echarts.getInstanceByDom(document.getElementById("nm-tl-loss")).getOption().series'
                '.filter(function(s){return s.name==="loss at snapshots"})[0].data.length', 4)
        assert js('window.neuronmapLive.duplicates') == 0 and js('window.neuronmapLive.gaps') == 0

        writer.kill()
        wait_live(r"^4\|ok\|stopped$")
        assert "writer stopped" in js('document.getElementById("nm-status").textContent')

        os.truncate(path, os.path.getsize(path) // 2)
        wait_live(r"^4\|error\|")
        banner = js('document.getElementById("nm-banner").hidden ? "" : document.getElementById("nm-banner").textContent')
        assert banner.startswith("error:") and re.search("shrank|truncated|damaged", banner), banner
        assert js('document.getElementById("nm-snapshot").options.length') == 4, "last good state lost"

        fresh = Writer(args.writer, path, 2)  # a new run takes the path: the page reloads onto it
        browser.wait_for('window.neuronmapDashboard && window.neuronmapDashboard.data.live.generation === 1', timeout=30)
        wait_live(r"^2\|ok\|active$")
        browser.screenshot(os.path.join(args.dir, "live.png"))
        fresh.kill()

        os.remove(path)
        wait_live(r"^2\|deleted\|")
        banner = js('document.getElementById("nm-banner").textContent')
        assert banner.startswith("file deleted"), banner
        print("live page: ok")
        return 0
    finally:
        if browser:
            browser.close()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        if writer.proc.poll() is None:
            writer.kill()


if __name__ == "__main__":
    sys.exit(main())
