"""Mirror host under load: 200 concurrent apt clients against nginx serving a real signed
repository with the mirror host's site config, and 64 concurrent registry blob pulls
against a real Debian `docker-registry` holding a real image; each against nginx serving
the same files directly with Debian's default config (the baseline, same run).

    python -m benchmarks.mirror_load_bench     (or `make bench`, which runs every benchmark)

apt clients: a few are real `apt-get update` + `apt-get download` in isolated apt roots
(Signed-By the repository key, so apt checks the signature and every hash); the rest are
HTTP clients doing what apt does: InRelease, Packages, Packages.gz and Packages.xz, then
.debs, then one Range request (apt's resume), every body checked against the published
file's sha256 (or its bytes). Registry clients: `GET /v2/`, the manifest (digest checked),
then one blob (`GET /v2/NAME/blobs/sha256:...`, digest checked), spread over the layers.
Each HTTP client connects from its own loopback address (127.0.x.y), as each GPU host
has its own: the mirror's nginx caps connections per client address. The servers and
their configuration: benchmarks/mirror_load_servers.py.

Settings (environment):

    GPUPROV_BENCH_APT_CLIENTS      concurrent apt clients (default 200)
    GPUPROV_BENCH_APT_REAL         of which real apt-get (default 8)
    GPUPROV_BENCH_APT_DEBS         .debs each HTTP apt client fetches (default 6)
    GPUPROV_BENCH_BLOB_CLIENTS     concurrent registry blob pulls (default 64)
    GPUPROV_BENCH_IMAGE_DIRS       rootfs directories made image layers
                                   (default "etc usr/sbin usr/bin usr/lib/python3.11
                                   usr/share/locale": 6 blobs, about 46 MiB)
    GPUPROV_BENCH_ROUNDS           timed rounds per server, interleaved (default 3)
    GPUPROV_BENCH_DIR              scratch directory (default: system temp)

Targets: 0 errors (non-zero exit otherwise); mirror throughput reported as a ratio of the
default-config nginx's on the same files (apt: >= 0.9x).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import mirror_load_servers as srv

CLIENT_TIMEOUT_S = 300  # one client's whole session
APT_TIMEOUT_S = 300  # one real apt-get call
READ = 1 << 20
IMAGE_DIRS = "etc usr/sbin usr/bin usr/lib/python3.11 usr/share/locale"


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass
class Tally:
    requests: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.bytes += other.bytes
        self.errors += other.errors


async def fetch(session, url: str, want: srv.Served | bytes, tally: Tally, **headers: str) -> None:
    """GET url; its body must hash to want's sha256 (or equal want's bytes)."""
    import aiohttp

    status = 206 if "Range" in headers else 200
    digest, size = hashlib.sha256(), 0
    try:
        async with session.get(url, headers=headers) as resp:
            if resp.status != status:
                raise ValueError(f"HTTP {resp.status}, expected {status}")
            async for block in resp.content.iter_chunked(READ):
                digest.update(block)
                size += len(block)
    except (aiohttp.ClientError, OSError, ValueError) as exc:  # TimeoutError is an OSError
        tally.errors.append(f"{url}: {type(exc).__name__}: {exc}")
        return
    tally.requests += 1
    tally.bytes += size
    expected = hashlib.sha256(want).hexdigest() if isinstance(want, bytes) else want.sha256
    if digest.hexdigest() != expected:
        tally.errors.append(f"{url}: {size} bytes, sha256 {digest.hexdigest()} != {expected}")


def client_address(i: int) -> str:
    """Each HTTP client its own loopback address, as each GPU host has its own: the
    mirror's nginx caps connections per client address (limit_conn per_client)."""
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def session(i: int):
    import aiohttp

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1, local_addr=(client_address(i), 0)),
        timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
        auto_decompress=False,
    )


async def http_apt_client(i: int, url: str, apt: srv.AptContent, debs: int) -> Tally:
    tally = Tally()
    async with session(i) as s:
        for index in apt.indexes:
            await fetch(s, url + index.path, index, tally)
        picks = [apt.debs[(i * debs + k) % len(apt.debs)] for k in range(debs)]
        for deb in picks:
            await fetch(s, url + deb.path, deb, tally)
        # A resumed download: the second half of one .deb.
        deb = picks[0]
        start = deb.size // 2
        local = apt.root.parent / deb.path.lstrip("/")
        with open(local, "rb") as fh:
            fh.seek(start)
            tail = fh.read()
        await fetch(s, url + deb.path, tail, tally, Range=f"bytes={start}-")
    return tally


