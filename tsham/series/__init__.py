"""Series front end: missing values, instance scaling, training windows (GluonTS field names)."""

from tsham.series.scaling import InstanceScaler, flat_where_constant, observed_mask, observed_range
from tsham.series.windows import sample_windows

__all__ = ["InstanceScaler", "flat_where_constant", "observed_mask", "observed_range", "sample_windows"]
