"""Run inside the QGIS desktop (``qgis.bin --code``) by tools/screenshots.py.

Opens the Processing toolbox and the plugin's algorithm dialogs, presses Run,
and saves widget grabs as PNG. Reads its settings from the JSON file named by
$SM_SCREENSHOT_CONFIG, writes {"done": bool, "errors": [...]} to its "status"
file, then leaves with os._exit (QGIS may crash while tearing down otherwise).
Never waits for a user: every step has a timeout.
"""

import json
import os
import time
import traceback

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QModelIndex, Qt, QTimer
from qgis.PyQt.QtWidgets import QAbstractItemView, QApplication, QTabWidget, QTextEdit

CONFIG = json.load(open(os.environ["SM_SCREENSHOT_CONFIG"]))
MOSAIC = "streamingmosaic:mosaic"
PLAN = "streamingmosaic:plan"
STATE = {"errors": [], "written": [], "keep": []}


def out(name):
    return os.path.join(CONFIG["out"], name)


def finish(done):
    try:
        with open(CONFIG["status"], "w") as fh:
            json.dump({"done": done, "errors": STATE["errors"], "written": STATE["written"]}, fh)
    finally:
        os._exit(0 if done and not STATE["errors"] else 1)


def log_view(dialog):
    """The dialog's log (the help beside it is a text view too)."""
    for view in dialog.findChildren(QTextEdit):
        if "Input parameters" in view.toPlainText():
            return view
    return None


def neutral_log(dialog):
    """Show the throwaway home as ``~`` (and its temp folder as /tmp) in the dialog's log.

    The inputs live in that home and the output is given as ``~/mosaics/...``; QGIS
    prints the inputs, the results and a temporary report with absolute paths.
    """
    log = log_view(dialog)
    html = log.toHtml()
    for path, shown in CONFIG["shown_as"]:
        html = html.replace(path, shown)
    log.setHtml(html)
    log.verticalScrollBar().setValue(log.verticalScrollBar().maximum())


def save(widget, name):
    QApplication.processEvents()
    image = widget.grab()
    if image.isNull() or not image.save(out(name), "PNG"):
        STATE["errors"].append(f"could not save {name}")
    else:
        STATE["written"].append(name)


def grab_windows():
    """Save every visible top-level window into the work folder (what blocked a step?)."""
    names = []
    for i, widget in enumerate(QApplication.topLevelWidgets()):
        if widget.isVisible():
            name = os.path.join(CONFIG["work"], f"window_{i}.png")
            widget.grab().save(name, "PNG")
            names.append(f"{name} ({widget.windowTitle()})")
    return names


# ------------------------------------------------------------ a tiny step driver
# A step is a generator: ``yield ms`` sleeps, ``yield (predicate, seconds, what)``
# polls until predicate() is true or records a timeout.

def drive(gen):
    def step(wait_for=None):
        try:
            if wait_for is not None:
                predicate, deadline, what = wait_for
                if not predicate():
                    if time.monotonic() > deadline:
                        STATE["errors"].append(f"timed out waiting for {what}; the windows "
                                               f"then: {grab_windows()}")
                        finish(False)
                    QTimer.singleShot(200, lambda: step(wait_for))
                    return
            item = next(gen)
        except StopIteration:
            finish(True)
            return
        except Exception:  # noqa: BLE001 - report everything, never hang QGIS
            STATE["errors"].append(traceback.format_exc(limit=6).strip())
            finish(False)
            return
        if isinstance(item, tuple):
            predicate, seconds, what = item
            QTimer.singleShot(0, lambda: step((predicate, time.monotonic() + seconds, what)))
        else:
            QTimer.singleShot(int(item), step)
    QTimer.singleShot(0, step)


# ------------------------------------------------------------ the screenshots

def expand_advanced(dialog):
    """Open the collapsed "Advanced Parameters" group of a dialog."""
    from qgis.gui import QgsCollapsibleGroupBoxBasic
    from qgis.PyQt import sip
    from qgis.PyQt.QtWidgets import QGroupBox
    # PyQt sees the group as a plain QGroupBox: cast it by its Qt class name.
    for box in dialog.findChildren(QGroupBox):
        if box.metaObject().className().startswith("QgsCollapsibleGroupBox"):
            sip.cast(box, QgsCollapsibleGroupBoxBasic).setCollapsed(False)


