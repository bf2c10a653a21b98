"""The HDF5 cache: aligned onset/apex pairs plus the sheet's facts, one file every later command reads.

    store.py       the cache file: CacheWriter, load_cache, open_cache, cache_info / verify / show / merge, schemas
    provenance.py  where the cache's data came from (synthetic, a real dataset folder, unknown), as it records it
    preprocess.py  the `preprocess` command: dataset folder -> records -> aligned pairs (worker pool) -> CacheWriter

`mertool.cache` was one module (now store.py) until 0.1.0: its names are re-exported here, so
`from mertool.cache import load_cache` keeps working and stays the public path.
"""
from mertool.cache.store import (
    ADDED_FIELDS, INT_FIELDS, NO_AU_CODES, QUALITY_FIELDS, REFUSED, REGISTRATION_FIELDS, SCHEMA_VERSION,
    TEXT_FIELDS, CacheData, CachedSample, CacheWriter, cache_info, checksum, create_flow_datasets, find_sample,
    flow_line, flow_summary, infer_aus_known, infer_datasets, load_cache, made_from_synth, merge_caches,
    open_cache, overlay, pair_settings, read_flow_settings, read_registration, registration_line,
    registration_summary, registration_text, sample_fields, show_sample, verify_cache)

__all__ = ["ADDED_FIELDS", "INT_FIELDS", "NO_AU_CODES", "QUALITY_FIELDS", "REFUSED", "REGISTRATION_FIELDS",
           "SCHEMA_VERSION", "TEXT_FIELDS", "CacheData", "CachedSample", "CacheWriter", "cache_info",
           "checksum", "create_flow_datasets", "find_sample", "flow_line", "flow_summary", "infer_aus_known",
           "infer_datasets", "load_cache", "made_from_synth", "merge_caches", "open_cache", "overlay",
           "pair_settings", "read_flow_settings", "read_registration", "registration_line",
           "registration_summary", "registration_text", "sample_fields", "show_sample", "verify_cache"]


def __getattr__(name: str):
    # a name the old module had but the list above lacks (a private helper, or one added since): same object
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    try:
        return getattr(importlib.import_module("mertool.cache.store"), name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
