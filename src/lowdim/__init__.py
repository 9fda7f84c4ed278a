"""lowdim: reproduce 'The training process of many deep networks explores the same
low-dimensional manifold' (Mao et al., PNAS 2024)."""

__version__ = "0.1.0"
