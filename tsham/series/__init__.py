"""Series front end: missing values, instance scaling, training windows (GluonTS field names)."""

from tsham.series.scaling import InstanceScaler, observed_mask
from tsham.series.windows import sample_windows

__all__ = ["InstanceScaler", "observed_mask", "sample_windows"]
