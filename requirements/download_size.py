"""How much a group's install will download: the hashed files its lock pins, sized by the package index.

Used by install.py (standard library only, like it) before uv runs, so a user waiting on a large
framework (torch, tensorflow: hundreds of MB) is told the size first. Only what the venv lacks is
counted; each pin's file is the largest wheel among its locked hashes that runs here (the index's
PEP 700 `size`, else a HEAD request's Content-Length). Any failure gives None: the install goes on
without a size.
"""

from __future__ import annotations

import json
import platform
import re
import ssl
import sys
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)\s*(?:;[^\\]*)?\\?$")
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
TIMEOUT_S = 10  # per request; the estimate is a courtesy, never a reason to wait long


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock_text: str) -> dict[str, tuple[str, set[str]]]:
    """normalized name -> (version, sha256s) of a hashed lock."""
    found: dict[str, tuple[str, set[str]]] = {}
    current: str | None = None
    for line in lock_text.splitlines():
        match = PIN.match(line.strip()) if not line.startswith((" ", "#")) else None
        if match:
            current = normalize(match.group(1))
            found[current] = (match.group(2), set(HASH.findall(line)))
        elif current and line.startswith(" "):
            found[current][1].update(HASH.findall(line))
    return found


def installed(venv: Path) -> set[tuple[str, str]]:
    """(normalized name, version) of every distribution in the venv."""
    seen: set[tuple[str, str]] = set()
    for info in venv.glob("lib/python3*/site-packages/*.dist-info"):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        seen.add((normalize(name), version))
    return seen


def _python_tags() -> set[str]:
    major, minor = sys.version_info[:2]
    return {"py3", f"py{major}{minor}", f"cp{major}{minor}", "py2.py3"}


def runs_here(filename: str) -> bool:
    """A wheel whose python and platform tags fit this interpreter (an approximation of pip's rule)."""
    if not filename.endswith(".whl"):
        return False
    python_tag, abi, plat = filename[:-4].split("-")[-3:]
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())
    if sys.platform == "darwin":
        machine = "arm64" if machine == "aarch64" else machine
    tags = _python_tags()
    abi3_ok = abi == "abi3" and python_tag.startswith("cp3") and int(python_tag[3:] or 0) <= sys.version_info[1]
    if not (set(python_tag.split(".")) & tags or abi3_ok):
        return False
    if plat == "any":
        return True
    family = {"linux": "manylinux", "darwin": "macosx", "win32": "win"}.get(sys.platform, sys.platform)
    parts = plat.split(".")
    return any(p.startswith(family) and (machine in p or "universal2" in p) for p in parts)


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data: str) -> None:
        if self._href:
            self.links.append((data.strip(), self._href))
            self._href = None


def index_files(index: str, name: str, context: ssl.SSLContext,
                timeout: float = TIMEOUT_S) -> list[tuple[str, str, str, int | None]]:
    """(filename, url, sha256, size or None) of a project on a simple index (PEP 691 JSON or HTML);
    install.py lists uv's wheels with it too."""
    request = urllib.request.Request(index.rstrip("/") + f"/{name}/", headers={
        "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1", "User-Agent": "deploy-model-launcher"})
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        body, base, kind = response.read(), response.geturl(), response.headers.get("Content-Type", "")
    if "json" in kind:
        return [(f["filename"], urllib.parse.urljoin(base, f["url"]), f.get("hashes", {}).get("sha256", ""), f.get("size"))
                for f in json.loads(body)["files"]]
    parser = _Anchors()
    parser.feed(body.decode("utf-8", "replace"))
    out = []
    for filename, href in parser.links:
        url = urllib.parse.urljoin(base, href)
        digest = urllib.parse.urlparse(url).fragment.partition("sha256=")[2]
        out.append((filename, url.split("#", 1)[0], digest, None))
    return out


def _head_size(url: str, context: ssl.SSLContext) -> int | None:
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "deploy-model-launcher"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as response:
        length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _pin_size(index: str, name: str, hashes: set[str], context: ssl.SSLContext) -> int | None:
    candidates = [f for f in index_files(index, name, context) if f[2] in hashes and runs_here(f[0])]
    sizes = [size if size is not None else _head_size(url, context) for _, url, _, size in candidates]
    known = [s for s in sizes if s is not None]
    return max(known) if known else None


def estimate(lock: Path, venv: Path, index: str, cert: str | None = None) -> tuple[int, int, int] | None:
    """(bytes to download, packages to fetch, of which sized) for a lock into a venv, or None."""
    if not index.startswith(("https://", "http://")):
        return None
    try:
        have = installed(venv)
        todo = {n: h for n, (v, h) in pins(lock.read_text(encoding="utf-8")).items() if (n, v) not in have}
        if not todo:
            return 0, 0, 0
        context = ssl.create_default_context(cafile=cert if cert and Path(cert).is_file() else None)
        with ThreadPoolExecutor(max_workers=8) as pool:
            sizes = list(pool.map(lambda item: _size_or_none(index, item[0], item[1], context), todo.items()))
    except Exception:  # a courtesy: any failure leaves the size unknown, never the install
        return None
    known = [s for s in sizes if s is not None]
    return sum(known), len(todo), len(known)


def _size_or_none(index: str, name: str, hashes: set[str], context: ssl.SSLContext) -> int | None:
    try:
        return _pin_size(index, name, hashes, context)
    except Exception:
        return None


def describe(result: tuple[int, int, int] | None) -> str:
    """The phrase install.py prints: 'about 812 MB to download (31 packages)'."""
    if result is None:
        return "download size unknown"
    total, count, sized = result
    if count == 0:
        return "nothing to download"
    unsized = f", {count - sized} not sized" if sized < count else ""
    return f"about {total / 1e6:.0f} MB to download ({count} packages{unsized})"
