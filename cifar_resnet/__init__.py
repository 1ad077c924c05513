"""cifar_resnet: design, train and submit a CIFAR-10 ResNet of at most 5 million parameters."""
from .augment import augment, cutout, rand_augment, random_crop, random_erasing, random_flip
from .budget import ParameterReport, count_flops, count_parameters
from .checkpoint import Checkpoint, load_checkpoint, load_model, save_checkpoint
from .config import PARAMETER_BUDGET, PRESETS, ModelConfig, TrainConfig, get_preset
from .data import (CLASSES, CifarData, Normalization, load_cifar10, load_kaggle_pickle, train_val_split)
from .device import select_device
from .errors import CifarResnetError
from .evaluate import Evaluation, evaluate, predict_logits
from .model import BasicBlock, ResNet, build_model
from .run_folder import read_history
from .train import TrainResult, fit

__version__ = "0.1.0"
