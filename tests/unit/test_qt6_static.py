"""No Qt5-only or QGIS-3-only spelling in the code QGIS runs (QGIS 4 is built on Qt6).

QGIS 4 cannot be installed here, so the code that runs inside QGIS (algorithms/,
plugin.py, __init__.py and the tools/ scripts that import qgis) is parsed with
Python's ast module and checked for what Qt6 / QGIS 4 no longer accept:
unscoped enums (``Qt.AlignLeft`` for ``Qt.AlignmentFlag.AlignLeft``,
``QgsProcessing.TypeRaster`` for ``Qgis.ProcessingSourceType.Raster``), ``exec_()``,
``QVariant`` types, ``QRegExp``, ``qApp``, ``QDesktopWidget``, ``resources_rc``, and
plain ints where Processing takes an enum (``type=1``, ``setFlags(8)``).
algorithms/compat.py is where the spellings of both generations are resolved once,
so it is the one file allowed the old ones.
"""

import ast
import os
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPAT = os.path.join("algorithms", "compat.py")
GONE = {"QRegExp": "QRegularExpression", "qApp": "QApplication.instance()",
        "QDesktopWidget": "QScreen (QGuiApplication.screens())", "resources_rc": "file paths",
        "QRegExpValidator": "QRegularExpressionValidator"}
# Processing constructors and the argument position / keyword that takes an enum.
ENUM_ARGUMENTS = {
    "QgsProcessingParameterNumber": (2, "type"),
    "QgsProcessingParameterMultipleLayers": (2, "layerType"),
    "QgsProcessingParameterFeatureSink": (2, "type"),
    "QgsProcessingParameterFeatureSource": (2, "types"),
    "QgsProcessingParameterVectorLayer": (2, "types"),
    "QgsProcessingParameterFile": (2, "behavior"),
    "QgsProcessingParameterField": (5, "type"),
    "QgsProcessingParameterVectorDestination": (2, "type"),
    "QgsProcessingParameterDistance": (None, "type"),
}


def files_run_by_qgis():
    """The plugin's QGIS-side modules and the tools that import qgis (relative paths)."""
    paths = ["__init__.py", "plugin.py"]
    paths += sorted(os.path.join("algorithms", f) for f in os.listdir(os.path.join(ROOT, "algorithms"))
                    if f.endswith(".py"))
    for name in sorted(os.listdir(os.path.join(ROOT, "tools"))):
        if name.endswith(".py") and _imports_qgis(os.path.join(ROOT, "tools", name)):
            paths.append(os.path.join("tools", name))
    return paths


def _imports_qgis(path):
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        if any(n == "qgis" or n.startswith("qgis.") for n in names):
            return True
    return False


def _is_int(node):
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int) and not isinstance(node.value, bool)
    if isinstance(node, (ast.List, ast.Tuple)):
        return bool(node.elts) and all(_is_int(e) for e in node.elts)
    return isinstance(node, ast.UnaryOp) and _is_int(node.operand)


def _camel(name):
    """An enum member's spelling (``AlignLeft``), not a constant (``TEMPORARY_OUTPUT``)."""
    return name[:1].isupper() and any(c.islower() for c in name)


