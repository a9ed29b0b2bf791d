"""Reports: sections of text, metrics, tables and figures -> report.html + metrics.json."""

from hiddenlens._io import json_safe, write_json  # public names for scripts and experiments
from hiddenlens.report.metrics import flatten, provenance
from hiddenlens.report.model import Report, Section

__all__ = ["Report", "Section", "flatten", "json_safe", "provenance", "write_json"]
