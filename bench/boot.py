"""Image build and single-VM boot times: `python3 -m bench boot [--runs N] [--cold] [--json]`.

Build: the cached lookup (what every `vrlab up` pays), a layer rebuild (what an appliance or
init edit costs: copy of the cached Debian base, vrlab files, mke2fs) and, with `--cold`, a
build from nothing (mmdebstrap) into a temporary cache. Builds need root; without it they are
skipped.

Boot: one VM per role, booted standalone under TCG (`-accel tcg,thread=multi -cpu max`,
256 MiB) as tests/e2e/test_image_boot.py does. Host-clock times from QEMU's start:
  kernel  -> the init's "vrlab: init start" marker (QEMU, firmware, kernel, initramfs)
  init    -> "vrlab: ssh up" (mounts, NIC renames, sysctls, addresses, sshd started)
  ssh     -> the first SSH login (pinned host key) that ran a command, tried from "ssh up"
  router  -> "vrlab: router up" (routers: the appliance's control socket exists)
and QEMU's resident memory once the node is ready. Medians over the runs; the machine is
shared, so compare figures within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from orchestrate import images
from orchestrate.backends.qemu import StandaloneError, boot_standalone, standalone_keys
from orchestrate.nodeconfig import DataInterface, KernelRoute, NodeBootSpec

BOOT_TIMEOUT = 180.0


def measure_builds(cold: bool) -> dict[str, float]:
    """Seconds for a cached lookup, a layer rebuild and (with `cold`) a build from nothing."""
    out: dict[str, float] = {}
    started = time.monotonic()
    info = images.ensure_image(progress=False)
    first = time.monotonic() - started
    started = time.monotonic()
    images.ensure_image(progress=False)
    out["cached lookup"] = time.monotonic() - started
    if first > 1.0:
        out["build (this run, base cached or not)"] = first
    if os.geteuid() != 0:
        return out
    real_root = images.images_dir()
    base_name = images.BASE_PREFIX + images.base_digest()[:images.DIGEST_LENGTH]
    with tempfile.TemporaryDirectory(prefix="vrlab-bench-images-") as tmp:
        root = Path(tmp)
        (root / base_name).symlink_to(real_root / base_name)
        started = time.monotonic()
        images.build_image(info.digest, root, images.RECIPE_DIR, images.APPLIANCE_DIR,
                           lambda step: None)
        out["layer rebuild (base cached)"] = time.monotonic() - started
    if cold:
        with tempfile.TemporaryDirectory(prefix="vrlab-bench-cold-") as tmp:
            started = time.monotonic()
            images.build_image(info.digest, Path(tmp), images.RECIPE_DIR, images.APPLIANCE_DIR,
                               lambda step: None)
            out["cold build (mmdebstrap)"] = time.monotonic() - started
    return out


def node_spec(role: str, keys: tuple[str, str, str]) -> tuple[NodeBootSpec, tuple[str, ...]]:
    client, private, public = keys
    interfaces: tuple[DataInterface, ...]
    if role == "host":
        interfaces = (DataInterface("eth1", "52:54:00:be:01:01",
                                    ("198.51.100.2/26", "2001:db8:1::2/64")),)
        spec = NodeBootSpec(hostname="h1", role="host", mgmt_mac="52:54:00:be:00:01",
                            authorized_keys=(client,), host_key_private=private,
                            host_key_public=public, interfaces=interfaces,
                            routes=(KernelRoute("0.0.0.0/0", via="198.51.100.1"),))
    else:
        interfaces = (DataInterface("r1-h1", "52:54:00:be:02:01"),
                      DataInterface("r1-h2", "52:54:00:be:02:02"))
        spec = NodeBootSpec(
            hostname="r1", role="router", mgmt_mac="52:54:00:be:00:02",
            authorized_keys=(client,), host_key_private=private, host_key_public=public,
            interfaces=interfaces,
            router_config={"hostname": "r1", "interfaces": [
                {"name": "r1-h1", "addresses": ["198.51.100.1/26", "2001:db8:1::1/64"]},
                {"name": "r1-h2", "addresses": ["198.51.100.65/26"]}]})
    return spec, tuple(iface.mac for iface in interfaces)


def boot_once(image: images.ImageInfo, role: str, workdir: Path) -> dict[str, float]:
    """One boot: host-clock seconds to each stage, guest uptimes, QEMU RSS in MiB."""
    spec, macs = node_spec(role, standalone_keys(workdir))
    nics = tuple((mac, 1500) for mac in macs)
    result: dict[str, float] = {}
    with boot_standalone(image, spec, workdir, data_nics=nics) as vm:
        result["init start"] = vm.wait_marker("init start", BOOT_TIMEOUT)
        result["ssh up"] = vm.wait_marker("ssh up", BOOT_TIMEOUT)
        client = vm.connect(BOOT_TIMEOUT)
        try:
            _, stdout, _ = client.exec_command("true", timeout=60)
            stdout.read()
            stdout.channel.recv_exit_status()
            result["ssh login"] = time.monotonic() - vm.started
        finally:
            client.close()
        if role == "router":
            result["router up"] = vm.wait_for(
                lambda: any(m.stage in ("router up", "router failed")
                            or m.stage.startswith("router failed") for m in vm.markers()),
                BOOT_TIMEOUT, "the router marker")
            if not any(m.stage == "router up" for m in vm.markers()):
                raise StandaloneError(f"the appliance failed: {vm.serial_text()[-800:]}")
        vm.wait_marker("ready", BOOT_TIMEOUT)
        result["qemu rss MiB"] = vm.rss_bytes() / (1 << 20)
        for marker in vm.markers():
            if marker.uptime is not None and marker.stage in ("init start", "ssh up",
                                                              "router up"):
                result[f"guest uptime at {marker.stage}"] = marker.uptime
    return result


def summarize(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({k for run in runs for k in run}, key=lambda k: min(
        run.get(k, 1e9) for run in runs))
    return {k: statistics.median(run[k] for run in runs if k in run) for k in keys}


def stage_table(role: str, med: dict[str, float]) -> list[str]:
    rows = [f"  {role}:"]
    if "init start" in med:
        rows.append(f"    kernel (QEMU start -> init start)   {med['init start']:6.2f} s")
    if "ssh up" in med:
        rows.append(f"    init   (init start -> sshd up)      "
                    f"{med['ssh up'] - med['init start']:6.2f} s")
    if "ssh login" in med:
        rows.append(f"    sshd   (sshd up -> first login)     "
                    f"{med['ssh login'] - med['ssh up']:6.2f} s")
        rows.append(f"    time to SSH (QEMU start -> login)   {med['ssh login']:6.2f} s")
    if "router up" in med:
        rows.append(f"    appliance (sshd up -> router up)    "
                    f"{med['router up'] - med['ssh up']:6.2f} s")
        rows.append(f"    time to ready (QEMU start -> router) {med['router up']:5.2f} s")
    for key, value in med.items():
        if key.startswith("guest uptime"):
            rows.append(f"    {key:<36}{value:6.2f} s")
    if "qemu rss MiB" in med:
        rows.append(f"    QEMU resident memory                {med['qemu rss MiB']:6.0f} MiB")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench boot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="boots per role (default 3)")
    parser.add_argument("--roles", default="host,router", help="host,router (default both)")
    parser.add_argument("--cold", action="store_true",
                        help="also time a build from nothing (minutes; needs root)")
    parser.add_argument("--no-build", action="store_true", help="skip the build timings")
    parser.add_argument("--quick", action="store_true", help="one boot per role")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if shutil.which("qemu-system-x86_64") is None:
        print("bench boot: qemu-system-x86_64 not found", file=sys.stderr)
        return 1
    runs = 1 if args.quick else max(1, args.runs)
    report: dict[str, Any] = {}
    try:
        if not args.no_build:
            report["build"] = measure_builds(args.cold)
        image = images.find_image(images.compute_digest())
        if image is None:
            image = images.ensure_image(progress=False)
        report["image"] = image.short_digest
        report["boot"] = {}
        for role in [r.strip() for r in args.roles.split(",") if r.strip()]:
            results = []
            for _ in range(runs):
                with tempfile.TemporaryDirectory(prefix=f"vrlab-bench-{role}-") as tmp:
                    results.append(boot_once(image, role, Path(tmp)))
            report["boot"][role] = {"median": summarize(results), "runs": results}
    except (images.ImageError, StandaloneError) as exc:
        print(f"bench boot: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"image {report['image']}, {runs} boot(s) per role, TCG, 256 MiB, load "
          f"{os.getloadavg()[0]:.1f}")
    for name, seconds in report.get("build", {}).items():
        print(f"  image {name:<36}{seconds:8.2f} s")
    for role, data in report["boot"].items():
        print("\n".join(stage_table(role, data["median"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