def violations(source, allow_old=False):
    """(line, message) for every Qt5-only or QGIS-3-only spelling in ``source``."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []

    def add(node, message):
        found.append((node.lineno, message))

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parent = parents.get(node)
            scoped = isinstance(parent, ast.Attribute) and parent.value is node
            called = isinstance(parent, ast.Call) and parent.func is node
            owner = node.value.id if isinstance(node.value, ast.Name) else ""
            if node.attr == "exec_":
                add(node, "exec_(): Qt6 has exec() only")
            elif owner == "QVariant" and not allow_old:
                add(node, f"QVariant.{node.attr}: Qt6 has QMetaType.Type (see compat.field)")
            elif owner in GONE:
                add(node, f"{owner}.{node.attr}: {owner} is gone in Qt6")
            elif _camel(node.attr) and not scoped and not called and not allow_old and (
                    owner in ("Qt", "Qgis") or owner.startswith("Qgs")
                    or owner.startswith("Q") and owner[1:2].isupper()):
                add(node, f"{owner}.{node.attr}: an unscoped enum; Qt6 / QGIS 4 need "
                          f"{owner}.<Enum>.{node.attr} or the Qgis.<Enum> spelling "
                          "(resolve QGIS enums in algorithms/compat.py)")
        elif isinstance(node, ast.Name) and node.id in GONE:
            add(node, f"{node.id}: gone in Qt6, use {GONE[node.id]}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            for name in names:
                last = name.rsplit(".", 1)[-1]
                if last in GONE:
                    add(node, f"import of {name}: gone in Qt6, use {GONE[last]}")
        elif isinstance(node, ast.Call):
            _check_call(node, add)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            sides = (node.left, node.right)
            if any(_is_int(s) for s in sides) and any(
                    isinstance(s, ast.Call) and isinstance(s.func, ast.Attribute)
                    and s.func.attr == "flags" for s in sides):
                add(node, "flags() | int: Qt6 / QGIS 4 flags are enums, not ints")
    return sorted(found)


def _check_call(node, add):
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(
        func, ast.Attribute) else ""
    if name == "setFlags" and node.args and _is_int(node.args[0]):
        add(node, "setFlags(int): Qt6 / QGIS 4 flags are enums, not ints")
    position, keyword = ENUM_ARGUMENTS.get(name, (None, None))
    if keyword is None:
        return
    args = [k.value for k in node.keywords if k.arg == keyword]
    if position is not None and len(node.args) > position:
        args.append(node.args[position])
    if any(_is_int(a) for a in args):
        add(node, f"{name}({keyword}=<int>): QGIS 4 takes the enum (see compat.py)")


@pytest.mark.parametrize("path", files_run_by_qgis())
def test_no_qt5_only_spelling(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
        source = fh.read()
    found = violations(source, allow_old=path == COMPAT)
    assert not found, "\n".join(f"{path}:{line}: {message}" for line, message in found)


def test_the_files_checked_include_the_plugin_and_the_qgis_tools():
    paths = files_run_by_qgis()
    assert {"__init__.py", "plugin.py", os.path.join("algorithms", "mosaic.py"),
            os.path.join("tools", "screenshot_qgis.py")} <= set(paths)
    assert os.path.join("tools", "synth.py") not in paths  # no qgis there


PLANTED = {
    "unscoped Qt enum": ("label.setAlignment(Qt.AlignLeft)\n", "Qt.AlignLeft"),
    "unscoped QGIS enum": ("RASTER = QgsProcessing.TypeRaster\n", "QgsProcessing.TypeRaster"),
    "unscoped Qgis enum": ("level = Qgis.Critical\n", "Qgis.Critical"),
    "widget enum": ("box.setStandardButtons(QMessageBox.Yes)\n", "QMessageBox.Yes"),
    "exec_": ("dialog.exec_()\n", "exec_()"),
    "QVariant": ("field = QgsField('a', QVariant.String)\n", "QVariant.String"),
    "QRegExp": ("from qgis.PyQt.QtCore import QRegExp\n", "QRegExp"),
    "qApp": ("qApp.processEvents()\n", "qApp"),
    "QDesktopWidget": ("screen = QDesktopWidget().screenGeometry()\n", "QDesktopWidget"),
    "resources_rc": ("from . import resources_rc  # noqa\n", "resources_rc"),
    "int type": ("p = QgsProcessingParameterNumber('N', 'n', type=1)\n", "type=<int>"),
    "int type positional": ("p = QgsProcessingParameterNumber('N', 'n', 1)\n", "type=<int>"),
    "int layer type": ("p = QgsProcessingParameterMultipleLayers('I', 'i', 3)\n",
                       "layerType=<int>"),
    "int flags": ("d.setFlags(d.flags() | 8)\n", "flags() | int"),
    "setFlags int": ("d.setFlags(8)\n", "setFlags(int)"),
}


@pytest.mark.parametrize("planted", PLANTED, ids=list(PLANTED))
def test_a_planted_violation_is_caught(planted):
    code, words = PLANTED[planted]
    found = violations(textwrap.dedent(code))
    assert found and words in found[0][1], found


def test_the_qt6_spellings_pass():
    code = textwrap.dedent("""
        label.setAlignment(Qt.AlignmentFlag.AlignLeft)
        role = Qt.ItemDataRole.DisplayRole
        level = Qgis.MessageLevel.Critical
        RASTER = compat.RASTER
        dialog.exec()
        p = QgsProcessingParameterNumber('N', 'n', DOUBLE, defaultValue=1)
        d.setFlags(d.flags() | ADVANCED)
        url = QUrl.fromLocalFile(path)
        out = QgsProcessing.TEMPORARY_OUTPUT
        version = Qgis.QGIS_VERSION_INT
    """)
    assert violations(code) == []
