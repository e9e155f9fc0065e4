"""Build streaming_mosaic.zip for QGIS's "Install from ZIP" and plugins.qgis.org.

    /usr/bin/python3 tools/package.py [--output streaming_mosaic.zip]

The zip holds ONE top folder, ``streaming_mosaic/``, with what the working tree
holds: committed files, uncommitted changes and new files git does not ignore,
minus the paths marked ``export-ignore`` in .gitattributes (tests, benchmark,
tools, CI...). Git does the selection: the working tree is staged into a
temporary index (the real index, refs and stash are untouched), written as a
tree, and exported with ``git archive``. Outside a git checkout, the files are
walked with the same export-ignore rules.

The result is checked before it is written: one top folder, metadata.txt and
__init__.py present, nothing from the excluded folders, no caches or bytecode.
"""

import argparse
import configparser
import fnmatch
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP = "streaming_mosaic"
# plugins.qgis.org rejects a zip without __init__.py, metadata.txt or LICENSE.
REQUIRED = ("__init__.py", "metadata.txt", "LICENSE", "plugin.py", "README.md", "resources/icon.svg")
# Never shipped, whatever git says: development folders, caches, bytecode, VCS data.
FORBIDDEN_DIRS = {"tests", "bench", "tools", ".ci", ".git", ".github", "build", "dist",
                  "__pycache__", ".pytest_cache", ".venv"}
FORBIDDEN_SUFFIXES = (".pyc", ".pyo", ".zip", ".partial", ".partial.json", ".aux.xml")
# Outside git: never walk into these.
WALK_SKIP = FORBIDDEN_DIRS | {".mypy_cache", ".ruff_cache"}
ZIP_DATE = (2024, 1, 1, 0, 0, 0)  # fixed: the same tree gives the same zip


class PackageError(Exception):
    """The package cannot be built or failed its checks."""


def _git(*args, env=None, binary=False):
    proc = subprocess.run(["git", "-C", ROOT, *args], capture_output=True, env=env)
    if proc.returncode != 0:
        raise PackageError(f"git {' '.join(args)} failed: "
                           f"{proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout if binary else proc.stdout.decode().strip()


def in_git_checkout():
    try:
        return os.path.realpath(_git("rev-parse", "--show-toplevel")) == os.path.realpath(ROOT)
    except (PackageError, FileNotFoundError):
        return False


def working_tree_files():
    """{path: bytes} of the working tree as git would export it (export-ignore applied)."""
    with tempfile.TemporaryDirectory(prefix="sm-package-") as tmp:
        env = dict(os.environ)
        index = os.path.join(tmp, "index")
        real_index = _git("rev-parse", "--git-path", "index")
        real_index = real_index if os.path.isabs(real_index) else os.path.join(ROOT, real_index)
        if os.path.exists(real_index):
            shutil.copyfile(real_index, index)  # a head start: unchanged files are not re-hashed
        env["GIT_INDEX_FILE"] = index
        _git("add", "--all", "--", ".", env=env)
        tree = _git("write-tree", env=env)
        data = _git("archive", "--format=tar", "--worktree-attributes", tree, binary=True)
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                files[member.name] = (tar.extractfile(member).read(), member.mode)
            elif member.issym():
                raise PackageError(f"{member.name} is a symbolic link; the zip cannot hold it")
    return files


def _export_ignore_patterns():
    patterns = []
    path = os.path.join(ROOT, ".gitattributes")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 2 and not parts[0].startswith("#") and "export-ignore" in parts[1:]:
                    patterns.append(parts[0])
    return patterns


def _ignored(rel, patterns):
    for pattern in patterns:
        anchored = pattern.startswith("/")
        pat = pattern.strip("/")
        candidates = [rel] + ([] if anchored else [os.path.basename(rel)])
        parts = rel.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts))]
        if any(fnmatch.fnmatch(c, pat) for c in candidates + prefixes):
            return True
    return False


def walked_files():
    """{path: bytes} of the folder, for a copy that is not a git checkout."""
    patterns = _export_ignore_patterns()
    files = {}
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in WALK_SKIP)
        for name in sorted(names):
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, ROOT).replace(os.sep, "/")
            if _ignored(rel, patterns) or rel.endswith(FORBIDDEN_SUFFIXES) or os.path.islink(full):
                continue
            with open(full, "rb") as fh:
                files[rel] = (fh.read(), os.stat(full).st_mode & 0o777)
    return files


def check(files):
    """Raise PackageError unless ``files`` ({relative path: ...}) is a clean plugin folder."""
    for name in REQUIRED:
        if name not in files:
            raise PackageError(f"{name} is missing from the package")
    for name in files:
        parts = name.split("/")
        if FORBIDDEN_DIRS & set(parts[:-1]) or parts[0] in FORBIDDEN_DIRS:
            raise PackageError(f"{name} must not be shipped (add export-ignore in .gitattributes)")
        if name.endswith(FORBIDDEN_SUFFIXES):
            raise PackageError(f"{name} must not be shipped")
    meta = configparser.ConfigParser(interpolation=None)
    meta.read_string(files["metadata.txt"][0].decode("utf-8"))
    for key in ("name", "description", "version", "qgisMinimumVersion", "author", "email",
                "about", "tracker", "repository"):  # plugins.qgis.org's required metadata
        if not meta.get("general", key, fallback="").strip():
            raise PackageError(f"metadata.txt has no {key}")
    icon = meta.get("general", "icon", fallback="")
    if icon and icon not in files:
        raise PackageError(f"metadata.txt names the icon {icon}, which is not packaged")
    return meta.get("general", "version")


def write_zip(files, output):
    """Write the files under TOP/ into ``output`` (atomically, deterministic order and dates)."""
    output = os.path.abspath(output)
    tmp = output + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        folders = set()
        for name in sorted(files):
            parts = name.split("/")
            for i in range(1, len(parts)):
                folders.add("/".join(parts[:i]) + "/")
        for folder in [TOP + "/"] + sorted(f"{TOP}/{f}" for f in folders):
            info = zipfile.ZipInfo(folder, ZIP_DATE)
            info.external_attr = (0o40755 << 16) | 0x10
            zf.writestr(info, b"")
        for name in sorted(files):
            data, mode = files[name]
            info = zipfile.ZipInfo(f"{TOP}/{name}", ZIP_DATE)
            info.external_attr = ((0o100000 | (0o755 if mode & 0o111 else 0o644)) << 16)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    os.replace(tmp, output)
    return output


def main(argv=None):
    parser = argparse.ArgumentParser(description="Build the plugin zip for QGIS.")
    parser.add_argument("--output", "-o", default=os.path.join(ROOT, f"{TOP}.zip"))
    args = parser.parse_args(argv)
    try:
        files = working_tree_files() if in_git_checkout() else walked_files()
        version = check(files)
        output = write_zip(files, args.output)
    except PackageError as exc:
        print(f"package: error: {exc}", file=sys.stderr)
        return 2
    print(f"{output}: {TOP} {version}, {len(files)} files, "
          f"{os.path.getsize(output) / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
