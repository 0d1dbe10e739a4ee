"""The operator's image (docs/image.md), built without Docker by ``make image``
(operator/image/build.sh: mmdebstrap + pip + umoci), run as the chart runs it: unpacked with
umoci, its root filesystem mounted read-only, an empty /tmp (the chart's emptyDir), its own
user (10001) and its own command, here through chroot. It must handle one healthy rollout
on the local cluster from start to promotion."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness.cluster import REPO, Cluster
from e2e.harness.manifests import rollout_manifest
from e2e.harness.operator_process import OperatorProcess, delete_rollouts
from e2e.harness.scenario import RolloutScenario

from .operator_support import crds  # noqa: F401 — fixtures

USER = 10001  # charts/modelrollout/values.yaml: runAsUser
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"  # resolved here: the image's PATH has no sbin


def _run(*args: str | Path) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def archive() -> Path:
    """The image's OCI archive, built (or found in the cache) by the project's own script."""
    lines = _run("bash", REPO / "operator" / "image" / "build.sh").strip().splitlines()
    path = Path(lines[-1])
    assert path.is_file(), f"the build printed {lines[-1]!r}, not an archive"
    return path


@pytest.fixture
def rootfs(archive: Path, tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The image unpacked by umoci; its rootfs bind-mounted read-only with a tmpfs on /tmp."""
    layout = tmp_path / "layout"
    layout.mkdir()
    _run("tar", "-xf", archive, "-C", layout)
    tag = json.loads((layout / "index.json").read_text())["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    bundle = tmp_path / "bundle"
    _run("umoci", "unpack", "--image", f"{layout}:{tag}", bundle)
    config = json.loads((bundle / "config.json").read_text())
    root = bundle / "rootfs"
    mounted: list[Path] = []
    try:
        _run("mount", "--bind", root, root)
        mounted.append(root)
        _run("mount", "-o", "remount,bind,ro", root)
        _run("mount", "-t", "tmpfs", "-o", "size=16m,mode=1777", "tmpfs", root / "tmp")
        mounted.append(root / "tmp")
        yield root, config
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", "-l", str(point)], check=False)
        shutil.rmtree(bundle, ignore_errors=True)


def embedded_kubeconfig(cluster: Cluster) -> str:
    """The cluster's kubeconfig with its certificate files inlined (the image sees no host path)."""
    cfg = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    for entry, fields in (("clusters", ("certificate-authority",)), ("users", ("client-certificate", "client-key"))):
        for item in cfg[entry]:
            body = item["cluster" if entry == "clusters" else "user"]
            for field in fields:
                if field in body:
                    body[f"{field}-data"] = base64.b64encode(Path(body.pop(field)).read_bytes()).decode()
    return yaml.safe_dump(cfg)


def test_the_image_is_what_the_chart_expects(archive: Path, rootfs: tuple[Path, dict[str, Any]]) -> None:
    root, config = rootfs
    process = config["process"]
    assert process["user"]["uid"] == USER and process["user"]["gid"] == USER
    assert process["args"] == ["modelrollout", "run", "--help"]
    chart = yaml.safe_load((REPO / "charts" / "modelrollout" / "Chart.yaml").read_text())
    values = yaml.safe_load((REPO / "charts" / "modelrollout" / "values.yaml").read_text())
    assert archive.name == f"modelrollout-{chart['appVersion']}.oci.tar"
    assert (archive.parent / "reference.txt").read_text().strip() == f"{values['image']['repository']}:{chart['appVersion']}"
    assert values["securityContext"]["readOnlyRootFilesystem"] is True and values["podSecurityContext"]["runAsUser"] == USER
    probe = subprocess.run([CHROOT, f"--userspec={USER}:{USER}", str(root), "sh", "-c",
                            "id -u; touch /opt/x 2>&1; modelrollout --help >/dev/null && echo help-ok"],
                           capture_output=True, text=True, timeout=60, env={"PATH": "/usr/local/bin:/usr/bin:/bin"})
    out = probe.stdout
    assert out.splitlines()[0] == str(USER), out
    assert "Read-only file system" in out, out  # the root really is read-only
    assert "help-ok" in out, probe.stderr
    print(f"image {archive.name}: {(archive.parent / 'size.txt').read_text().strip()}")


def test_the_image_handles_a_healthy_rollout_on_the_local_cluster(
        crds: Cluster, namespace: str, rootfs: tuple[Path, dict[str, Any]]) -> None:
    root, config = rootfs
    kubeconfig = root / "tmp" / "kubeconfig"  # on the tmpfs: the chart's emptyDir at /tmp
    kubeconfig.write_text(embedded_kubeconfig(crds))
    os.chown(kubeconfig, USER, USER)
    kubeconfig.chmod(0o600)
    env = dict(item.split("=", 1) for item in config["process"]["env"])
    proc = OperatorProcess(crds, namespace, name="image", kubeconfig="/tmp/kubeconfig", env=env,
                           command=[CHROOT, f"--userspec={USER}:{USER}", str(root),
                                    config["process"]["args"][0]]).start()
    try:
        s = RolloutScenario(crds, namespace)
        s.apply(rollout_manifest(s.name, s.namespace, stable=s.stable, canary=s.canary))
        status = s.wait_phase("Succeeded", timeout=180)
        assert [h["kind"] for h in status["history"]].count("step") >= 3
        assert proc.proc is not None and proc.proc.poll() is None, "the operator in the image exited"
        assert _uid_of(proc.proc.pid) == USER
    finally:
        delete_rollouts(crds, namespace)
        proc.stop()


def _uid_of(pid: int) -> int:
    """The real uid of the process chroot became (it execs the operator in place)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")
