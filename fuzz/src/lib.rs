//! Shared helpers of arcly's fuzz targets.
