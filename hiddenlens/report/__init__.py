"""Reports: sections of text, metrics, tables and figures -> report.html + metrics.json."""

from hiddenlens.report.metrics import flatten, json_safe, provenance, write_json
from hiddenlens.report.model import Report, Section

__all__ = ["Report", "Section", "flatten", "json_safe", "provenance", "write_json"]