def real_apt_client(i: int, url: str, apt: srv.AptContent, work: Path, count: int) -> Tally:
    """apt-get update + download in an isolated root: apt checks signature and hashes."""
    from gpuprov.bundle.aptroot import AptRoot
    from gpuprov.inventory.bundle import AptSourceSpec

    tally = Tally()
    root = work / f"apt-{i}"
    shutil.rmtree(root, ignore_errors=True)  # a failed client's root from an earlier round
    source = AptSourceSpec(f"{url}/{srv.APT_PREFIX}", (srv.SUITE,), ("main",), apt.keyring)
    AptRoot(root, root / "archives", "amd64", (source,)).prepare()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
           "APT_CONFIG": str(root / "apt.conf")}  # fmt: skip
    names = [apt.packages[(i * count + k) % len(apt.packages)] for k in range(count)]
    (root / "dl").mkdir()
    for args in (["update"], ["download", *names]):
        try:
            done = subprocess.run(["apt-get", "-q", *args], cwd=root / "dl", env=env,
                                  capture_output=True, text=True, timeout=APT_TIMEOUT_S)  # fmt: skip
        except subprocess.TimeoutExpired:
            tally.errors.append(f"apt client {i}: apt-get {args[0]} took > {APT_TIMEOUT_S} s")
            return tally
        bad = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.startswith(("E:", "W:", "Err:"))]  # fmt: skip
        if done.returncode != 0 or bad:
            tally.errors.append(f"apt client {i}: apt-get {args[0]}: {(bad or [done.stderr])[:3]}")
            return tally
    got = list((root / "dl").glob("*.deb"))
    if len(got) != len(names):
        tally.errors.append(f"apt client {i}: {len(got)} .debs downloaded, {len(names)} asked")
    lists = sum(p.stat().st_size for p in (root / "lists").glob("*_*") if p.is_file())
    tally.bytes += lists + sum(p.stat().st_size for p in got)
    tally.requests += 2 + len(got)  # InRelease, one Packages variant, the .debs
    shutil.rmtree(root)
    return tally


async def apt_load(url: str, apt: srv.AptContent, work: Path, clients: int, real: int,
                   debs: int) -> Tally:  # fmt: skip
    real = min(real, clients)
    loop = asyncio.get_running_loop()
    # Its own pool: the default executor has fewer threads than there may be apt-gets.
    with ThreadPoolExecutor(max(real, 1)) as pool:
        tasks = [http_apt_client(i, url, apt, debs) for i in range(clients - real)]
        tasks += [loop.run_in_executor(pool, real_apt_client, i, url, apt, work, 3)
                  for i in range(real)]  # fmt: skip
        total = Tally()
        for tally in await asyncio.gather(*tasks):
            total.add(tally)
    return total


async def blob_client(i: int, url: str, image: srv.ImageContent) -> Tally:
    tally = Tally()
    async with session(i) as s:
        await fetch(s, f"{url}/v2/", b"{}", tally)  # the registry's API version check
        await fetch(s, url + image.manifest.path, image.manifest, tally, Accept=srv.OCI_MANIFEST)
        blob = image.blobs[i % len(image.blobs)]
        await fetch(s, url + blob.path, blob, tally)
    return tally


async def blob_load(url: str, image: srv.ImageContent, clients: int) -> Tally:
    total = Tally()
    for tally in await asyncio.gather(*(blob_client(i, url, image) for i in range(clients))):
        total.add(tally)
    return total


@dataclass
class Run:
    seconds: float
    tally: Tally
    server_cpu: float  # CPU seconds the server process(es) spent in this run


def timed(coro, server: int) -> Run:
    cpu = srv.cpu_seconds(server)
    started = time.perf_counter()
    tally = asyncio.run(coro)
    return Run(time.perf_counter() - started, tally, srv.cpu_seconds(server) - cpu)


