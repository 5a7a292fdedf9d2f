"""`vrlab image build|ls|prune`: the cached VM image (see orchestrate/images.py).

`image ls` is also `image list`; every action takes --json.
"""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from orchestrate import images
from orchestrate.commands import Exit, add_json_option, fail, print_json


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "image", help="build, list or prune the cached VM image",
        description="The VM image is built from images/ and cached by content under "
                    "$VRLAB_HOME/images/<digest>/; `vrlab up` builds it when missing.")
    actions = parser.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="build the image unless it is cached (needs root)")
    build.add_argument("--rebuild", action="store_true", help="build even if cached")
    build.add_argument("--quiet", action="store_true", help="no progress display")
    add_json_option(build)
    build.set_defaults(func=run_build)
    listing = actions.add_parser("ls", aliases=["list"], help="list cached images")
    add_json_option(listing)
    listing.set_defaults(func=run_ls)
    prune = actions.add_parser("prune", help="remove images other than the current recipe's")
    prune.add_argument("--all", action="store_true", help="remove the current image too")
    add_json_option(prune)
    prune.set_defaults(func=run_prune)


def run_build(args: argparse.Namespace) -> int:
    try:
        info = images.ensure_image(progress=not (args.quiet or args.json),
                                   rebuild=args.rebuild)
    except images.ImageError as exc:
        return fail(args, Exit.FAILED, str(exc))
    if args.json:
        print_json({**images.image_summary(info), "current": True})
    else:
        print(f"image {info.short_digest}: {info.directory} (kernel {info.kernel_version}, "
              f"built in {info.build_seconds:.0f} s)")
    return Exit.OK


def run_ls(args: argparse.Namespace) -> int:
    current = images.compute_digest()
    found = images.list_images()
    if args.json:
        print_json([{**images.image_summary(i), "current": i.digest == current}
                    for i in found])
        return Exit.OK
    if not found:
        print("no cached images (`vrlab image build`)")
        return 0
    for info in found:
        built = datetime.datetime.fromtimestamp(info.built_at).strftime("%Y-%m-%d %H:%M")
        mark = "*" if info.digest == current else " "
        print(f"{mark} {info.short_digest}  {built}  {info.disk_bytes >> 20} MiB  "
              f"kernel {info.kernel_version}  {info.directory}")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    keep = set() if args.all else {images.compute_digest()}
    removed = images.prune_images(keep)
    if args.json:
        print_json({"removed": [str(path) for path in removed]})
        return Exit.OK
    for path in removed:
        print(f"removed {path}")
    if not removed:
        print("nothing to prune")
    return 0
