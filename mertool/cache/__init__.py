"""The HDF5 cache: aligned onset/apex pairs plus the sheet's facts, one file every later command reads.

    store.py       the cache file: CacheWriter, load_cache, open_cache, cache_info / verify / show / merge, schemas
    provenance.py  where the cache's data came from (synthetic, a real dataset folder, unknown), as it records it
    preprocess.py  the `preprocess` command: dataset folder -> records -> aligned pairs (worker pool) -> CacheWriter

`mertool.cache` was one module (now store.py) until 0.1.0: its names are re-exported here, so
`from mertool.cache import load_cache` keeps working and stays the public path.
"""
from mertool._moved import forward_names
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


# a name the old module had but the list above lacks: the same object, from mertool.cache.store
__getattr__ = forward_names(__name__, "mertool.cache.store")
