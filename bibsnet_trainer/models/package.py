"""Model packages: nnU-Net's trained-model folder (`<trainer>__<plans>__<configuration>/` with
`dataset.json`, `plans.json`, `fold_k/checkpoint_final.pth`) plus `manifest.json` holding the
label table, modalities, training summary and every file's path, SHA-256 digest and size. Written atomically,
verified before use, optionally zipped for hand-over."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
import zipfile
from pathlib import Path

from ..errors import ModelError, RefusedError
from .manifest import MANIFEST, Manifest

KEEP_IN_FOLD = ("checkpoint_final.pth", "progress.png")


def release_tag(today: _dt.date | None = None) -> str:
    return "r" + (today or _dt.date.today()).strftime("%Y%m%d")


def model_name(modalities: list[str], anatomy: str = "aseg", architecture: str = "nnunet") -> str:
    contrast = "-".join(m.lower() for m in modalities)
    return f"model_seg_{anatomy}_{contrast}_{architecture}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checksums(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256(p)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST}


def _file_entries(root: Path) -> list[dict]:
    """The manifest's `files`: each file's path, SHA-256 digest and size in bytes."""
    return [{"path": p.relative_to(root).as_posix(), "sha256": sha256(p), "bytes": p.stat().st_size}
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST]


def manifest_digests(manifest: dict) -> dict[str, str]:
    """Path -> SHA-256 of every packaged file, from a list of {path, sha256, bytes} entries or
    from a `{path: sha256}` mapping (the first package format)."""
    files = manifest.get("files") or {}
    if isinstance(files, dict):
        return dict(files)
    return {entry["path"]: entry["sha256"] for entry in files}


def write_package(trained_folder: Path, destination: Path, manifest: dict,
                  extra_files: dict[str, str] | None = None) -> Path:
    """Copy the files a model needs into `destination` (must not exist) with a manifest;
    `extra_files` (name -> text, e.g. the synthesis priors) are written beside it."""
    destination = Path(destination)
    if destination.exists():
        raise RefusedError("model package already exists; remove it or choose another output folder",
                           destination)
    staging = destination.with_name(f".{destination.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    target = staging / trained_folder.name
    target.mkdir(parents=True)
    for name in ("dataset.json", "plans.json", "dataset_fingerprint.json"):
        if (trained_folder / name).exists():
            shutil.copy2(trained_folder / name, target / name)
    folds = []
    for fold_dir in sorted(trained_folder.glob("fold_*")):
        if not (fold_dir / "checkpoint_final.pth").exists():
            continue
        folds.append(fold_dir.name)
        (target / fold_dir.name).mkdir()
        for item in fold_dir.iterdir():
            if item.name in KEEP_IN_FOLD or item.name.startswith("training_log"):
                shutil.copy2(item, target / fold_dir.name / item.name)
    if not folds:
        shutil.rmtree(staging)
        raise ModelError("no fold with checkpoint_final.pth (training did not finish)", trained_folder)
    for file_name, text in (extra_files or {}).items():
        (staging / file_name).write_text(text)
    full = {**manifest, "nnunet_folder": trained_folder.name, "folds": folds, "files": _file_entries(staging)}
    (staging / MANIFEST).write_text(json.dumps(full, indent=2) + "\n")
    staging.rename(destination)
    return destination


def zip_package(package: Path, zip_path: Path) -> Path:
    tmp = zip_path.with_name(f".{zip_path.name}.partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(package.rglob("*")):
            if path.is_file():
                archive.write(path, Path(package.name) / path.relative_to(package))
    tmp.rename(zip_path)
    return zip_path


def read_manifest(package: Path) -> Manifest:
    return Manifest.read(package)


def verify_package(package: Path) -> Manifest:
    """Check every file against the manifest; raise ModelError naming the first mismatch."""
    package = Path(package)
    manifest = read_manifest(package)
    try:
        expected = manifest_digests(manifest)
    except (KeyError, TypeError, AttributeError):
        raise ModelError("manifest.json: `files` must list {path, sha256, bytes} entries", package / MANIFEST) from None
    actual = _checksums(package)
    for rel, digest in expected.items():
        if rel not in actual:
            raise ModelError("file listed in the manifest is missing", package / rel)
        if actual[rel] != digest:
            raise ModelError("checksum mismatch (file changed since packaging)", package / rel)
    extra = sorted(set(actual) - set(expected))
    if extra:
        raise ModelError("file not listed in the manifest", package / extra[0])
    return manifest


def extract_zip(zip_path: Path, target_root: Path) -> Path:
    """Unpack a zipped package under target_root, refusing members that escape it."""
    target_root = Path(target_root).resolve()
    with zipfile.ZipFile(zip_path) as archive:
        for member in archive.namelist():
            destination = (target_root / member).resolve()
            if target_root not in destination.parents and destination != target_root:
                raise ModelError(f"archive member escapes the target folder: {member}", zip_path)
        tops = {Path(m).parts[0] for m in archive.namelist()}
        if len(tops) != 1:
            raise ModelError("archive must hold exactly one package folder", zip_path)
        archive.extractall(target_root)
    return target_root / tops.pop()


def open_package(path: Path, unpack_root: Path) -> tuple[Path, Manifest]:
    """A verified package folder and its manifest, from a folder or a zip."""
    path = Path(path)
    if not path.exists():
        raise ModelError("model package not found", path)
    if not (path.is_file() and zipfile.is_zipfile(path)):
        return path, verify_package(path)
    unpack = Path(unpack_root) / path.stem
    if not unpack.exists():
        staging = Path(unpack_root) / f".{path.stem}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        extract_zip(path, staging).rename(unpack)
        shutil.rmtree(staging, ignore_errors=True)
    try:
        return unpack, verify_package(unpack)
    except ModelError as exc:   # name the zip and its member, not the temporary folder
        with zipfile.ZipFile(path) as archive:
            top = Path(archive.namelist()[0]).parts[0]
        member = (Path(top) / Path(exc.path).relative_to(unpack)).as_posix() if exc.path else None
        raise ModelError(f"{exc.message}" + (f" (member {member})" if member else ""), path) from None


def find_packages(models_dir: Path) -> list[Path]:
    return sorted(p.parent for p in Path(models_dir).glob(f"*/{MANIFEST}"))
