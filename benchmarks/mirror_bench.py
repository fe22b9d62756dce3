"""Model mirror benchmark: `snapshot_download` through the mirror vs nginx, then 64
concurrent clients against the mirror (errors, peak RSS of the server process).

    python -m benchmarks.mirror_bench        (or `make bench`, which runs every benchmark)

Both servers run on loopback in the same run and serve the same bytes: nginx (Debian
nginx-light, one worker like the mirror's one process) gets a static tree of `resolve/`
paths hard-linked to the mirror's blobs plus the mirror's own API JSON, so the client does
the same requests against both. Settings (environment):

    GPUPROV_BENCH_SIZE_MB        total safetensors size (default 1024, in 256 MiB shards)
    GPUPROV_BENCH_ROUNDS         timed downloads per server, alternating (default 5)
    GPUPROV_BENCH_CLIENTS        concurrent clients (default 64)
    GPUPROV_BENCH_CLIENT_MB      bytes each concurrent client streams (default 32)
    GPUPROV_BENCH_DIR            scratch directory (default: system temp)

Targets: mirror >= 0.9x nginx throughput, 0 errors, server peak RSS < 200 MB.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = "bench/safetensors-model"
SHARD_MB = 256
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def write_shards(dest: Path, total_mb: int) -> int:
    """Valid safetensors files (one U8 tensor each) filled with random bytes."""
    dest.mkdir(parents=True)
    (dest / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    remaining, i, total = total_mb * 1024 * 1024, 0, 0
    while remaining > 0:
        n = min(SHARD_MB * 1024 * 1024, remaining)
        header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
        header += b" " * (-len(header) % 8)
        with open(dest / f"model-{i:05d}.safetensors", "wb") as fh:
            fh.write(len(header).to_bytes(8, "little") + header)
            left = n
            while left:
                chunk = os.urandom(min(left, 8 * 1024 * 1024))
                fh.write(chunk)
                left -= len(chunk)
        total += n
        remaining -= n
        i += 1
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mirror(store: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-c", "from gpuprov.cli import main; main()", "mirror", "serve"]
    proc = subprocess.Popen(
        # Every benchmark client comes from 127.0.0.1: one address, many clients, so the
        # per-client cap (64 by default) is raised to what GPUPROV_BENCH_CLIENTS may open.
        [*cmd, "--store", str(store), "--port", "0", "--max-client-connections", "4096"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    ready = json.loads(proc.stdout.readline())
    # Drain the access log so the pipe never fills and stalls the server.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, ready["url"]


def nginx_layout(root: Path, store: Path, url: str, sha: str) -> None:
    """Static files for the routes snapshot_download uses, from the mirror's own answers."""
    from gpuprov.mirror.store import blob_path, read_manifest

    info = read_manifest(store, REPO, "model", sha)
    for rev in ("main", sha):
        for f in info.files:
            target = root / REPO / "resolve" / rev / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(blob_path(store, f.sha256), target)
    api = root / "api" / "models" / REPO
    for rel, query in (("revision/main", ""), (f"tree/{sha}", "?recursive=True&expand=False")):
        (api / rel).parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(f"{url}/api/models/{REPO}/{rel}{query}") as resp:
            (api / rel).write_bytes(resp.read())


def start_nginx(work: Path, root: Path, sha: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    conf = work / "nginx.conf"
    conf.write_text(
        f"""{user}
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  default_type application/octet-stream;
  client_body_temp_path {work}/nginx-tmp;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    add_header X-Repo-Commit {sha} always;
    location /api/ {{ default_type application/json; }}
  }}
}}
"""
    )
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(work)], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/api/models/{REPO}/revision/main").read()
            return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"nginx did not start; see {work}/nginx-error.log")


def timed_snapshot(url: str, cache: Path, expected: dict[str, int]) -> float:
    from huggingface_hub import snapshot_download

    started = time.perf_counter()
    snap = Path(snapshot_download(REPO, endpoint=url, cache_dir=cache, token=False, max_workers=8))
    elapsed = time.perf_counter() - started
    got = {p.name: p.stat().st_size for p in snap.iterdir()}
    if got != expected:
        raise RuntimeError(f"snapshot from {url} differs: {got} != {expected}")
    shutil.rmtree(cache)
    return elapsed


