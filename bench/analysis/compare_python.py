#!/usr/bin/python3
"""NeuronMap analysis vs the Python reference (numpy corrcoef, scipy linkage/fcluster, scikit-learn
KMeans/silhouette), on the same matrices, in one run, with the groups checked for agreement.

    /usr/bin/python3 bench/analysis/compare_python.py [--build build-analysis] [--full] [--grid 1024x2000,...]
    /usr/bin/python3 bench/analysis/compare_python.py --kmeans-seeds 0:60 [--grid 256x10000,...]

The second form compares k-means alone over many seeds (k = 8, n_init = 10; no timing): per matrix,
how often scikit-learn, our Lloyd alone and our Lloyd + Hartigan moves reach the best inertia any of
them found, and how often ours ends above scikit-learn's on the same seed.

The matrices are the oracle's perf-anchor data (make_cases.planted_matrix, seed N + S). Each Python
step runs the reference's own function (shared/oracle/reference.py). Both sides use the BLAS that
Debian's alternatives select (OpenBLAS when installed); both are printed. The correlation rate is
compared with a dgemm measured right before each run, per wall second and per CPU second (the latter
is what a loaded, shared machine distorts least).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ORACLE = os.path.join(os.path.dirname(ROOT), "shared", "oracle")


def timed(fn, reps):
    """(wall s, process CPU s) of the run with the median wall time, and the last result."""
    runs, out = [], None
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        runs.append((time.perf_counter() - t0, time.process_time() - c0))
    runs.sort()
    return runs[len(runs) // 2], out


def ari(a, b):
    from sklearn.metrics import adjusted_rand_score
    return float(adjusted_rand_score(a, b))


def numpy_dgemm_gflops(n=2048, reps=3):
    """(GFLOP per wall second, GFLOP per CPU second), best of reps."""
    a = np.full((n, n), 1.0 / n)
    runs = [timed(lambda: a @ a, 1)[0] for _ in range(reps)]
    return 2.0 * n ** 3 / min(w for w, _ in runs) / 1e9, 2.0 * n ** 3 / max(min(c for _, c in runs), 1e-9) / 1e9


def blas_description():
    """Which BLAS numpy really loaded (threadpoolctl when present, else the mapped libraries)."""
    try:
        from threadpoolctl import threadpool_info
        infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if infos:
            return "; ".join(f"{i['internal_api']} {i.get('version')} ({i.get('threading_layer')}, "
                             f"{i.get('architecture')} kernels, {i.get('num_threads')} threads) {i['filepath']}"
                             for i in infos)
    except ImportError:
        pass
    with open("/proc/self/maps") as maps:
        libs = sorted({line.split()[-1] for line in maps if "blas" in line})
    return ", ".join(libs)


def ours_blas(exe):
    """The BLAS libraries the C++ benchmark resolves (ldd), with alternatives links followed."""
    out = subprocess.run(["ldd", exe], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        if "blas" in line and "=>" in line:
            path = line.split("=>")[1].split("(")[0].strip()
            libs.append(f"{line.split()[0]} -> {os.path.realpath(path)}")
    return ", ".join(libs)


def run_case(n, s, args, ref, make_cases):
    from sklearn.cluster import KMeans
    path = matrix_path(n, s, args, make_cases)
    load = os.getloadavg()[0]
    exe = os.path.join(args.build, "bench", "analysis", "analysis_compare")
    ours = json.loads(subprocess.run([exe, path, "--reps", str(args.reps)], check=True,
                                     capture_output=True, text=True).stdout)

    X = np.load(path).astype(np.float64)
    dead = ref.dead_mask(X)
    big = n * s >= 4096 * 10000
    reps = 1 if big else args.reps
    py = {}
    py["correlation"], C = timed(lambda: ref.corr_matrix(X, dead), reps)
    py["graph"], graph = timed(lambda: ref.correlation_clustering(X, 0.6, 3, C=C, dead=dead), 1 if n >= 4096 else reps)
    py["components"], components = timed(lambda: ref.threshold_components(X, 0.6, 3, C=C, dead=dead), reps)
    py["hierarchical"], hier = timed(lambda: ref.hierarchical(X, 0.6, 3, C=C, dead=dead), reps)
    Z = ref.zscore_profiles(X, dead)
    py["kmeans8"], km8 = timed(lambda: KMeans(n_clusters=8, n_init=10, random_state=42, algorithm="lloyd").fit(Z), 1)
    if args.no_python_autok:
        py["autok"], auto = None, None
    else:
        py["autok"], auto = timed(lambda: ref.kmeans(X, None, 3, C=C, dead=dead, Z=Z), 1)

    rows = []
    ol = ours["labels"]
    ours_t = {k: (v, ours["cpu_seconds"][k]) for k, v in ours["seconds"].items()}
    rows.append(("correlation (C from X)", py["correlation"], ours_t["correlation"],
                 f"{ours['corr_gflops']:.1f} GFLOP/s (N^2 S flops) = {100 * ours['corr_vs_dgemm_wall']:.0f}% of dgemm "
                 f"{ours['dgemm_gflops']:.1f}; per CPU-s {ours['corr_cpu_gflops']:.1f} = "
                 f"{100 * ours['corr_vs_dgemm_cpu']:.0f}% of dgemm {ours['dgemm_cpu_gflops']:.1f}"))
    rows.append(("  from streaming moments", None, ours_t["correlation_from_moments"], "batches of 256 rows"))
    same = ol["correlation_clustering"] == graph[0]["labels"]
    q_ref = graph[0]["diagnostics"]["quality"]
    rows.append(("correlation clustering+stats", py["graph"], ours_t["graph"],
                 ("identical" if same else f"DIFFERENT (ARI {ari(ol['correlation_clustering'], graph[0]['labels']):.4f})")
                 + f", Q {ours['correlation_quality']:.6g} vs {q_ref:.6g}, {ours['correlation_sweeps']} sweeps"))
    rows.append(("components+stats (spec v1)", py["components"], ours_t["components"],
                 "identical" if ol["components"] == components[0]["labels"] else "DIFFERENT"))
    rows.append(("linkage+cut+stats", py["hierarchical"], ours_t["hierarchical"],
                 "identical" if ol["hierarchical"] == hier[0]["labels"] else "DIFFERENT"))
    rows.append(("k-means k=8 n_init=10", py["kmeans8"], ours_t["kmeans8"],
                 f"ARI {ari(ol['kmeans8'], km8.labels_):.3f}, inertia {ours['kmeans8_inertia'] / km8.inertia_:.4f}x "
                 f"({ours['kmeans8_inertia'] / km8.inertia_ - 1:+.1e})"))
    if auto is not None:
        d = auto[0]["diagnostics"]
        check = (f"k {ours['chosen_k']} vs {d['chosen_k']}, ARI {ari(ol['kmeans'], auto[0]['labels']):.3f}, "
                 f"inertia {ours['autok_inertia'] / d['inertia']:.4f}x ({ours['autok_inertia'] / d['inertia'] - 1:+.1e})")
    else:
        check = f"k {ours['chosen_k']} (Python skipped)"
    rows.append(("auto-k (k=2..10 + silhouette)", py["autok"], ours_t["autok"], check))
    return {"n": n, "s": s, "load": load, "rows": rows, "dgemm_ours": ours["dgemm_gflops"]}


def kmeans_seeds(n, s, args, ref, make_cases):
    """One table row: k-means over seeds [first, last), ours (Lloyd, Lloyd + moves) vs scikit-learn."""
    from sklearn.cluster import KMeans
    first, last = (int(v) for v in args.kmeans_seeds.split(":"))
    path = matrix_path(n, s, args, make_cases)
    exe = os.path.join(args.build, "bench", "analysis", "analysis_compare")
    ours = json.loads(subprocess.run([exe, path, "--kmeans-seeds", f"{first}:{last}"], check=True,
                                     capture_output=True, text=True).stdout)
    X = np.load(path).astype(np.float64)
    Z = ref.zscore_profiles(X, ref.dead_mask(X))
    sk = [KMeans(n_clusters=8, n_init=10, random_state=seed, algorithm="lloyd").fit(Z).inertia_
          for seed in range(first, last)]
    best = min(min(sk), min(ours["lloyd"]), min(ours["refined"]))
    hits = (lambda v: sum(x <= best * (1 + 1e-9) for x in v))
    worse = [seed for seed, o, p in zip(range(first, last), ours["refined"], sk) if o > p * (1 + 1e-9)]
    ratio = max(o / p for o, p in zip(ours["refined"], sk))
    count = last - first
    print(f"| {n} | {s} | {first}-{last - 1} | {best:.3f} | {hits(sk)}/{count} | {hits(ours['lloyd'])}/{count} | "
          f"{hits(ours['refined'])}/{count} | {len(worse)} {worse if worse else ''} | {ratio:.4f} ({ratio - 1:+.1e}) |",
          flush=True)


def matrix_path(n, s, args, make_cases):
    os.makedirs(args.data, exist_ok=True)
    suffix = "" if (args.noise, args.background) == (0.5, 0.125) else f"_noise{args.noise}_bg{args.background}"
    path = os.path.join(args.data, f"planted_N{n}_S{s}{suffix}.npy")
    if not os.path.exists(path):
        X, *_ = make_cases.planted_matrix(n_neurons=n, n_samples=s, k=8, noise=args.noise, relu=False,
                                          n_dead=max(3, n // 32), n_background=int(n * args.background), seed=n + s)
        np.save(path, np.ascontiguousarray(X))
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default=os.path.join(ROOT, "build-analysis"))
    p.add_argument("--data", default="/tmp/neuronmap_compare")
    p.add_argument("--full", action="store_true", help="N in {256, 1024, 4096} x S in {2000, 10000}")
    p.add_argument("--grid", default=None, help="e.g. 1024x2000,4096x10000")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--noise", type=float, default=0.5, help="noise of the planted neurons (harder: 1.0)")
    p.add_argument("--background", type=float, default=0.125, help="fraction of background neurons (harder: 0.5)")
    p.add_argument("--no-python-autok", action="store_true", help="skip the (slow) Python auto-k")
    p.add_argument("--kmeans-seeds", default=None, metavar="A:B",
                   help="k-means only: seeds A..B-1, ours (Lloyd / + Hartigan moves) vs scikit-learn")
    args = p.parse_args()
    sys.path.insert(0, ORACLE)
    import make_cases  # noqa: E402
    import reference as ref  # noqa: E402

    if args.grid:
        grid = [tuple(int(v) for v in g.split("x")) for g in args.grid.split(",")]
    elif args.full:
        grid = [(n, s) for n in (256, 1024, 4096) for s in (2000, 10000)]
    else:
        grid = [(256, 2000), (1024, 2000)]
    if args.kmeans_seeds:
        print("k = 8, n_init = 10 on both sides; 'best' = the lowest inertia any run found; a hit is within "
              "1e-9 of it; 'ours > sklearn' counts seeds where ours (with moves) ends above scikit-learn's.")
        print()
        print("| N | S | seeds | best inertia | sklearn hits | ours Lloyd hits | ours +moves hits | "
              "ours > sklearn (seeds) | max ours/sklearn |")
        print("|---|---|---|---|---|---|---|---|---|")
        for n, s in grid:
            kmeans_seeds(n, s, args, ref, make_cases)
        return
    wall, cpu = numpy_dgemm_gflops()
    exe = os.path.join(args.build, "bench", "analysis", "analysis_compare")
    print(f"numpy dgemm: {wall:.1f} GFLOP/s, {cpu:.1f} GFLOP per CPU-s (2048^3); cores: {os.cpu_count()}; "
          f"load avg {os.getloadavg()[0]:.1f}")
    print(f"numpy {np.__version__} BLAS: {blas_description()}")
    print(f"ours BLAS: {ours_blas(exe)}")
    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_"))}
    print(f"BLAS environment (both sides): {env or 'none'}")
    print()
    print("| N | S | step | Python s (CPU s) | ours s (CPU s) | speed-up wall (CPU) | check |")
    print("|---|---|---|---|---|---|---|")
    for n, s in grid:
        r = run_case(n, s, args, ref, make_cases)
        for name, t_py, t_ours, check in r["rows"]:
            speed = ""
            if t_py and t_ours and t_ours[0] > 0:
                speed = f"{t_py[0] / t_ours[0]:.1f}x ({t_py[1] / max(t_ours[1], 1e-9):.1f}x)"
            fmt = (lambda v: "" if v is None else f"{v[0]:.3g} ({v[1]:.3g})")
            print(f"| {n} | {s} | {name} | {fmt(t_py)} | {fmt(t_ours)} | {speed} | {check} |", flush=True)
        print(f"| {n} | {s} | (our dgemm {r['dgemm_ours']:.1f} GFLOP/s, load avg {r['load']:.1f}) | | | | |", flush=True)


if __name__ == "__main__":
    main()
