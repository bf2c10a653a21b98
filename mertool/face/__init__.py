"""The face: detection, the aligned chip, apex registration, optical flow.

    align.py  dlib detection and 68 landmarks on the onset, the face chip, the apex registered onto it (consensus,
              ECC or landmarks), image reading; FaceAligner.align_pair is what preprocess, predict and spotting call
    flow.py   optical flow and optical strain between an aligned onset and apex, and the cache stage that stores them
"""
