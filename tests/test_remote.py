"""The reader's path: push the tiny pipeline's products to real storage servers on 127.0.0.1,
then pull them into fresh clones that rebuild nothing; corrupted objects are reported."""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import (
    ROOT,
    copy_pipeline,
    git_commit,
    run_command,
    stages_reading,
    stages_run,
)

pytestmark = pytest.mark.slow
boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")
pytest.importorskip("dvc_s3")

BUCKET = "lowdim-test"
FIGURES = stages_reading(ROOT / "dvc.yaml", "figures")  # what a figure-setting change reruns


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 with an empty bucket; stopped after the module."""
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing",
                 ).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def _dvc(repo: Path, *args: str, check: bool = True):
    return run_command(["dvc", *args], repo, check=check)


def _s3_credentials(repo: Path) -> None:
    # Credentials live only in .dvc/config.local, which git ignores.
    _dvc(repo, "remote", "modify", "--local", "s3", "access_key_id", "testing")
    _dvc(repo, "remote", "modify", "--local", "s3", "secret_access_key", "testing")


@pytest.fixture(scope="module")
def published(tiny_pipeline, tmp_path_factory, s3_endpoint) -> dict[str, Path]:
    """The session's tiny pipeline, pushed to S3 (with the run-cache) and to a directory."""
    base = tmp_path_factory.mktemp("remote")
    repo = copy_pipeline(tiny_pipeline, base / "origin")
    _dvc(repo, "remote", "add", "-d", "s3", f"s3://{BUCKET}/cache")
    _dvc(repo, "remote", "modify", "s3", "endpointurl", s3_endpoint)
    _dvc(repo, "remote", "modify", "s3", "region", "us-east-1")
    _dvc(repo, "remote", "add", "shared", str(base / "shared"))
    _s3_credentials(repo)
    git_commit(repo, "results")
    assert "config.local" not in run_command(["git", "ls-files", ".dvc"], repo).stdout
    _dvc(repo, "push", "--run-cache")
    _dvc(repo, "push", "-r", "shared")
    return {"origin": repo, "shared": base / "shared", "base": base}


def _clone(published: dict[str, Path], name: str) -> Path:
    clone = published["base"] / name
    run_command(["git", "clone", "-q", str(published["origin"]), str(clone)], published["base"])
    return clone


def test_s3_pull_rebuilds_nothing_and_a_figure_edit_plans_only_figures(published):
    clone = _clone(published, "reader-s3")
    _s3_credentials(clone)
    _dvc(clone, "pull")
    assert (clone / "figures" / "fig02_embedding.png").is_file()
    assert "Data and pipelines are up to date" in _dvc(clone, "status").stdout
    repro = _dvc(clone, "repro")
    assert stages_run(repro.stdout + repro.stderr) == set()
    assert run_command(["python", "-m", "lowdim.tools.verify"], clone).returncode == 0

    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["figures"]["dpi"] = 80
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # The plan only: test_partial_pulls_fetch_only_what_is_needed re-renders for real.
    plan = _dvc(clone, "repro", "--dry")
    assert stages_run(plan.stdout + plan.stderr) == FIGURES


def test_http_remote_serves_a_read_only_cache(published):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(published["shared"]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        clone = _clone(published, "reader-http")
        _dvc(clone, "remote", "add", "--local", "web", f"http://127.0.0.1:{server.server_port}")
        _dvc(clone, "pull", "-r", "web")
        assert "Data and pipelines are up to date" in _dvc(clone, "status").stdout
        assert run_command(["python", "-m", "lowdim.tools.verify"], clone).returncode == 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _object(remote: Path, md5: str) -> Path:
    return remote / "files" / "md5" / md5[:2] / md5[2:]


def test_truncated_object_is_reported(published):
    broken = published["base"] / "broken"
    shutil.copytree(published["shared"], broken)
    lock = yaml.safe_load((published["origin"] / "dvc.lock").read_text())
    outs = {o["path"]: o["md5"] for o in lock["stages"]["fig02_embedding"]["outs"]}
    target = _object(broken, outs["figures/fig02_embedding.png"])
    target.write_bytes(target.read_bytes()[:1000])

    # With verify = true (as the README's remote set-up says), the pull refuses the object.
    clone = _clone(published, "reader-verify")
    _dvc(clone, "remote", "add", "--local", "-d", "broken", str(broken))
    _dvc(clone, "remote", "modify", "--local", "broken", "verify", "true")
    pull = _dvc(clone, "pull", check=False)
    assert pull.returncode != 0
    assert "figures/fig02_embedding.png" in pull.stdout + pull.stderr
    assert not (clone / "figures" / "fig02_embedding.png").exists()

    # Without it, DVC trusts the remote, but `python -m lowdim.tools.verify` names the damage.
    trusting = _clone(published, "reader-trusting")
    _dvc(trusting, "remote", "add", "--local", "-d", "broken", str(broken))
    _dvc(trusting, "pull")
    check = run_command(["python", "-m", "lowdim.tools.verify"], trusting, check=False)
    assert check.returncode == 1
    assert "corrupted figures/fig02_embedding.png" in check.stdout


def test_partial_pulls_fetch_only_what_is_needed(published):
    clone = _clone(published, "reader-partial")
    _s3_credentials(clone)
    _dvc(clone, "pull", "fig02_embedding")
    assert (clone / "figures" / "fig02_embedding.png").is_file()
    assert not (clone / "data" / "runs").exists()

    # A figure-only change: DVC plans every figure stage and nothing else (the plan is checked
    # in test_s3_pull_rebuilds_nothing_and_a_figure_edit_plans_only_figures); one of them is
    # re-rendered for real from a partial pull, fetching just its inputs. (Re-rendering all of
    # them took 3.5 minutes of the suite and tests the same pull path 16 times.)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["figures"]["dpi"] = 70
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = (clone / "figures" / "fig02_embedding.png").read_bytes()
    repro = _dvc(clone, "repro", "--pull", "--allow-missing", "fig02_embedding")
    assert stages_run(repro.stdout + repro.stderr) == {"fig02_embedding"}
    assert (clone / "figures" / "fig02_embedding.png").read_bytes() != before
    assert not (clone / "data" / "runs").exists()
