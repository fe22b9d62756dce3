"""`gpuprov verify` of a mirror host: does each of its services serve the bundle?

Run from the control node against the mirror's inventory address and ports, the way a GPU
host reaches them, one verdict per service (gpuprov.verify.verdicts shapes):

- apt: each repository's `InRelease` is served and its signature is good by the TRUSTED
  bundle keyring (`cluster.mirror.keyring`), judged by the same gpgv reader as the bundle
  and apt repositories; a repository signed by another key fails naming that key.
- registry: `/v2/` answers, and every image the bundle's OCI index names is served with
  the manifest digest the index gives (the body's sha256, and Docker-Content-Digest).
- models: `/healthz` answers, and every model repository of the bundle's store is served.

Every request has a timeout and a size limit, no proxy from the environment is used, and
redirects are not followed (a mirror that redirects elsewhere is not serving the bundle).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from gpuprov.aptrepo.gpgv_status import GpgvUnavailable, judge, parse_status
from gpuprov.aptrepo.gpgv_status import run as run_gpgv
from gpuprov.inventory.model import Host, MirrorRef
from gpuprov.verify.node import NodeReport
from gpuprov.verify.verdicts import Check, HostVerdict

if TYPE_CHECKING:  # verify sits below bundle (bundle -> deploys -> verify): type only
    from gpuprov.bundle.catalog import CatalogImage, MirrorCatalog

T = TypeVar("T")  # what one fetched URL stands for: a repository, an image, a model

TIMEOUT_S = 10.0  # per request: a mirror on the site network answers in milliseconds
MAX_INRELEASE = 16 * 1024 * 1024
MAX_MANIFEST = 4 * 1024 * 1024  # the Distribution registry's own manifest limit
MAX_JSON = 1024 * 1024
SHOWN = 3  # failures named in one detail line, then "+N more"
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003 - urllib's signature
        return None


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def fetch(url: str, limit: int, accept: str | None = None, timeout: float = TIMEOUT_S) -> Response:
    """GET `url`; raises OSError (with why) when it cannot be read within the limits."""
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with _OPENER.open(request, timeout=timeout) as r:
            body = r.read(limit + 1)
            status, headers = r.status, {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as exc:
        return Response(exc.code, {k.lower(): v for k, v in exc.headers.items()}, b"")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OSError(f"{url}: {reason}") from None
    if len(body) > limit:
        raise OSError(f"{url}: more than {limit} bytes")
    return Response(status, headers, body)


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _more(items: list[str]) -> str:
    shown = "; ".join(items[:SHOWN])
    return shown + (f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else "")


def _fetch_each(
    targets: Iterable[tuple[T, str]],
    limit: int,
    assess: Callable[[T, str, Response], str | None],
    accept: str | None = None,
) -> list[str]:
    """GET each (item, url) of `targets` in turn and let `assess` say what is wrong with the
    answer (None: nothing); the reasons, in order, including the requests that failed.
    One unreachable item does not hide the others: every one is fetched."""
    bad = []
    for item, url in targets:
        try:
            response = fetch(url, limit, accept=accept)
        except OSError as exc:
            bad.append(str(exc))
            continue
        problem = assess(item, url, response)
        if problem:
            bad.append(problem)
    return bad


def check_serving(catalog: MirrorCatalog, serving: str | None) -> Check:
    """The services run on the bundle `gpuprov bundle import` made current (after an
    import they keep the previous one until `gpuprov apply` restarts them)."""
    imported = catalog.bundle_id
    if serving is None:
        return Check("bundle", False, f"bundle {imported[:12]} imported, no service started "
                     "on any bundle yet: run `gpuprov apply`")  # fmt: skip
    if serving != imported:
        return Check("bundle", False, f"services run on bundle {serving[:12]}, the imported one "
                     f"is {imported[:12]}: run `gpuprov apply` to switch them")  # fmt: skip
    return Check("bundle", True, f"bundle {imported[:12]} imported and served")


def check_apt(base: str, catalog: MirrorCatalog, keyring: Path | None) -> Check:
    """Every repository's InRelease served and signed by the trusted bundle key."""
    if keyring is None:
        return Check(
            "apt", False, "no trusted keyring: set cluster.mirror.keyring (the bundle keyring)"
        )
    if not catalog.apt:
        return Check("apt", False, f"bundle {catalog.bundle_id[:12]} has no apt repository")
    good: list[str] = []

    def signed(os_id: str, url: str, r: Response) -> str | None:
        if r.status != 200:
            return f"{url}: HTTP {r.status}"
        problem, signer = _signature(r.body, keyring)
        if problem:
            return f"{os_id}: InRelease {problem}"
        good.append(f"{os_id} ({signer})")
        return None

    targets = [(os_id, f"{base}/{os_id}/dists/{suite}/InRelease") for os_id, suite in catalog.apt]
    bad = _fetch_each(targets, MAX_INRELEASE, signed)
    if bad:
        return Check("apt", False, _more(bad))
    return Check("apt", True, "InRelease served and signed by the bundle key: " + ", ".join(good))


