"""When a prediction should not be trusted: the reject option of `predict`.

    verdict = judge(pair_motion(onset, apex), trained_on["motion"], registration, n_faces)
    verdict.ok, verdict.code, verdict.reason    # False, 'no-motion', 'no expression detected: ...'

A classifier always answers; these checks say when its answer means nothing:
  no-face        the face was not found in the onset frame;
  registration   the apex could not be brought onto the onset plausibly (align's registration flags);
  no-motion      the pair's motion is no larger than its two frames' noise ("no expression detected");
  out-of-range   the pair moves far more than any pair the model was trained on (a head turn, a cut, another
                 person), judged against the training pairs' motion statistics kept in the checkpoint.

The motion of a pair is measured as the model sees it, at its input size: the RMS grey-level difference apex -
onset over the inner face (a 10 % border left out: augmentation and registration edges), against the noise of that
difference by Immerkaer's estimator (a 3 x 3 Laplacian-difference mask, "Fast noise variance estimation", 1996):
for two frames that differ by noise alone the two are equal; motion is spatially smooth and raises the RMS far more
than the estimate (the estimator on each frame would count the face's fine texture as noise, and did: at 48 px it
called half of the demo's training pairs motionless). `excess` is the RMS beyond that noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

NO_MOTION_RATIO = 1.5    # rms within 1.5 x the difference's own noise: white noise gives 1.0; the demo's 160 training
#                          pairs 2.8-10.3, real consecutive frames (single_face img1 -> img2) 3.6
FAR_FACTOR = 3.0         # rms above 3 x the largest training pair's (and its p99's): outside what the model saw
_BORDER = 0.1
_LAPLACE = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])


def _grey(frames: torch.Tensor) -> torch.Tensor:
    """N x 3 x S x S (uint8 or float 0-255) -> N x 1 x S x S float grey levels, inner face only."""
    x = frames.float().mean(1, keepdim=True)
    s = x.shape[-1]
    b = int(round(_BORDER * s))
    return x[..., b:s - b, b:s - b] if s - 2 * b >= 8 else x


def noise_sigma(grey: torch.Tensor) -> torch.Tensor:
    """Immerkaer's noise estimate per image (N x 1 x H x W -> N): sqrt(pi/2) / (6 (W-2)(H-2)) sum |I * L|."""
    r = F.conv2d(grey, _LAPLACE.to(grey.device)[None, None])
    h, w = r.shape[-2:]
    return (np.sqrt(np.pi / 2) / (6 * h * w)) * r.abs().sum((1, 2, 3))


def pair_motion(onset: torch.Tensor, apex: torch.Tensor) -> dict[str, np.ndarray]:
    """Per pair: rms (grey-level RMS of apex - onset), noise (the difference two frames of noise alone would
    show) and excess (rms beyond that noise); onset/apex N x 3 x S x S at the model's input size."""
    diff = _grey(apex) - _grey(onset)
    rms = diff.pow(2).mean((1, 2, 3)).sqrt()
    # the difference's own high-frequency part: the face's texture cancels, white noise does not, and motion (a
    # spatially smooth change) adds far more RMS than Laplacian response
    noise = noise_sigma(diff)
    excess = (rms ** 2 - noise ** 2).clamp_min(0).sqrt()
    return {"rms": rms.cpu().numpy(), "noise": noise.cpu().numpy(), "excess": excess.cpu().numpy()}


QUANTILES = (0.0, 0.01, 0.05, 0.5, 0.95, 0.99, 1.0)


def motion_stats(onset: torch.Tensor, apex: torch.Tensor, chunk: int = 256) -> dict:
    """The training pairs' motion, summarised for a checkpoint: quantiles of rms, noise and excess."""
    parts = [pair_motion(onset[i:i + chunk], apex[i:i + chunk]) for i in range(0, len(onset), chunk)]
    out = {"n": int(len(onset)), "quantiles": list(QUANTILES), "image_size": int(onset.shape[-1])}
    for key in ("rms", "noise", "excess"):
        v = np.concatenate([p[key] for p in parts]) if parts else np.zeros(0)
        out[key] = [float(q) for q in np.quantile(v, QUANTILES)] if len(v) else []
    return out


@dataclass
class Verdict:
    """Whether a pair can be judged, and if not, why."""

    ok: bool
    code: str = ""          # no-face | registration | no-motion | out-of-range
    reason: str = ""
    motion: dict | None = None

    def to_dict(self) -> dict:
        return {"judged": self.ok, "code": self.code or None, "reason": self.reason or None, "motion": self.motion}


def _q(stats: dict, key: str, q: float) -> float | None:
    vals = stats.get(key) or []
    try:
        return float(vals[list(stats["quantiles"]).index(q)])
    except (KeyError, ValueError, IndexError):
        return None


def judge_motion(motion: dict[str, float], stats: dict | None) -> Verdict:
    """no-motion or out-of-range from one pair's motion (pair_motion of a single pair, as floats)."""
    rms, noise = float(motion["rms"]), float(motion["noise"])
    info = {k: round(float(v), 3) for k, v in motion.items()}
    if rms <= NO_MOTION_RATIO * noise:
        return Verdict(False, "no-motion", f"no expression detected: the pair differs by {rms:.2f} grey levels RMS, "
                                           f"hardly more than the difference's own noise ({noise:.2f})", info)
    if stats:
        top, p99 = _q(stats, "rms", 1.0), _q(stats, "rms", 0.99)
        info["train_rms_max"] = top
        if top is not None and rms > FAR_FACTOR * max(top, p99 or 0.0):
            return Verdict(False, "out-of-range",
                           f"motion far outside the training pairs': {rms:.1f} grey levels RMS against at most "
                           f"{top:.1f} in the {stats.get('n', '?')} training pairs (a head turn, a cut or "
                           f"another face?)", info)
    return Verdict(True, motion=info)


def judge(motion: dict[str, float] | None, stats: dict | None, registration: dict | None = None) -> Verdict:
    """The pair's verdict: implausible registration first, then motion against noise and the training range."""
    if registration is not None:
        why = implausible_registration(registration)
        if why:
            return Verdict(False, "registration", f"implausible registration: {why}")
    if motion is None:
        return Verdict(True)
    return judge_motion(motion, stats)


def implausible_registration(reg: dict) -> str | None:
    """Why a pair's registration is not to be trusted, or None: align's refusal (`applied` false: head motion beyond
    align.IMPLAUSIBLE, its `flag` saying which), else a residual above align.RESIDUAL_WARN after registration (real
    pairs leave under 1 px). A flag on a registration that was applied (a fallback to landmarks) is a warning."""
    from mertool.face.align import RESIDUAL_WARN

    if reg.get("applied") is False:
        return reg.get("flag") or "refused by the registration"
    residual = reg.get("residual")
    if residual is not None and float(residual) > RESIDUAL_WARN:
        where = "the still face (held-out patches)" if reg.get("method") == "consensus" else "the upper face"
        return (f"{float(residual):.2f} px left on {where} after registration (over {RESIDUAL_WARN} px; head "
                f"rotation {float(reg.get('rotation', 0.0)):+.1f} deg)")
    return None
