"""The checkout as an importable ``streaming_mosaic`` package, whatever its folder is called."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def package_link(folder):
    """Make ``folder/streaming_mosaic`` a link to this checkout; return ``folder``.

    Put ``folder`` on PYTHONPATH (the CLI) or QGIS_PLUGINPATH (QGIS, qgis_process).
    """
    os.makedirs(folder, exist_ok=True)
    link = os.path.join(folder, "streaming_mosaic")
    # A link made by another checkout (or the same one seen from a chroot) is made again.
    if not os.path.islink(link) or os.path.realpath(link) != os.path.realpath(ROOT):
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(ROOT, link)
    return folder
