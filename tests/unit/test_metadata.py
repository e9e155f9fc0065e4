"""metadata.txt satisfies what plugins.qgis.org and QGIS's plugin manager require."""

import configparser
import os
import re

import pytest

from streaming_mosaic.core import __version__

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# plugins.qgis.org rejects an upload without these (QGIS-Django plugins/validator.py,
# PLUGIN_REQUIRED_METADATA; "tracker" is required there although the cookbook calls it optional).
REQUIRED = ("name", "description", "version", "qgisMinimumVersion", "author", "email", "about",
            "tracker", "repository")


@pytest.fixture(scope="module")
def meta():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive for QGIS
    with open(os.path.join(ROOT, "metadata.txt"), encoding="utf-8") as fh:
        parser.read_file(fh)
    assert parser.sections() == ["general"]
    return parser["general"]


@pytest.mark.parametrize("key", REQUIRED)
def test_required_field_is_present_and_filled(meta, key):
    assert meta.get(key, "").strip(), key


def test_tracker_homepage_and_repository_are_https_urls(meta):
    for key in ("tracker", "repository", "homepage"):
        assert re.fullmatch(r"https://[\w.-]+/\S+", meta.get(key, "")), key


def test_version_is_semantic_and_matches_the_core(meta):
    assert re.fullmatch(r"\d+\.\d+\.\d+", meta["version"])
    assert meta["version"] == __version__
    assert meta["version"] in meta.get("changelog", ""), "changelog does not mention it"


def test_qgis_versions(meta):
    assert meta["qgisMinimumVersion"] == "3.22"
    maximum = meta.get("qgisMaximumVersion")
    if maximum:
        assert tuple(map(int, maximum.split("."))) >= (3, 22)


def test_processing_provider_flag(meta):
    assert meta["hasProcessingProvider"] == "yes"


def test_description_and_about_lengths(meta):
    description, about = meta["description"].strip(), meta["about"].strip()
    assert "\n" not in description and 20 <= len(description) <= 250
    assert 100 <= len(about) <= 2000
    assert about != description


def test_email_author_and_name(meta):
    assert re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", meta["email"])
    assert "/" not in meta["author"]  # the site rejects slashes in author
    assert meta["name"] == "Streaming Mosaic"


def test_qt6_support_is_declared_by_the_maximum_version(meta):
    # QGIS 4 (Qt 6) loads plugins whose qgisMaximumVersion is 4.x or more.
    assert tuple(map(int, meta["qgisMaximumVersion"].split("."))) >= (4, 0)


def test_booleans_are_spelled_as_qgis_reads_them(meta):
    for key in ("experimental", "deprecated", "server"):
        if key in meta:
            assert meta[key] in ("True", "False"), key


def test_icon_file_exists(meta):
    icon = meta.get("icon")
    assert icon and os.path.isfile(os.path.join(ROOT, icon))
    assert icon.endswith((".svg", ".png"))
