"""Customer-facing exports in the AWS Data Exports carbon-table format."""

from carbon_core.export.carbon_exports import (
    EXPORT_COLUMNS,
    ExportReport,
    export_carbon,
    export_lake,
    to_export_rows,
)

__all__ = ["EXPORT_COLUMNS", "ExportReport", "export_carbon", "export_lake", "to_export_rows"]
