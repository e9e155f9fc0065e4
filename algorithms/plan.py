"""``streamingmosaic:plan``: check a mosaic job before running it (reads no pixels)."""

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFields,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFileDestination,
)

from ..core.errors import MosaicError
from ..core.plan import make_plan, summary_lines
from ..core.report import figures, footprint_rings, html_report, input_rows
from .base import StreamingMosaicAlgorithm
from .compat import FAST_INSERT, POLYGON, VECTOR_POLYGON, field
from .help import help_url, short_help
from .parameters import add_parameters, read_options, tr

NUMBERS = (("WIDTH", "width", "Output width (pixels)"),
           ("HEIGHT", "height", "Output height (pixels)"),
           ("BAND_COUNT", "bands", "Output bands"),
           ("WINDOWS", "windows", "Windows"),
           ("ESTIMATED_MEMORY_MB", "estimated_memory_mb", "Estimated peak memory (MB)"),
           ("ESTIMATED_DISK_MB", "estimated_disk_mb_high", "Estimated output size, at most (MB)"),
           ("ESTIMATED_DISK_MB_MIN", "estimated_disk_mb_low", "Estimated output size, at least (MB)"),
           ("PIXEL_SIZE_X", "pixel_size_x", "Output pixel width"),
           ("PIXEL_SIZE_Y", "pixel_size_y", "Output pixel height"))
STRINGS = (("OUTPUT_CRS", "crs", "Output CRS"),
           ("OUTPUT_DATA_TYPE", "data_type", "Output data type"))

FIELDS = (("file", "string"), ("path", "string"), ("crs", "string"), ("res_x", "double"),
          ("res_y", "double"), ("width", "int"), ("height", "int"), ("bands", "int"),
          ("data_type", "string"), ("nodata", "string"), ("reprojected", "bool"))


class PlanAlgorithm(StreamingMosaicAlgorithm):
    """Report the output grid, windows, memory and disk estimates, and warnings."""

    REPORT = "REPORT"
    FOOTPRINTS = "FOOTPRINTS"

    def name(self):
        return "plan"

    def displayName(self):
        return tr("Plan mosaic (dry run)")

    def tags(self):
        return [tr(t) for t in ("mosaic", "plan", "dry run", "estimate", "footprint")]

    def shortHelpString(self):
        return short_help(
            "Checks a mosaic job before you start it, reading no pixels: output size, bands, "
            "data type, CRS and pixel size, the number of windows, estimated peak memory and "
            "output size, and warnings (mixed CRS, different resolutions, inputs without "
            "nodata, band-count mismatch, BigTIFF). Optionally writes the input footprints "
            "as a polygon layer.", plan_only=True)

    def helpUrl(self):
        return help_url("plan-mosaic-dry-run")

    def initAlgorithm(self, config=None):
        add_parameters(self, plan_only=True)
        self.addParameter(QgsProcessingParameterFileDestination(
            self.REPORT, tr("Plan report"), tr("HTML files (*.html)"), optional=True))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.FOOTPRINTS, tr("Input footprints"), VECTOR_POLYGON, optional=True,
            createByDefault=False))
        for name, _key, label in NUMBERS:
            self.addOutput(QgsProcessingOutputNumber(name, tr(label)))
        for name, _key, label in STRINGS:
            self.addOutput(QgsProcessingOutputString(name, tr(label)))
        self.addOutput(QgsProcessingOutputString("WARNINGS", tr("Warnings")))

    def processAlgorithm(self, parameters, context, feedback):
        options = read_options(self, parameters, context, plan_only=True)
        try:
            plan = make_plan(options, strict=False)
        except MosaicError as exc:
            raise QgsProcessingException(str(exc)) from None
        for line in summary_lines(plan):
            feedback.pushInfo(line)
        for warning in plan.warnings:
            feedback.pushWarning(warning)
        numbers = figures(plan)
        results = {name: numbers[key] for name, key, _label in NUMBERS + STRINGS}
        results["WARNINGS"] = "\n".join(plan.warnings)

        report = self.parameterAsFileOutput(parameters, self.REPORT, context)
        if report:
            with open(report, "w", encoding="utf-8") as fh:
                fh.write(html_report(plan))
            results[self.REPORT] = report

        if parameters.get(self.FOOTPRINTS) is not None:
            results.update(self._footprints(plan, parameters, context))
        return results

    def _footprints(self, plan, parameters, context):
        fields = QgsFields()
        for name, kind in FIELDS:
            fields.append(field(name, kind))
        crs = self.parameterAsCrs(parameters, "TARGET_CRS", context)
        if not crs.isValid():
            crs = QgsCoordinateReferenceSystem.fromWkt(plan.grid.crs_wkt)
        sink, dest = self.parameterAsSink(parameters, self.FOOTPRINTS, context, fields, POLYGON, crs)
        if sink is None:
            return {}
        for ring, row in zip(footprint_rings(plan), input_rows(plan)):
            feature = QgsFeature(fields)
            feature.setGeometry(QgsGeometry.fromPolygonXY([[QgsPointXY(x, y) for x, y in ring]]))
            feature.setAttributes([row[name] for name, _kind in FIELDS])
            sink.addFeature(feature, FAST_INSERT)
        return {self.FOOTPRINTS: dest}