def concurrent_clients(
    url: str,
    clients: int,
    per_client: int,
    shard: str,
    shard_sha: str,
    shard_head: bytes,
    work: Path,
) -> int:
    """Each client: model_info, file listing, hf_hub_download(config.json), then streams
    `per_client` bytes of a shard with a Range read and checks them. Returns errors."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.utils import get_session

    errors = 0
    lock = threading.Lock()

    def client(i: int) -> None:
        nonlocal errors
        try:
            api = HfApi(endpoint=url, token=False)
            assert api.model_info(REPO).sha
            assert shard in api.list_repo_files(REPO)
            hf_hub_download(
                REPO, "config.json", endpoint=url, cache_dir=work / f"c{i}", token=False
            )
            got, h = 0, hashlib.sha256()
            headers = {"Range": f"bytes=0-{per_client - 1}"}
            with get_session().stream(
                "GET", f"{url}/{REPO}/resolve/main/{shard}", headers=headers
            ) as r:
                assert r.status_code == 206, r.status_code
                for chunk in r.iter_bytes(1024 * 1024):
                    if got == 0:
                        assert chunk[: len(shard_head)] == shard_head[: len(chunk)]
                    got += len(chunk)
                    h.update(chunk)
            assert got == per_client, (got, per_client)
        except Exception as exc:  # counted, reported below
            with lock:
                errors += 1
            print(f"  client {i}: {type(exc).__name__}: {exc}", file=sys.stderr)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return errors


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    from huggingface_hub.utils import disable_progress_bars

    from gpuprov.mirror.store import add_model

    disable_progress_bars()
    size_mb = env_int("GPUPROV_BENCH_SIZE_MB", 1024)
    rounds = env_int("GPUPROV_BENCH_ROUNDS", 5)
    clients = env_int("GPUPROV_BENCH_CLIENTS", 64)
    client_mb = env_int("GPUPROV_BENCH_CLIENT_MB", 32)
    work = Path(tempfile.mkdtemp(prefix="mirror-bench-", dir=os.environ.get("GPUPROV_BENCH_DIR")))
    procs: list[subprocess.Popen] = []
    print(
        f"mirror benchmark: {size_mb} MiB of safetensors, {rounds} rounds, {clients} clients ({work})"
    )
    try:
        total = write_shards(work / "src", size_mb)
        started = time.perf_counter()
        info = add_model(work / "src", work / "store", REPO)
        took = time.perf_counter() - started
        print(
            f"  import: {total / 2**20:.0f} MiB in {took:.1f}s ({total / 2**20 / took:.0f} MiB/s)"
        )
        shutil.rmtree(work / "src")
        expected = {f.path: f.size for f in info.files}

        mirror, mirror_url = start_mirror(work / "store")
        procs.append(mirror)
        if not Path(NGINX).exists():
            print("  nginx not found: run `make system-deps` (nginx-light); no baseline")
            nginx_url = None
        else:
            nginx_layout(work / "www", work / "store", mirror_url, info.sha)
            nginx, nginx_url = start_nginx(work, work / "www", info.sha)
            procs.append(nginx)
        # Warm the page cache once, so neither server pays for the first disk read.
        timed_snapshot(mirror_url, work / "warm", expected)

        times: dict[str, list[float]] = {"mirror": [], "nginx": []}
        for r in range(rounds):
            order = [("mirror", mirror_url), ("nginx", nginx_url)]
            for name, url in order if r % 2 == 0 else order[::-1]:
                if url:
                    times[name].append(timed_snapshot(url, work / f"cache-{name}-{r}", expected))
        mib = total / 2**20
        # The median of interleaved rounds: on a shared machine single runs swing by 20%.
        best = {k: mib / statistics.median(v) for k, v in times.items() if v}
        for name, tput in best.items():
            runs = ", ".join(f"{mib / t:.0f}" for t in times[name])
            print(f"  snapshot_download via {name:6s}: median {tput:7.0f} MiB/s  (runs: {runs})")

        shard = next(f for f in info.files if f.path.endswith(".safetensors"))
        from gpuprov.mirror.store import blob_path

        with open(blob_path(work / "store", shard.sha256), "rb") as fh:
            head = fh.read(64)
        per_client = min(client_mb * 1024 * 1024, shard.size)
        started = time.perf_counter()
        errors = concurrent_clients(
            mirror_url, clients, per_client, shard.path, shard.sha256, head, work / "conc"
        )
        took = time.perf_counter() - started
        rss = peak_rss_mb(mirror.pid)
        print(
            f"  {clients} concurrent clients: {errors} errors, {clients * per_client / 2**20 / took:.0f} MiB/s aggregate, {took:.1f}s"
        )

        ratio = best["mirror"] / best["nginx"] if "nginx" in best else None
        results = {
            "size_mib": round(mib),
            "mirror_mib_s": round(best["mirror"]),
            "nginx_mib_s": round(best["nginx"]) if "nginx" in best else None,
            "ratio": round(ratio, 3) if ratio else None,
            "clients": clients,
            "errors": errors,
            "server_peak_rss_mb": round(rss, 1),
        }
        checks = [
            (
                "throughput mirror/nginx >= 0.9",
                ratio is not None and ratio >= 0.9,
                f"{ratio:.2f}x" if ratio else "n/a",
            ),
            (f"{clients} clients, 0 errors", errors == 0, str(errors)),
            ("server peak RSS < 200 MB", rss < 200, f"{rss:.0f} MB"),
        ]
        for label, ok, value in checks:
            print(f"  [{'PASS' if ok else 'MISS'}] {label}: {value}")
        print("  result " + json.dumps(results))
        return 0 if errors == 0 else 1
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