def _signature(data: bytes, keyring: Path) -> tuple[str | None, str]:
    """(why the signature is not trusted, or None; the signing key's fingerprint)."""
    with tempfile.TemporaryDirectory(prefix="gpuprov-verify-") as tmp:
        path = Path(tmp) / "InRelease"
        path.write_bytes(data)
        try:
            proc = run_gpgv(keyring, [str(path)])
        except GpgvUnavailable as exc:
            return str(exc), ""
    problem = judge(proc.returncode, proc.stdout)
    sigs, _ = parse_status(proc.stdout)
    signer = next((s.primary or s.fingerprint for s in sigs if s.fingerprint), "")
    return problem, signer


def check_registry(base: str, catalog: MirrorCatalog) -> Check:
    """`/v2/` answers and every catalogued image's manifest is served with its digest."""
    try:
        r = fetch(f"{base}/v2/", MAX_JSON)
    except OSError as exc:
        return Check("registry", False, str(exc))
    if r.status != 200:
        return Check("registry", False, f"{base}/v2/: HTTP {r.status} (GPU hosts pull anonymously)")
    if not catalog.images:
        why = "; ".join(catalog.problems) or "no image in the bundle's OCI index"
        return Check("registry", False, f"/v2/ answers, but nothing to check it serves: {why}")

    def by_digest(image: CatalogImage, url: str, m: Response) -> str | None:
        if m.status != 200:
            return f"{image.ref}: manifest not served ({url}: HTTP {m.status})"
        body = "sha256:" + hashlib.sha256(m.body).hexdigest()
        header = m.headers.get("docker-content-digest")
        if body != image.digest or (header is not None and header != image.digest):
            return f"{image.ref}: served manifest {header or body}, the bundle has {image.digest}"
        return None

    targets = [
        (image, f"{base}/v2/{image.repository}/manifests/{image.reference}")
        for image in catalog.images
    ]
    bad = _fetch_each(targets, MAX_MANIFEST, by_digest, accept=MANIFEST_TYPES)
    bad += catalog.problems
    if bad:
        return Check("registry", False, _more(bad))
    names = ", ".join(i.ref for i in catalog.images[:SHOWN])
    more = f" (+{len(catalog.images) - SHOWN} more)" if len(catalog.images) > SHOWN else ""
    return Check(
        "registry",
        True,
        f"/v2/ answers; {len(catalog.images)} image(s) served by digest: {names}{more}",
    )


def check_models(base: str, catalog: MirrorCatalog) -> Check:
    """`/healthz` answers and every model repository of the bundle is served."""
    try:
        r = fetch(f"{base}/healthz", MAX_JSON)
    except OSError as exc:
        return Check("models", False, str(exc))
    if r.status != 200 or _json(r.body).get("status") != "ok":
        return Check("models", False, f"{base}/healthz: HTTP {r.status}, not {{'status': 'ok'}}")

    def served(model: tuple[str, str], url: str, info: Response) -> str | None:
        repo_type, repo = model
        if info.status != 200 or _json(info.body).get("id") != repo:
            return f"{repo_type} {repo}: not served ({url}: HTTP {info.status})"
        return None

    targets = [(model, f"{base}/api/{model[0]}s/{model[1]}") for model in catalog.models]
    bad = _fetch_each(targets, MAX_JSON, served)
    if bad:
        return Check("models", False, _more(bad))
    return Check(
        "models", True, f"/healthz ok; all {len(catalog.models)} repositories of the bundle served"
    )


def _json(body: bytes) -> dict:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def mirror_verdict(
    host: Host,
    ref: MirrorRef,
    catalog: MirrorCatalog,
    *,
    check_served: bool = False,
    serving: str | None = None,
) -> NodeReport:
    """One check per service of the mirror `host`, at its inventory address. With
    `check_served` (the catalog came from the mirror host itself), first whether `serving`,
    the bundle id its services were started on (None: none yet), is the imported one."""

    def base(port: int) -> str:
        return f"{ref.scheme}://{_url_host(host.address)}:{port}"

    checks = [check_serving(catalog, serving)] if check_served else []
    verdict = HostVerdict(
        [
            *checks,
            check_apt(base(ref.apt_port), catalog, ref.keyring),
            check_registry(base(ref.registry_port), catalog),
            check_models(base(ref.models_port), catalog),
        ]
    )
    return NodeReport(host.name, verdict)
