"""Predictions for new data, and when not to trust them.

    predictor.py  Predictor: an onset/apex pair, a CSV of pairs or a clip -> Prediction (emotion, probabilities)
    reject.py     the reject option: no motion, a pair unlike any the model trained on, an implausible registration
    explain.py    pictures of what the model saw: onset, apex, their difference, the CVA attention

`mertool.predict` was one module (now predictor.py) until 0.1.0: its names are re-exported here, so
`from mertool.predict import Predictor` keeps working and stays the public path.
"""
from mertool._moved import forward_names
from mertool.predict.predictor import (
    AU_THRESHOLD, AUTO, DEFAULTS_NOTE, NO_AUS, AUInput, Prediction, Predictor, ResizePairs, au_input_words,
    au_source_name, batch_csv, batch_jsonl, openface_input, pair_maker, parse_aus_input, read_pairs_csv,
    render_prediction, sparkline)
from mertool.predict.reject import Verdict

__all__ = ["AU_THRESHOLD", "AUTO", "DEFAULTS_NOTE", "NO_AUS", "AUInput", "Prediction", "Predictor",
           "ResizePairs", "Verdict", "au_input_words", "au_source_name", "batch_csv", "batch_jsonl",
           "openface_input", "pair_maker", "parse_aus_input", "read_pairs_csv", "render_prediction",
           "sparkline"]


# a name the old module had but the list above lacks: the same object, from mertool.predict.predictor
__getattr__ = forward_names(__name__, "mertool.predict.predictor")
