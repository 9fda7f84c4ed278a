"""Data: dataset sources, preparation to uint8 arrays, evaluation subsets, augmentation.

Sources (`load_source`) give a RawDataset; `prepare` keeps an optional class-balanced subset of
its training split (`training_subset`, data.train_size), adds normalization statistics and the
fixed evaluation subsets that define the "train" and "test" prediction spaces; `save_prepared`
and `load_prepared` move it to and from `data/prepared/`. `normalize` and `augment_simple` are
batched tensor transforms used during training.
"""

from lowdim.data.cifar import load_cifar10
from lowdim.data.fashion import load_fashion_mnist
from lowdim.data.imagenet import load_imagenet
from lowdim.data.prepared import Prepared, channel_stats, load_prepared, prepare, save_prepared
from lowdim.data.raw import RawDataset
from lowdim.data.sources import DATASETS, load_digits, load_source
from lowdim.data.subsets import evaluation_subset, stratified_split, training_subset
from lowdim.data.transforms import augment_simple, default_padding, normalize

__all__ = [
    "DATASETS",
    "Prepared",
    "RawDataset",
    "augment_simple",
    "channel_stats",
    "default_padding",
    "evaluation_subset",
    "load_cifar10",
    "load_digits",
    "load_fashion_mnist",
    "load_imagenet",
    "load_prepared",
    "load_source",
    "normalize",
    "prepare",
    "save_prepared",
    "stratified_split",
    "training_subset",
]
