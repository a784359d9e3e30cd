"""The live view, measured (README "Live view"): a training process commits a snapshot every --pace ms,
`neuronmap serve` follows it, --clients Server-Sent-Events clients and headless Chromium watch. Per
snapshot: the time from its commit row's timestamp to the page's DOM showing it (the page records when it
added the snapshot), and to each SSE client receiving it; every client must see every snapshot exactly
once. Then the same training alone, for the step-time ratio; and the server's RSS after --rss-snapshots
snapshots of a fast writer.

  /usr/bin/python3 bench/live/measure_live.py --build build [--snapshots 100] [--pace 1900] [--clients 20]
--pace is the sleep after each epoch; an epoch's 50 steps take about 0.1 s more.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "serve"))
import cdp_pipe  # noqa: E402


def percentile(values, p):
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class SseClient(threading.Thread):
    def __init__(self, url, after=-1):
        super().__init__(daemon=True)
        self.url = url
        self.after = after
        self.received = []  # (index, timestamp, wall time received)
        self.stop = False

    def run(self):
        query = "" if self.after is None else f"?after={self.after}"
        with urllib.request.urlopen(self.url + "events" + query, timeout=60) as r:
            event, data = None, None
            for raw in r:
                if self.stop:
                    return
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line == "" and event:
                    if event == "snapshot":
                        s = json.loads(data)
                        self.received.append((s["index"], s["timestamp"], time.time()))
                    event, data = None, None


def start_server(cli, path):
    server = subprocess.Popen([cli, "serve", path, "--port", "0"], stdout=subprocess.PIPE, text=True)
    url = re.search(r"http://127\.0\.0\.1:\d+/", server.stdout.readline()).group(0)
    return server, url


def training(child, path, snapshots, pace, steps, width):
    return subprocess.Popen([child, path, "--epochs", str(snapshots), "--every", "1", "--steps", str(steps),
                             "--width", str(width), "--batch", "128", "--pace", str(pace), "--flush"],
                            stdout=subprocess.PIPE, text=True)


def step_ms(proc):
    out = proc.communicate()[0]
    return float(re.search(r"step_ms=([0-9.]+)", out).group(1))


def rss_kb(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def server_memory(cli, writer, args):
    rss_path = os.path.join(args.dir, "many.h5")
    subprocess.run([writer, rss_path, "--count", str(args.rss_snapshots)], stdout=subprocess.DEVNULL, check=True)
    server, url = start_server(cli, rss_path)
    deadline = time.time() + 300
    while time.time() < deadline:
        with urllib.request.urlopen(url + "api/status") as r:
            if json.loads(r.read())["snapshots"] >= args.rss_snapshots:
                break
        time.sleep(0.2)
    with urllib.request.urlopen(url + "api/snapshots") as r:
        listed = len(json.loads(r.read()))
    rss, hwm = rss_kb(server.pid), rss_kb(server.pid, "VmHWM")
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=20)
    return rss, hwm, listed


def step_ratio(cli, child, args):
    """Training step time with and without the clients, interleaved in one training run: blocks of
    --block epochs alternate between 20 SSE clients + Chromium on the page and nobody watching (the
    server keeps following), so that the VM's changing load falls on both sides alike. The first block
    is a warm-up."""
    path = os.path.join(args.dir, "ratio.h5")
    server, url = start_server(cli, path)
    train = training(child, path, args.ratio_epochs, args.pace, args.steps, args.width)
    assert train.stdout.readline().strip() == "attached"
    browser = None if args.no_browser else cdp_pipe.Browser()
    if browser:
        # The page stays loaded; unwatched blocks pause its event stream (window.neuronmapLive.pause),
        # so that the comparison is of watching, not of loading the page.
        browser.navigate(url)
        browser.wait_for("window.neuronmapLive && window.neuronmapLive.status", timeout=60)
        browser.evaluate("window.neuronmapLive.pause()")
    clients, attached, times = [], False, {True: [], False: []}
    for line in train.stdout:
        m = re.match(r"epoch (\d+) step_ms=([0-9.]+)", line)
        if not m:
            continue
        epoch, ms = int(m.group(1)), float(m.group(2))
        if epoch > args.block:
            times[attached].append(ms)
        if epoch % args.block == 0:
            attached = not attached
            if attached:
                clients = [SseClient(url, after=None) for _ in range(args.clients)]
                for c in clients:
                    c.start()
                if browser:
                    browser.evaluate("window.neuronmapLive.resume()")
            else:
                for c in clients:
                    c.stop = True
                if browser:
                    browser.evaluate("window.neuronmapLive.pause()")
    train.wait()
    if browser:
        browser.close()
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=20)
    with_mean, without_mean = statistics.mean(times[True]), statistics.mean(times[False])
    return {"epochs_each": [len(times[True]), len(times[False])], "block": args.block,
            "browser": not args.no_browser, "clients": args.clients,
            "with_clients_mean_ms": round(with_mean, 3), "without_mean_ms": round(without_mean, 3),
            "with_clients_median_ms": round(statistics.median(times[True]), 3),
            "without_median_ms": round(statistics.median(times[False]), 3),
            "ratio_of_means": round(with_mean / without_mean, 4),
            "ratio_of_medians": round(statistics.median(times[True]) / statistics.median(times[False]), 4)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--snapshots", type=int, default=100)
    ap.add_argument("--pace", type=int, default=1900, help="ms between epochs (one snapshot per epoch)")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--steps", type=int, default=50, help="training steps per epoch")
    ap.add_argument("--width", type=int, default=256, help="the MLP's hidden width")
    ap.add_argument("--rss-snapshots", type=int, default=1000)
    ap.add_argument("--dir", default="/tmp/neuronmap-live-bench")
    ap.add_argument("--screenshot", default="")
    ap.add_argument("--no-alone", action="store_true", help="skip the run without clients")
    ap.add_argument("--ratio-epochs", type=int, default=0, help="also measure the step ratio interleaved (e.g. 60)")
    ap.add_argument("--block", type=int, default=5, help="epochs per block of the interleaved ratio")
    ap.add_argument("--only-ratio", action="store_true")
    ap.add_argument("--no-browser", action="store_true", help="interleaved ratio with the SSE clients only")
    args = ap.parse_args()
    cli = os.path.join(args.build, "bin", "neuronmap")
    child = os.path.join(args.build, "tests", "session", "training_child")
    writer = os.path.join(args.build, "tests", "store", "store_writer_child")
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)

    if args.only_ratio:
        print(json.dumps(step_ratio(cli, child, args), indent=2))
        return 0

    # 1. Training with the server, SSE clients and Chromium, all started first: the page waits for the
    #    file and every snapshot reaches it live.
    path = os.path.join(args.dir, "live.h5")
    server, url = start_server(cli, path)
    clients = [SseClient(url) for _ in range(args.clients)]
    for c in clients:
        c.start()
    browser = cdp_pipe.Browser()
    browser.navigate(url)
    browser.wait_for("window.neuronmapLive && window.neuronmapLive.status", timeout=60)
    train = training(child, path, args.snapshots, args.pace, args.steps, args.width)
    assert train.stdout.readline().strip() == "attached"
    shot_at = args.snapshots // 2
    shot_done = False
    finished = None
    while True:
        n = browser.evaluate("window.neuronmapDashboard && window.neuronmapDashboard.data.details.length") or 0
        if args.screenshot and not shot_done and n >= shot_at:
            browser.wait_for(f"!window.neuronmapDashboard.data.details[{n - 1}].pending", timeout=20)
            browser.screenshot(args.screenshot)
            shot_done = True
        if train.poll() is not None:
            finished = finished or time.time()
            if n >= args.snapshots or time.time() - finished > 30:
                break
        time.sleep(0.2)
    with_clients_ms = step_ms(train)
    browser.wait_for(f"window.neuronmapLive.log.length >= {args.snapshots}", timeout=30)
    log = browser.evaluate("JSON.stringify(window.neuronmapLive.log)")
    duplicates = browser.evaluate("window.neuronmapLive.duplicates")
    gaps = browser.evaluate("window.neuronmapLive.gaps")
    browser.close()
    deadline = time.time() + 30
    while time.time() < deadline and any(len(c.received) < args.snapshots for c in clients):
        time.sleep(0.1)
    for c in clients:
        c.stop = True
    server_rss_kb = rss_kb(server.pid)
    with urllib.request.urlopen(url + "api/status") as r:
        live_cache_bytes = json.loads(r.read())["cache_bytes"]
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=20)

    page = json.loads(log)
    page_indices = [e["index"] for e in page]
    page_latency = [e["shown"] - e["timestamp"] for e in page]
    sse_latency = [t - ts for c in clients for (_, ts, t) in c.received]
    bad_clients = [k for k, c in enumerate(clients)
                   if [i for (i, _, _) in c.received] != list(range(args.snapshots))]

    with open(os.path.join(args.dir, "latencies.json"), "w") as f:
        json.dump({"page": page, "sse": [c.received for c in clients]}, f)

    # 2. The same training alone.
    alone_ms = float("nan")
    if not args.no_alone:
        alone = training(child, os.path.join(args.dir, "alone.h5"), args.snapshots, args.pace, args.steps, args.width)
        alone_ms = step_ms(alone)

    # 3. Server memory after many snapshots (a fast writer, the server following, every snapshot read once
    #    through the API).
    many_rss_kb = many_hwm_kb = listed = -1
    if args.rss_snapshots > 0:
        many_rss_kb, many_hwm_kb, listed = server_memory(cli, writer, args)

    interleaved = step_ratio(cli, child, args) if args.ratio_epochs > 0 else None
    result = {
        "snapshots": args.snapshots, "pace_ms": args.pace, "clients": args.clients,
        "page": {"shown": len(page), "contiguous": page_indices == list(range(args.snapshots)),
                 "duplicates": duplicates, "gaps": gaps,
                 "p50_s": round(percentile(page_latency, 50), 3), "p95_s": round(percentile(page_latency, 95), 3),
                 "max_s": round(max(page_latency), 3)},
        "sse": {"clients_with_missing_or_duplicates": bad_clients,
                "p50_s": round(percentile(sse_latency, 50), 3), "p95_s": round(percentile(sse_latency, 95), 3)},
        "step_ms": {"with_clients": with_clients_ms, "alone": alone_ms,
                    "ratio": round(with_clients_ms / alone_ms, 4) if alone_ms == alone_ms else None},
        "step_ms_interleaved": interleaved,
        "server_after_live_run": {"rss_kb": server_rss_kb, "cache_bytes": live_cache_bytes},
        "rss": {"snapshots": args.rss_snapshots, "listed": listed, "rss_kb": many_rss_kb, "hwm_kb": many_hwm_kb},
    }
    print(json.dumps(result, indent=2))
    return 0 if (result["page"]["contiguous"] and not bad_clients and duplicates == 0) else 1


if __name__ == "__main__":
    sys.exit(main())