def raise_open_files() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(want, 65536)), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main() -> int:
    from gpuprov.testbed.rootfs import cache_dir, ensure_rootfs

    for tool in (srv.NGINX, "docker-registry", "umoci", "skopeo", "apt-get"):
        if shutil.which(tool) is None:
            print(f"  {tool} not found: run `make system-deps`; no measurement")
            return 1
    apt_clients = env_int("GPUPROV_BENCH_APT_CLIENTS", 200)
    apt_real = env_int("GPUPROV_BENCH_APT_REAL", 8)
    apt_debs = env_int("GPUPROV_BENCH_APT_DEBS", 6)
    blob_clients = env_int("GPUPROV_BENCH_BLOB_CLIENTS", 64)
    rounds = env_int("GPUPROV_BENCH_ROUNDS", 3)
    dirs = os.environ.get("GPUPROV_BENCH_IMAGE_DIRS", IMAGE_DIRS).split()
    nofile = raise_open_files()
    work = Path(tempfile.mkdtemp(prefix="mirror-load-", dir=os.environ.get("GPUPROV_BENCH_DIR")))
    print(f"mirror load benchmark: {apt_clients} apt clients ({apt_real} real apt-get), "
          f"{blob_clients} blob pulls, {rounds} rounds, open files {nofile} ({work})")  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    mirror = srv.Mirror(work)
    try:
        work.chmod(0o755)  # nginx workers run unprivileged
        apt_dir = Path(mirror.bundle.apt)
        apt_dir.mkdir(parents=True)
        apt = srv.make_apt_repo(apt_dir, cache_dir() / "debs", work / "gnupg")
        srv.make_image(work, ensure_rootfs(), dirs, Path(mirror.bundle.oci))
        image = mirror.fill_registry()
        srv.readable(work / "srv")
        mirror.start()
        www = work / "www"
        www.mkdir()
        srv.baseline_tree(www, mirror, image)
        srv.readable(www)
        default, default_url = srv.start_default_nginx(work, www)
        procs.append(default)
        mirror_url = mirror.apt_url
        print(f"  apt repo: {len(apt.debs)} .debs, {sum(d.size for d in apt.debs) / 2**20:.0f} MiB; "
              f"image: {len(image.blobs)} blobs, {sum(b.size for b in image.blobs) / 2**20:.0f} MiB")  # fmt: skip
        # One warm-up pass each, so no server pays for the first disk read.
        nginx_pid, registry_pid = (p.pid for p in mirror.procs)
        timed(apt_load(mirror_url, apt, work, 20, 1, apt_debs), nginx_pid)
        timed(blob_load(mirror.registry_url, image, len(image.blobs)), registry_pid)

        servers = {"apt mirror": nginx_pid, "apt nginx": default.pid,
                   "blob registry": registry_pid, "blob nginx": default.pid}  # fmt: skip
        runs: dict[str, list[Run]] = {k: [] for k in servers}
        for r in range(rounds):
            pairs = [
                [("apt mirror", apt_load(mirror_url, apt, work, apt_clients, apt_real, apt_debs)),
                 ("apt nginx", apt_load(default_url, apt, work, apt_clients, apt_real, apt_debs))],
                [("blob registry", blob_load(mirror.registry_url, image, blob_clients)),
                 ("blob nginx", blob_load(default_url, image, blob_clients))],
            ]  # fmt: skip
            for pair in pairs:
                for name, coro in pair if r % 2 == 0 else pair[::-1]:
                    runs[name].append(timed(coro, servers[name]))
        print(f"  journal stand-in: {mirror.journal_lines} access-log lines received from nginx")
        return report(runs, rounds, apt_clients, blob_clients)
    finally:
        for proc in procs:
            srv.stop(proc)
        mirror.stop()
        shutil.rmtree(work, ignore_errors=True)


def report(runs: dict[str, list[Run]], rounds: int, apt_clients: int, blob_clients: int) -> int:
    errors = 0
    rate: dict[str, tuple[float, float, float]] = {}
    for name, results in runs.items():
        errs = [e for run in results for e in run.tally.errors]
        errors += len(errs)
        for line in errs[:5]:
            print(f"  error ({name}): {line}", file=sys.stderr)
        mib = [run.tally.bytes / 2**20 / run.seconds for run in results]
        rps = [run.tally.requests / run.seconds for run in results]
        # Server CPU per GiB served: its cost, whatever else the machine was doing.
        cpu = [run.server_cpu / (run.tally.bytes / 2**30) for run in results]
        rate[name] = (statistics.median(mib), statistics.median(rps), statistics.median(cpu))
        print(f"  {name:14s} median {rate[name][0]:6.0f} MiB/s {rate[name][1]:6.0f} req/s  "
              f"server {rate[name][2]:5.2f} CPU s/GiB  errors {len(errs)}  "
              f"(MiB/s runs: {', '.join(f'{v:.0f}' for v in mib)})")  # fmt: skip

    def ratio(a: str, b: str) -> float:
        """Median over rounds of a's throughput over b's in the same round."""
        values = [(ra.tally.bytes / ra.seconds) / (rb.tally.bytes / rb.seconds)
                  for ra, rb in zip(runs[a], runs[b], strict=True)]  # fmt: skip
        return statistics.median(values)

    apt_ratio, blob_ratio = ratio("apt mirror", "apt nginx"), ratio("blob registry", "blob nginx")
    checks = [
        (f"{apt_clients} apt clients + {blob_clients} blob pulls x {rounds} rounds, 0 errors",
         errors == 0, str(errors)),
        ("apt: mirror nginx / default nginx >= 0.9", apt_ratio >= 0.9, f"{apt_ratio:.2f}x"),
        ("blobs: docker-registry / default nginx (reported)", True, f"{blob_ratio:.2f}x"),
    ]  # fmt: skip
    for label, ok, value in checks:
        print(f"  [{'PASS' if ok else 'MISS'}] {label}: {value}")
    results = {
        "apt_clients": apt_clients,
        "blob_clients": blob_clients,
        "errors": errors,
        **{f"{k.replace(' ', '_')}_mib_s": round(v[0]) for k, v in rate.items()},
        **{f"{k.replace(' ', '_')}_req_s": round(v[1]) for k, v in rate.items()},
        **{f"{k.replace(' ', '_')}_server_cpu_s_per_gib": round(v[2], 2) for k, v in rate.items()},
        "apt_ratio": round(apt_ratio, 2),
        "blob_ratio": round(blob_ratio, 2),
        "load_average": round(os.getloadavg()[0], 1),
    }
    print("  result " + json.dumps(results))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
