"""First-use downloads (issue 31) against a loopback HTTP server the test starts: the licence accepted once,
progress and Cancel, and a cut, tampered, missing or cancelled download that installs nothing."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch

from EchoSynthLib.cli import main as cli_main
from EchoSynthLib.errors import InputError
from EchoSynthLib.release import pack_model, write_manifest
from EchoSynthLib.store import downloads, registry
from EchoSynthLib.store.downloads import DownloadCancelled, download_model, licence_accepted
from EchoSynthLib.store.package import save_package
from EchoSynthLib.store.registry import KnownModel

LICENCE = "CC BY-NC-SA 4.0: non-commercial research only (test terms)"


class Server(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]
    cut: set[str]  # sent with their full length announced, then the connection is closed halfway
    slow: set[str]  # sent 64 kB at a time, 50 ms apart


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.server.cut:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        step = 64 * 1024 if self.path in self.server.slow else len(body)
        try:
            for start in range(0, len(body), step):
                self.wfile.write(body[start : start + step])
                if self.path in self.server.slow:
                    time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):  # the client cancelled
            pass

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.files, httpd.cut, httpd.slow = {}, set(), set()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def places(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(registry.CACHE_ENV, str(cache))
    monkeypatch.setenv(registry.BUNDLED_ENV, str(tmp_path / "bundled"))
    monkeypatch.delenv(downloads.ACCEPT_ENV, raising=False)
    return cache


def publish(server: Server, tmp_path: Path, name: str = "tiny", path: str | None = None) -> KnownModel:
    """A tiny model package served as a release zip, and its manifest entry (also written as the manifest
    ``ECHOSYNTH_MODEL_MANIFEST`` names, by the caller)."""
    package = save_package(
        tmp_path / "src" / name, "sdm2d", {"version": "1.0"}, {"w": torch.arange(4.0)}, "# tiny\n"
    )
    archive = pack_model(package, tmp_path / "zips" / f"{name}-1.0.zip")
    path = path or f"/{archive.name}"
    server.files[path] = archive.read_bytes()
    url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    return KnownModel(name, "1.0", "sdm2d", url, digest, LICENCE, "a tiny model", "label map -> image", 0)


def left_in(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_a_model_downloads_once_its_licence_is_accepted_and_the_acceptance_is_remembered(
    server, tmp_path, places
):
    model = publish(server, tmp_path)
    with pytest.raises(InputError, match=r"licence was not accepted \(CC BY-NC-SA 4\.0.*--accept-licence"):
        download_model(model)
    assert left_in(places) == []
    asked = []
    with pytest.raises(InputError, match="not accepted"):
        download_model(model, ask=lambda m: asked.append(m.name) or False)
    seen = []
    path = download_model(
        model, ask=lambda m: asked.append(m.name) or True, progress=lambda d, t: seen.append((d, t))
    )
    assert asked == ["tiny", "tiny"] and path == places / "tiny" and (path / "model.safetensors").is_file()
    assert seen[0] == (0, len(server.files["/tiny-1.0.zip"])) and seen[-1][0] == seen[-1][1]
    assert licence_accepted(model)
    registry.clear_cache()
    download_model(model, ask=lambda m: pytest.fail("asked twice"))  # accepted once: not asked again
    changed = KnownModel(**{**model.__dict__, "license": "other terms"})
    assert not licence_accepted(changed)  # a changed licence is asked again


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("cut", "the connection closed after"),
        ("hash", "does not match the manifest"),
        ("404", "could not download 'tiny'.*HTTP 404 Not Found"),
    ],
)
def test_a_cut_tampered_or_missing_download_installs_nothing(server, tmp_path, places, damage, message):
    model = publish(server, tmp_path)
    if damage == "cut":
        server.cut.add("/tiny-1.0.zip")
    elif damage == "hash":
        body = bytearray(server.files["/tiny-1.0.zip"])
        body[len(body) // 2] ^= 0xFF
        server.files["/tiny-1.0.zip"] = bytes(body)
    else:
        del server.files["/tiny-1.0.zip"]
    with pytest.raises(InputError, match=message) as error:
        download_model(model, accept=True)
    assert "\n" not in str(error.value)
    assert left_in(places) == []  # nothing installed, no partial download left


def test_cancel_during_a_slow_download_installs_nothing(server, tmp_path, places):
    model = publish(server, tmp_path)
    body = server.files["/tiny-1.0.zip"]
    server.files["/tiny-1.0.zip"] = body + b"\0" * (3 << 20)  # 3 MB more, 64 kB per 50 ms
    server.slow.add("/tiny-1.0.zip")
    model = KnownModel(
        **{**model.__dict__, "sha256": hashlib.sha256(server.files["/tiny-1.0.zip"]).hexdigest()}
    )
    started = time.monotonic()

    def progress(done: int, total: int | None) -> None:
        if done > 0:
            raise DownloadCancelled("cancelled by the user")

    with pytest.raises(DownloadCancelled):
        download_model(model, accept=True, progress=progress)
    assert time.monotonic() - started < 2.4  # cancelled after the first MB, not at the end (about 2.5 s)
    assert left_in(places) == []


def test_the_command_line_downloads_a_listed_model_on_first_use(
    server, tmp_path, places, monkeypatch, capsys
):
    """``models download NAME --accept-licence``, and any command given the name; without acceptance (no
    terminal to ask on) one line says how; offline ``models add FILE.zip`` checks the manifest's hash."""
    model = publish(server, tmp_path)
    manifest = write_manifest(
        [{**model.__dict__, "size": len(server.files["/tiny-1.0.zip"])}], tmp_path / "manifest.json"
    )
    monkeypatch.setenv(registry.MANIFEST_ENV, str(manifest))
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    labels = tmp_path / "map.nii.gz"
    assert cli_main.main(["phantom", "--out", str(labels), "--size", "32"]) == 0
    command = ["synthesize", "--model", "tiny", "--labels", str(labels), "--out", str(tmp_path / "out")]
    capsys.readouterr()
    assert cli_main.main(command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "licence was not accepted" in err and "--accept-licence" in err
    assert left_in(places) == [] and not (tmp_path / "out").exists()
    code = cli_main.main([*command, "--accept-licence", "--n", "1"])
    err = capsys.readouterr().err
    assert (places / "tiny" / "model.safetensors").is_file()  # downloaded on first use
    assert code in (0, 2)  # (the toy weights may not sample; the download is what is tested here)
    registry.clear_cache()
    assert cli_main.main(["models", "download", "tiny", "--accept-licence"]) == 0
    assert "installed tiny 1.0" in capsys.readouterr().out
    registry.clear_cache()
    local = tmp_path / "offline" / "tiny-1.0.zip"
    local.parent.mkdir()
    local.write_bytes(server.files["/tiny-1.0.zip"])
    assert cli_main.main(["models", "add", str(local)]) == 0 and (places / "tiny").is_dir()
    registry.clear_cache()
    with zipfile.ZipFile(local, "a") as archive:
        archive.writestr("tiny/extra.txt", "not the published file")
    assert cli_main.main(["models", "add", str(local)]) == 2
    assert "does not match the manifest" in capsys.readouterr().err and left_in(places) == []
