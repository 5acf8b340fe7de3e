"""`bibsnet-models`: list, verify and install model packages, so a lab can hand a model to another.

    bibsnet-models list MODELS_DIR
    bibsnet-models verify PACKAGE            (folder or zip)
    bibsnet-models install PACKAGE MODELS_DIR       (zip or folder; the source is never changed)

Exit codes as run.py: 0 ok, 64 usage, 65 bad or tampered package, 73 package exists already."""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from .. import __version__
from ..errors import EXIT_OK, EXIT_USAGE, BibsnetError, RefusedError
from ..models.package import find_packages, open_package, verify_package


def _list(models_dir: Path) -> int:
    if not models_dir.is_dir():
        print(f"no model folder at {models_dir}")
        return EXIT_OK
    packages = find_packages(models_dir)
    if not packages:
        print(f"no model packages in {models_dir}")
    for package in packages:
        manifest = verify_package(package)
        dice = manifest.dice_summary or {}
        print(f"{manifest.name}\t{manifest.release}\t{'+'.join(manifest.modalities)}\t"
              f"mean Dice {dice.get('mean_dice')} on {'SYNTHETIC' if dice.get('synthetic') else 'real'} data\t{package}")
    return EXIT_OK


def _verify(path: Path) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        package, manifest = open_package(path, Path(scratch))
        print(f"{manifest.title}: {len(manifest.files)} files match the manifest")
    return EXIT_OK


def _install(archive: Path, models_dir: Path) -> int:
    with tempfile.TemporaryDirectory(dir=models_dir) as scratch:
        package, manifest = open_package(archive, Path(scratch))   # refuses escaping members, checks sums
        target = models_dir / manifest.name
        if target.exists():
            raise RefusedError("a model package with this name is installed already", target)
        if Path(scratch) in package.resolve().parents:    # unpacked from a zip: ours to move
            package.rename(target)
        else:                                             # the user's folder: copy, never move
            staging = Path(scratch) / "copy"
            shutil.copytree(package, staging)
            verify_package(staging)
            staging.rename(target)
    print(f"installed {manifest.title} into {target}")
    return EXIT_OK


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bibsnet-models", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"bibsnet-models (bibsnet-trainer {__version__})")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="installed packages").add_argument("models_dir", type=Path)
    sub.add_parser("verify", help="check every file against the manifest").add_argument("package", type=Path)
    install = sub.add_parser("install", help="copy a package (zip or folder) after checking it")
    install.add_argument("archive", type=Path)
    install.add_argument("models_dir", type=Path)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    try:
        if args.command == "list":
            return _list(args.models_dir)
        if args.command == "verify":
            return _verify(args.package)
        args.models_dir.mkdir(parents=True, exist_ok=True)
        return _install(args.archive, args.models_dir)
    except BibsnetError as exc:
        print(f"bibsnet-models: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
