"""Synthetic data with known truth, made on real face photos (the demo's data, and the yardstick of registration).

    faces.py         `mertool synth`: micro-expressions of known AUs and displacement on real faces, written in the
                     CASME II layout (frames, coding sheet, synth.json)
    motion_truth.py  registration checked against truth: synthetic pairs whose AU and head motion are known exactly

Long synthetic videos for spotting are made by mertool.spotting.synth. `mertool.synth` was one module (now faces.py)
until 0.1.0: its names are re-exported here, so `from mertool.synth import synth` keeps working.
"""
from mertool._moved import forward_names
from mertool.synth.faces import (
    ALIGNED, AMPLITUDE, AU_MOTION, CHIP_RANGE, CLASS_PATTERNS, CLASSES, FIXED_TIME, FLOW_PATTERNS, FORMAT,
    FRAME_SIZE, IMAGE_SUFFIXES, JPEG_QUALITY, MANIFEST, MARKER, MAX_PX, MIDLINE_AUS, N_POINTS, RAW_DIR,
    SHEET_HEADER, SHEET_NAME, VERSION, VIRTUAL, BaseFace, Identity, MotionPair, SampleSpec, Subject,
    aligned_displacement, au_motion_pair, backward_field, border_anchors, check_settings, clamp_to_neighbours,
    default_faces, dense_field, draw_head_motion, draw_identity, files_digest, folder_faces, frame_displacement,
    is_complete, make_folder, make_subject, make_subjects, objective_class, plan_samples, prepare_face,
    read_manifest, render_clip, render_identity, ring_anchors, settings_key, sided_motion, synth, with_virtual,
    write_sheet)

__all__ = ["ALIGNED", "AMPLITUDE", "AU_MOTION", "CHIP_RANGE", "CLASS_PATTERNS", "CLASSES", "FIXED_TIME",
           "FLOW_PATTERNS", "FORMAT", "FRAME_SIZE", "IMAGE_SUFFIXES", "JPEG_QUALITY", "MANIFEST", "MARKER",
           "MAX_PX", "MIDLINE_AUS", "N_POINTS", "RAW_DIR", "SHEET_HEADER", "SHEET_NAME", "VERSION", "VIRTUAL",
           "BaseFace", "Identity", "MotionPair", "SampleSpec", "Subject", "aligned_displacement",
           "au_motion_pair", "backward_field", "border_anchors", "check_settings", "clamp_to_neighbours",
           "default_faces", "dense_field", "draw_head_motion", "draw_identity", "files_digest",
           "folder_faces", "frame_displacement", "is_complete", "make_folder", "make_subject",
           "make_subjects", "objective_class", "plan_samples", "prepare_face", "read_manifest", "render_clip",
           "render_identity", "ring_anchors", "settings_key", "sided_motion", "synth", "with_virtual",
           "write_sheet"]


# a name the old module had but the list above lacks: the same object, from mertool.synth.faces
__getattr__ = forward_names(__name__, "mertool.synth.faces")