def open_dialog(alg_id, params, size):
    import processing
    dialog = processing.createAlgorithmDialog(alg_id, params)
    STATE["keep"].append(dialog)
    dialog.show()
    dialog.resize(*size)  # after show(): the dialog restores its saved geometry there
    dialog.move(20, 20)
    dialog.raise_()
    dialog.activateWindow()
    return dialog


def run_dialog(dialog, seconds, what):
    """Press Run; yield until the algorithm has finished."""
    finished = {}
    dialog.algorithmFinished.connect(lambda ok, results: finished.update(ok=ok))
    dialog.runButton().click()
    yield (lambda: "ok" in finished, seconds, what)
    if not finished["ok"]:
        log = log_view(dialog)
        text = log.toPlainText()[-1500:] if log is not None else ""
        STATE["errors"].append(f"{what} failed:\n{text}")
    yield 800  # the output layer loads, the log settles


def toolbox_shot():
    from qgis.utils import plugins
    toolbox = plugins["processing"].toolbox
    toolbox.setFloating(True)
    toolbox.show()
    toolbox.resize(430, 560)
    toolbox.move(40, 40)
    toolbox.raise_()
    tree = toolbox.algorithmTree
    model = tree.model()
    tree.collapseAll()
    target = None
    for row in range(model.rowCount(QModelIndex())):
        index = model.index(row, 0, QModelIndex())
        if model.data(index, Qt.ItemDataRole.DisplayRole) == "Streaming Mosaic":
            target = index
    if target is None:
        STATE["errors"].append("toolbox: no 'Streaming Mosaic' node")
        return
    tree.expandRecursively(target)
    tree.scrollTo(target, QAbstractItemView.ScrollHint.PositionAtCenter)
    tree.setCurrentIndex(model.index(0, 0, model.index(0, 0, target)))
    return toolbox


def scenario():
    registry = QgsApplication.processingRegistry()
    yield (lambda: registry.algorithmById(MOSAIC) is not None, 60, "the plugin's algorithms")
    from processing.core.ProcessingConfig import ProcessingConfig
    ProcessingConfig.setSettingValue(ProcessingConfig.KEEP_DIALOG_OPEN, True)
    ProcessingConfig.setSettingValue(ProcessingConfig.WARN_UNMATCHING_CRS, False)
    yield 1500  # let the main window settle

    toolbox = toolbox_shot()
    if toolbox is not None:
        yield 600
        save(toolbox, "toolbox.png")
        toolbox.hide()

    step_timeout = CONFIG["step_timeout"]
    params = {"INPUT": CONFIG["tiles"], "METHOD": 7, "FEATHER_DISTANCE": 40, "CHUNK_SIZE": 512,
              "MEMORY_MB": 256, "COG": True, "OUTPUT": CONFIG["mosaic_output"]}
    dialog = open_dialog(MOSAIC, params, (1100, 1340))
    yield 500
    expand_advanced(dialog)
    yield 800
    save(dialog, "mosaic_dialog.png")
    yield from run_dialog(dialog, step_timeout, "the mosaic run")
    dialog.findChild(QTabWidget).setCurrentIndex(1)
    dialog.resize(1100, 940)
    neutral_log(dialog)
    yield 400
    save(dialog, "mosaic_log.png")
    dialog.close()

    params = {"INPUT": CONFIG["plan_inputs"], "CHUNK_SIZE": 256, "MEMORY_MB": 256}
    dialog = open_dialog(PLAN, params, (1100, 940))
    yield 800
    yield from run_dialog(dialog, step_timeout, "the plan run")
    neutral_log(dialog)
    yield 400
    save(dialog, "plan_log.png")
    dialog.close()


drive(scenario())
QTimer.singleShot(1000 * CONFIG["overall_timeout"],
                  lambda: (STATE["errors"].append("overall timeout"), finish(False)))
