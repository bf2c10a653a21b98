"""The model family: CVA motion stream, Swin/ViT facial position focalizer, AU vector, MLP head; ResNet-18 baseline.

Every variant of the paper's tables is a ModelConfig (recipes/model/*.yaml), built by `build_model`.
"""
from mertool.models.build import LoadReport, build_model, count_params, forward_flops, load_fpf_pretrained, \
    load_pretrained
from mertool.models.config import CHOICES, ModelConfig, model_config_dict
from mertool.models.cva import CVA, MotionStream
from mertool.models.fpf import FPF
from mertool.models.net import MERNet, ResNetBaseline

__all__ = ["ModelConfig", "build_model", "count_params", "forward_flops", "model_config_dict", "CHOICES",
           "MERNet", "ResNetBaseline", "CVA", "MotionStream", "FPF", "LoadReport", "load_pretrained",
           "load_fpf_pretrained"]
