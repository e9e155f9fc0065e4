"""Toolbox polish: icon, groups, help text, help URL, advanced flags and canExecute."""

import os
import re

import pytest
from osgeo import gdal

from streaming_mosaic.algorithms import requirements
from streaming_mosaic.core.options import PARAMS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ADVANCED = {p.name for p in PARAMS if p.advanced}


def _advanced_flag():
    from qgis.core import Qgis, QgsProcessingParameterDefinition
    flags = getattr(Qgis, "ProcessingParameterFlag", None)
    return flags.Advanced if flags is not None else QgsProcessingParameterDefinition.FlagAdvanced


@pytest.mark.parametrize("alg_id", ["streamingmosaic:mosaic", "streamingmosaic:plan"])
def test_algorithms_have_an_icon_a_group_and_help_for_every_parameter(registry, alg_id):
    alg = registry.algorithmById(alg_id)
    assert alg.group() == "Raster mosaicking" and alg.groupId() == "mosaicking"
    assert not alg.icon().isNull()
    assert os.path.getsize(os.path.join(ROOT, "resources", "icon.svg")) > 200
    help_text = alg.shortHelpString()
    for definition in alg.parameterDefinitions():
        if definition.name() in {p.name for p in PARAMS}:
            assert f"({definition.name()})" in help_text, definition.name()
    assert "MEMORY_MB" in help_text and "block cache" in help_text
    if alg_id.endswith("mosaic"):
        for rule in ("Last", "First", "Mean", "Sum", "Count", "Feather"):
            assert f"<b>{rule}" in help_text


@pytest.mark.parametrize("alg_id", ["streamingmosaic:mosaic", "streamingmosaic:plan"])
def test_help_url_opens_the_readme_section_of_the_algorithm(registry, alg_id):
    from qgis.PyQt.QtCore import QUrl
    url = QUrl(registry.algorithmById(alg_id).helpUrl())
    path = url.toLocalFile()
    assert os.path.samefile(path, os.path.join(ROOT, "README.md"))
    headings = re.findall(r"^#+ (.+)$", open(path, encoding="utf-8").read(), re.M)
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
    assert url.fragment() in anchors


def test_tuning_parameters_are_advanced_and_the_main_ones_are_not(registry):
    alg = registry.algorithmById("streamingmosaic:mosaic")
    flag = _advanced_flag()
    advanced = {d.name() for d in alg.parameterDefinitions() if d.flags() & flag}
    assert advanced == ADVANCED
    assert {"CHUNK_SIZE", "MEMORY_MB", "THREADS", "CREATION_OPTIONS"} <= advanced
    assert not {"INPUT", "METHOD", "OUTPUT", "COMPRESSION"} & advanced


def test_can_execute_here_and_explains_an_old_gdal(registry, monkeypatch):
    alg = registry.algorithmById("streamingmosaic:mosaic")
    assert alg.canExecute() == (True, "")
    monkeypatch.setattr(gdal, "__version__", "2.4.4")
    ok, message = alg.canExecute()
    assert not ok and "GDAL 2.4.4 is too old" in message and "3.1" in message
    assert requirements.missing_requirements() == message
