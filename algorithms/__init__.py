"""QGIS Processing glue: the provider and one module per algorithm (no mosaic logic here)."""
