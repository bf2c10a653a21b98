"""ModelConfig: every variant of the paper's tables is one of these, filled from a recipe's `model:` section."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mertool.errors import MertoolError

CHOICES = {
    "arch": ("mer", "resnet18", "ststnet", "offapexnet"),
    "direction": ("vertical", "horizontal", "both", "none"),
    "fpf": ("swin", "vit", "none"),
    "frames": ("dual", "onset", "apex"),
    "aus": ("oracle", "estimated", "none"),
    "stem": ("light", "mmnet"),
    "motion": ("diff", "flow"),
}

# the field's shallow flow networks (their own files): they read only the pair's optical flow
FLOW_ARCHS = ("ststnet", "offapexnet")

# Recipes, run folders and checkpoints written before AU sources existed say `aus: true/false`.
AU_ALIASES = {True: "oracle", False: "none"}


def au_source(value) -> str:
    """model.aus as one of oracle | estimated | none (true/false are the old spellings of oracle/none)."""
    if isinstance(value, bool):
        return AU_ALIASES[value]
    return value.strip().lower() if isinstance(value, str) else value


def _positive_ints(value) -> bool:
    """A list or tuple of positive integers (booleans are not integers here)."""
    return isinstance(value, (list, tuple)) and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)


@dataclass
class ModelConfig:
    """Options of the MER network (arch 'mer') and the ResNet-18 baseline (arch 'resnet18').

    direction: attention axis of the motion stream's CVA modules ('none': plain residual stages);
    continuous: each module's map is multiplied by the previous module's map; fpf: facial position focalizer
    backbone; frames: which frames the FPF sees; aus: what the classifier reads as its AU vector ('oracle': the
    hand-coded AUs given with the sample, as in the paper; 'estimated': the model's own AU head's probabilities;
    'none': no AU vector); au_head: 21 sigmoid AU outputs from the fused features, trained as an auxiliary task
    (off only for checkpoints written before it existed); au_detach: in 'estimated' mode stop the classifier's
    gradient at the AU head's output, so the head learns from the AU labels alone (default: it flows);
    width: channel multiplier (motion stream and FPF) for small models; window: Swin window (timm clips it to a
    stage's resolution); swin_heads: attention heads of the Swin's three stages (the paper's 4, 8, 16 are 32
    channels a head at width 1); stem: the motion stream's stem before the CVA modules ('light': one 3x3 stride-2
    conv to 64 channels, mertool's first release; 'mmnet': the released code of this model family, FaceSleuth / MMNet,
    a 3x3 stride-2 conv to 180 channels then a 3x3 conv to 128); motion: what the motion stream reads ('diff': apex -
    onset, the paper; 'flow': the cached optical flow u, v and optical strain of the pair);
    pretrained / fpf_pretrained: local files only.
    The baseline uses num_classes, aus, num_aus and pretrained; its trunk is a plain ResNet-18 whatever the others say.
    STSTNet and OFF-ApexNet (arch ststnet / offapexnet) use num_classes, image_size (28 in their papers) and dropout.
    """

    arch: str = "mer"
    num_classes: int = 5
    image_size: int = 224
    width: float = 1.0
    direction: str = "vertical"
    continuous: bool = True
    fpf: str = "swin"
    frames: str = "dual"
    aus: str = "oracle"
    num_aus: int = 21
    au_head: bool = True
    au_detach: bool = False   # measured on the demo: letting the class loss reach the AU head helped both figures
    mlp_hidden: tuple = (512, 128)
    dropout: float = 0.5
    window: int = 7
    swin_heads: tuple = (4, 8, 16)
    stem: str = "light"       # a checkpoint without the key was written with this stem (paper recipes say mmnet)
    motion: str = "diff"
    pretrained: str | None = None
    fpf_pretrained: str | None = None

    def __post_init__(self):
        self.aus = au_source(self.aus)
        for key, choices in CHOICES.items():
            value = getattr(self, key)
            if value not in choices:
                raise MertoolError(f"model.{key} = {value!r}: expected one of {', '.join(choices)}")
        for key in ("continuous", "au_head", "au_detach"):
            if not isinstance(getattr(self, key), bool):
                raise MertoolError(f"model.{key} = {getattr(self, key)!r}: expected true or false")
        for key, lo in (("num_classes", 2), ("image_size", 16), ("num_aus", 1), ("window", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise MertoolError(f"model.{key} = {value!r}: expected an integer >= {lo}")
        if self.image_size % 16 and self.arch not in FLOW_ARCHS:
            # four stride-2 steps (motion stream) and patch 4 + two merges (Swin) / patch 16 (ViT) must meet
            raise MertoolError(f"model.image_size = {self.image_size}: expected a multiple of 16 (e.g. 64, 112, 224)")
        for key, ok, expected in (("width", lambda v: 0 < v <= 8, "a number in (0, 8]"),
                                  ("dropout", lambda v: 0 <= v < 1, "a number in [0, 1)")):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
                raise MertoolError(f"model.{key} = {value!r}: expected {expected}")
            setattr(self, key, float(value))
        hidden = self.mlp_hidden
        if isinstance(hidden, int) and not isinstance(hidden, bool):
            hidden = (hidden,)
        if not _positive_ints(hidden):
            raise MertoolError(f"model.mlp_hidden = {self.mlp_hidden!r}: expected a list of positive integers "
                               f"(e.g. [512, 128]; [] for a single linear layer)")
        self.mlp_hidden = tuple(hidden)
        heads = self.swin_heads
        if not _positive_ints(heads) or len(heads) != 3:
            raise MertoolError(f"model.swin_heads = {self.swin_heads!r}: expected three positive integers, one per "
                               f"Swin stage (the paper's [4, 8, 16])")
        self.swin_heads = tuple(heads)
        if self.arch in FLOW_ARCHS and (self.aus != "none" or self.au_head):
            raise MertoolError(f"model.arch = {self.arch!r} reads only the optical flow: set model.aus = none and "
                               f"model.au_head = false (got aus {self.aus!r}, au_head {self.au_head})")
        if self.aus == "estimated" and not self.au_head:
            raise MertoolError("model.aus = 'estimated' needs model.au_head = true (the AU estimate comes from it)")
        for key in ("pretrained", "fpf_pretrained"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                value = str(value)  # a pathlib.Path is fine
                setattr(self, key, value)
            if value == "":
                setattr(self, key, None)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | "ModelConfig" | None) -> "ModelConfig":
        """Build from a mapping; an unknown key is an error naming it and the valid keys."""
        if isinstance(d, ModelConfig):
            return dataclasses.replace(d)
        d = dict(d or {})
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in valid]
        if unknown:
            raise MertoolError(f"model.{unknown[0]}: unknown model option; valid options: {', '.join(valid)}")
        return cls(**d)

    @property
    def reads_aus(self) -> bool:
        """The classifier takes an AU vector (hand-coded or estimated)."""
        return self.aus != "none"

    @property
    def needs_flow(self) -> bool:
        """The model reads the cached optical flow and strain of each pair."""
        return self.arch in FLOW_ARCHS or (self.arch == "mer" and self.motion == "flow")

    @property
    def needs_aus(self) -> bool:
        """The caller must supply the AU vector (oracle mode)."""
        return self.aus == "oracle"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, not tuples) that from_dict reads back: for checkpoints and recipes."""
        d = dataclasses.asdict(self)
        d["mlp_hidden"] = list(self.mlp_hidden)
        d["swin_heads"] = list(self.swin_heads)
        return d


def model_config_dict(cfg: dict | ModelConfig | None) -> dict[str, Any]:
    """Validated, complete config as a plain dict (the form checkpoints store)."""
    return ModelConfig.from_dict(cfg).to_dict()


def channels(c: int, width: float) -> int:
    """Channel count scaled by the width multiplier, a multiple of 16 (>= 16) so every head split divides."""
    return max(16, int(round(c * width / 16)) * 16)
